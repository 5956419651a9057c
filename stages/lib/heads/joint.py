"""Heads whose published start shares its leading layers (FaceRes: `feats`, 1,024 -> 256, under both
its age and its gender output), fine-tuned as the published model is built: one copy of the shared
layers under both outputs, trained on the sum of the two tasks' losses.

The pretrain stage saves each task's published head as a file of its own, so the sharing is read off
the heads (`shared_layers`): the leading layers both published heads hold with the same name, the same
configuration and the same weights. `tie` rebuilds the heads on one copy of those layers; `JointHeads`
trains them as one model. Each head stays a model of its own (a chain of layers from one input),
so predicting and saving see two heads as before.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from stages.lib.heads.loop import Trainer
from stages.lib.heads.model import GENDER_CLASSES, TASKS

GENDERS = len(GENDER_CLASSES)


def shared_layers(heads: dict[str, keras.Model]) -> list[str]:
    """Names of the leading layers (after the input) that every head holds alike: same name, same
    configuration, same weights; [] where the heads' first layers differ."""
    chains = [head.layers[1:] for head in heads.values()]
    shared = []
    for layers in zip(*chains):
        first = layers[0]
        alike = all(layer.get_config() == first.get_config() and _same_weights(layer, first) for layer in layers[1:])
        if not alike:
            break
        shared.append(first.name)
    return shared


def _same_weights(layer: keras.layers.Layer, other: keras.layers.Layer) -> bool:
    mine, theirs = layer.get_weights(), other.get_weights()
    return len(mine) == len(theirs) and all(np.array_equal(a, b) for a, b in zip(mine, theirs))


def tie(heads: dict[str, keras.Model], shared: list[str]) -> dict[str, keras.Model]:
    """The heads rebuilt so that the `shared` layers are one copy (the first head's) under every head;
    each head keeps its own other layers (and names: `predict` and `heads_signature` see them as before)."""
    owner = next(iter(heads.values()))
    tied = {}
    for task, head in heads.items():
        inputs = keras.Input(shape=head.inputs[0].shape[1:], name=head.layers[0].name)
        out = inputs
        for layer in head.layers[1:]:
            out = (owner.get_layer(layer.name) if layer.name in shared else layer)(out)
        tied[task] = keras.Model(inputs, out, name=head.name)
    return tied


def joint_labels(age: np.ndarray, gender: np.ndarray) -> np.ndarray:
    """One class index per row carrying both tasks' labels (age · 2 + gender), so that one batch of rows
    feeds both heads; `JointHeads` splits them again."""
    return np.asarray(age, dtype=np.int64) * GENDERS + np.asarray(gender, dtype=np.int64)


class JointHeads(Trainer):
    """The age and the gender head trained as one model, on batches (features, joint labels[, weights]):
    the objective is the sum of the two heads' cross-entropies, each row weighted by its weight as the
    per-task fit weighs it (Keras' mean over the batch of weight · loss). Validation: the same sum,
    unweighted. The shared layers' variables are one set, stepped once down the summed gradient."""

    def __init__(self, heads: dict[str, keras.Model]):
        super().__init__(heads[TASKS[0]])
        self.heads = heads
        unique = {id(variable): variable for task in TASKS for variable in heads[task].trainable_variables}
        self.trained = list(unique.values())

    def objective(self, x, labels, weights, training: bool):
        targets = {"age": labels // GENDERS, "gender": labels % GENDERS}
        total = 0.0
        for task in TASKS:
            losses = keras.losses.sparse_categorical_crossentropy(targets[task], self.heads[task](x, training=training))
            total += tf.reduce_mean(losses if weights is None else losses * weights)
        return total

    def train_step(self, data):
        x, labels, *weights = data
        with tf.GradientTape() as tape:
            objective = self.objective(x, labels, weights[0] if weights else None, training=True)
        self.apply(tape, objective, self.trained)
        return self.record(objective, tf.shape(labels)[0])

    def test_step(self, data):
        x, labels = data
        return self.record(self.objective(x, labels, None, training=False), tf.shape(labels)[0])
