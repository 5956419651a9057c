"""Mitigation `last_layer` (deep feature re-weighting, Kirichenko et al. 2022): a group-balanced set is
held out of the training rows (sampling.balanced_holdout), the heads are fitted as usual on the rest,
then only the output layer is refitted on the held-out set's fc7 activations (starting from its
trained weights; fc6 and fc7 do not move), keeping the epoch of lowest worst-group validation loss."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from stages.lib.core.params import Experiment
from stages.lib.heads.data import NO_RESAMPLING, Budget, FittedHeads, HeadData, TaskRows, require_rows
from stages.lib.heads.groups import joint_group_codes, worst_group_loss
from stages.lib.heads.loop import Permuted, RowBatches, Trainer, fit_loop
from stages.lib.heads.model import HIDDEN_LAYER, TASKS
from stages.lib.heads.plain import train_heads
from stages.lib.heads.predicting import cross_entropy, predict_probs
from stages.lib.heads.sampling import balanced_holdout


def hidden_activations(model: keras.Model, features: np.ndarray, rows: np.ndarray, batch_size: int) -> np.ndarray:
    """The head's hidden-layer (fc7) activations on `features[rows]`, in inference mode (no dropout)."""
    hidden = keras.Model(model.inputs, model.get_layer(HIDDEN_LAYER).output)
    return predict_probs(hidden, features, rows, batch_size, desc="hidden")


class OutputLayer(Trainer):
    """The output layer (and softmax) alone, trained on batches (hidden activations, labels) by plain
    cross-entropy; it stands for the head's own output layer, refitted from its weights."""

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, self.head(x, training=True)))
        self.apply(tape, loss, self.head.trainable_variables)
        return self.record(loss, tf.shape(y)[0])


def retrain_last_layer(model: keras.Model, features: np.ndarray, holdout: TaskRows, val: TaskRows, *,
                       budget: Budget) -> dict[str, list[float]]:
    """Refit only `model`'s output layer on the fc7 activations of the `holdout` rows, from its current
    weights, keeping the epoch of lowest worst-group validation loss; fc6 and fc7 are left untouched."""
    require_rows(len(holdout.rows), len(val.rows))
    keras.utils.set_random_seed(budget.seed)
    train_hidden = hidden_activations(model, features, holdout.rows, budget.batch_size)
    val_hidden = hidden_activations(model, features, val.rows, budget.batch_size)
    output = model.get_layer("predictions")
    last = keras.Sequential([keras.Input(shape=(train_hidden.shape[1],)),
                             keras.layers.Dense(output.units), keras.layers.Activation("softmax")])
    last.layers[0].set_weights(output.get_weights())

    def validate() -> dict[str, float]:
        probs = last.predict_on_batch(val_hidden)
        return {"val_loss": worst_group_loss(cross_entropy(probs, val.labels), val.groups)}

    held = TaskRows(np.arange(len(holdout.rows)), holdout.labels)
    batches = RowBatches(train_hidden, held, budget.batch_size, Permuted(budget.seed), in_file_order=False)
    history = fit_loop(OutputLayer(last), batches, budget=budget, figures=[validate])
    output.set_weights(last.layers[0].get_weights())
    return history


def fit(data: HeadData, experiment: Experiment) -> FittedHeads:
    """The heads fitted on the rows not held out, then their output layers refitted on the held-out set."""
    mitigation = experiment.mitigation
    train_codes, val_codes, _ = joint_group_codes(data.train, data.val, mitigation.groups, data.params.age_bands)
    kept, held = balanced_holdout(train_codes, mitigation.holdout, data.params.seed)
    kept_data = HeadData(data.params, data.features, data.train.iloc[kept], data.val, data.pretrain_dir)
    fitted = train_heads(kept_data, experiment.init, NO_RESAMPLING)
    histories = dict(fitted.histories)
    for task in TASKS:
        holdout = data.task_rows(task, data.train.iloc[held], train_codes[held])
        histories[f"{task}_last_layer"] = retrain_last_layer(
            fitted.heads[task], data.features.array, holdout, data.task_rows(task, data.val, val_codes), budget=data.budget)
    return FittedHeads(fitted.heads, histories, trained_on={"train_rows": len(kept), "holdout_rows": len(held)})
