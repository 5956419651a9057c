"""Mitigation `adversarial` (Ganin & Lempitsky's gradient reversal): small adversaries read the head's
hidden layer (fc7) and predict race (and, for the age head, gender); their loss flows back into the
head multiplied by −strength, so fc7 is pushed to carry less of what the adversaries can read. The
epoch kept is the one of lowest validation loss of the task, as plain training does."""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from stages.lib.core.params import Experiment
from stages.lib.heads.data import Budget, FittedHeads, HeadData, TaskRows, require_rows
from stages.lib.heads.groups import MitigationError, attribute_codes
from stages.lib.heads.loop import Permuted, RowBatches, Trainer, fit_loop
from stages.lib.heads.model import HIDDEN_LAYER, TASKS
from stages.lib.heads.plain import fit_head
from stages.lib.heads.predicting import cross_entropy, predict_probs
from stages.lib.heads.starts import start_head


def gradient_reversal(strength: float) -> Callable[[tf.Tensor], tf.Tensor]:
    """Identity forward; the gradient flowing back through it is multiplied by −strength."""

    @tf.custom_gradient
    def reverse(x):
        return tf.identity(x), lambda upstream: -strength * upstream

    return reverse


def build_adversary(input_dim: int, width: int, classes: int, *, name: str, seed: int) -> keras.Model:
    """Hidden activations -> Dense(width, relu) -> class logits."""
    inputs = keras.Input(shape=(input_dim,))
    x = keras.layers.Dense(width, activation="relu", kernel_initializer=keras.initializers.GlorotUniform(seed=seed))(inputs)
    logits = keras.layers.Dense(classes, kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 1))(x)
    return keras.Model(inputs, logits, name=name)


def masked_cross_entropy(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Mean cross-entropy over the rows whose label is known (>= 0); 0 when none is."""
    known = labels >= 0
    losses = keras.losses.sparse_categorical_crossentropy(tf.maximum(labels, 0), logits, from_logits=True)
    mask = tf.cast(known, losses.dtype)
    return tf.reduce_sum(losses * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def hidden_model(model: keras.Model) -> keras.Model:
    """The head's own layers, returning (softmax output, hidden-layer activations)."""
    return keras.Model(model.inputs, [model.output, model.get_layer(HIDDEN_LAYER).output])


class Adversarial(Trainer):
    """A head trained on batches (features, labels, {attribute: class}) against one adversary per
    attribute, which reads the head's hidden layer through a gradient reversal of `strength`."""

    def __init__(self, head: keras.Model, adversaries: dict[str, keras.Model], strength: float):
        super().__init__(head)
        self.both, self.adversaries, self.reverse = hidden_model(head), adversaries, gradient_reversal(strength)
        self.adversary_loss = keras.metrics.Mean(name="adversary_loss", dtype="float64")

    @property
    def metrics(self):
        return [self.epoch_loss, self.adversary_loss]

    def train_step(self, data):
        x, y, targets = data
        variables = self.head.trainable_variables + [v for a in self.adversaries.values() for v in a.trainable_variables]
        with tf.GradientTape() as tape:
            probs, hidden = self.both(x, training=True)
            task = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, probs))
            reversed_hidden = self.reverse(hidden)
            adversary = tf.add_n([masked_cross_entropy(targets[name], net(reversed_hidden, training=True))
                                  for name, net in self.adversaries.items()])
            total = task + adversary
        self.apply(tape, total, variables)
        rows = tf.cast(tf.shape(y)[0], "float64")
        self.adversary_loss.update_state(tf.cast(adversary, "float64"), sample_weight=rows)
        return {**self.record(task, rows), "adversary_loss": self.adversary_loss.result()}


def fit_adversarial(model: keras.Model, features: np.ndarray, train: TaskRows, val: TaskRows, *,
                    classes: dict[str, int], strength: float, adversary_width: int,
                    budget: Budget) -> dict[str, list[float]]:
    """Fit `model` in place against one adversary per attribute of `train.attributes` (`classes`: their
    class counts), through a gradient reversal of `strength`. Returns the history: 'loss' the task's
    training loss, 'val_loss' its validation loss (the best epoch is chosen on it), 'adversary_loss'
    the adversaries' summed training loss per epoch."""
    require_rows(len(train.rows), len(val.rows))
    keras.utils.set_random_seed(budget.seed)
    width = model.get_layer(HIDDEN_LAYER).output.shape[-1]
    adversaries = {name: build_adversary(width, adversary_width, count, name=f"adversary_{name}",
                                         seed=budget.seed + i * 10)
                   for i, (name, count) in enumerate(sorted(classes.items()))}
    trainer = Adversarial(model, adversaries, strength)

    def validate() -> dict[str, float]:
        probs = predict_probs(model, features, val.rows, budget.batch_size, desc="val")
        return {"val_loss": float(cross_entropy(probs, val.labels).mean())}

    batches = RowBatches(features, train, budget.batch_size, Permuted(budget.seed), extra="attributes")
    return fit_loop(trainer, batches, budget=budget, figures=[validate])


def _coded_attributes(data: HeadData, attributes) -> dict[str, tuple[np.ndarray, int]]:
    coded = {a: attribute_codes(pd.concat([data.train, data.val]), a) for a in attributes}
    unlabelled = [a for a, (_, classes) in coded.items() if classes < 2]
    if unlabelled:
        raise MitigationError(f"mitigation adversarial: the finetune rows carry fewer than two {unlabelled[0]} labels, "
                              f"so no adversary can predict it; drop {unlabelled[0]} from its attributes")
    return coded


def fit(data: HeadData, experiment: Experiment) -> FittedHeads:
    """Each head against adversaries for the mitigation's attributes other than its own task."""
    mitigation, budget = experiment.mitigation, data.budget
    coded = _coded_attributes(data, mitigation.attributes)
    heads, histories, against = {}, {}, {}
    for task in TASKS:
        heads[task] = start_head(data, task, experiment.init)
        against[task] = [a for a in mitigation.attributes if a != task]
        train = data.task_rows(task, data.train, attributes={a: coded[a][0][:len(data.train)] for a in against[task]})
        val = data.task_rows(task, data.val)
        if against[task]:
            histories[task] = fit_adversarial(heads[task], data.features.array, train, val,
                                              classes={a: coded[a][1] for a in against[task]},
                                              strength=mitigation.strength,
                                              adversary_width=mitigation.adversary_width, budget=budget)
        else:  # e.g. attributes [gender] leave the gender head nothing to be trained against
            histories[task] = fit_head(heads[task], data.features.array, train, val, budget=budget)
    return FittedHeads(heads, histories, trained_on={"train_rows": len(data.train), "against": against})
