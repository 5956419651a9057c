"""What the mitigations' own training algorithms share (group DRO, adversarial, last-layer refit).

Each is a `Trainer`: a Keras model wrapping the head it trains, whose `train_step` is the algorithm
(Keras' way for a custom algorithm), so `fit()` drives it and its callbacks work: EarlyStopping with
restore_best_weights keeps the best epoch. `fit_trainer` feeds it batches of rows drawn in a fresh
numpy order every epoch (`shuffled_batches`) and sets the epoch's `val_loss` to the trainer's own
criterion computed on the whole val split in float64 (e.g. the worst group's mean loss), which
EarlyStopping then monitors.
"""

from __future__ import annotations

from typing import Callable, Iterator

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from stages.lib.core.errors import UserError
from stages.lib.heads.sampling import group_codes
from stages.lib.heads.training import Budget, TaskRows


class MitigationError(UserError, ValueError):
    """A mitigation the finetune data cannot support (e.g. an adversary for a label no row has)."""


class Trainer(keras.Model):
    """A head (or a head's part) trained by a custom `train_step`; `loss` is the epoch's mean of the
    objective each step returns, weighted by batch size, summed in float64."""

    def __init__(self, head: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.head = head
        self.epoch_loss = keras.metrics.Mean(name="loss", dtype="float64")

    def call(self, inputs, training=False):
        return self.head(inputs, training=training)

    @property
    def metrics(self):
        return [self.epoch_loss]

    def apply(self, tape: tf.GradientTape, objective: tf.Tensor, variables) -> None:
        """One optimizer step on `variables` down the gradient of `objective`."""
        self.optimizer.apply_gradients(zip(tape.gradient(objective, variables), variables))

    def record(self, objective: tf.Tensor, rows: tf.Tensor) -> dict:
        self.epoch_loss.update_state(tf.cast(objective, "float64"), sample_weight=tf.cast(rows, "float64"))
        return {"loss": self.epoch_loss.result()}


class ValidationCriterion(keras.callbacks.Callback):
    """Sets each epoch's `val_loss` to `validate()`, before EarlyStopping reads it."""

    def __init__(self, validate: Callable[[], float]):
        super().__init__()
        self.validate = validate

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = float(self.validate())


def shuffled_batches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Positions 0..n-1 in a fresh random order, `batch_size` at a time."""
    order = rng.permutation(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def row_batches(features: np.ndarray, data: TaskRows, budget: Budget, *, extra: str | None = None,
                in_file_order: bool = True) -> tf.data.Dataset:
    """Batches (float32 features, labels[, extra]) of `data`'s rows in a fresh seeded order every epoch.

    `extra`: None, `groups` (each row's group index) or `attributes` ({attribute: class index}, the
    adversaries' targets). `in_file_order`: each batch's rows read from the memmap in file order."""
    rng = np.random.default_rng(budget.seed)
    specs = {None: (), "groups": (tf.TensorSpec([None], tf.int64),),
             "attributes": ({name: tf.TensorSpec([None], tf.int64) for name in data.attributes or {}},)}[extra]

    def batches():
        for positions in shuffled_batches(len(data.rows), budget.batch_size, rng):
            if in_file_order:
                positions = positions[np.argsort(data.rows[positions], kind="stable")]
            batch = data.take(positions)
            extras = {None: (), "groups": (batch.groups,), "attributes": (batch.attributes,)}[extra]
            yield (np.asarray(features[batch.rows], dtype=np.float32), batch.labels, *extras)

    signature = (tf.TensorSpec([None, features.shape[1]], tf.float32), tf.TensorSpec([None], tf.int64), *specs)
    dataset = tf.data.Dataset.from_generator(batches, output_signature=signature)
    return dataset.apply(tf.data.experimental.assert_cardinality(-(-len(data.rows) // budget.batch_size)))


def fit_trainer(trainer: Trainer, batches: tf.data.Dataset, validate: Callable[[], float], *,
                budget: Budget) -> dict[str, list[float]]:
    """`trainer.fit` with Adam at the budget's rate, `validate()` as each epoch's `val_loss`, and
    Keras' EarlyStopping (patience, restoring the best epoch's weights). Returns the history."""
    keras.utils.set_random_seed(budget.seed)
    trainer.compile(optimizer=keras.optimizers.Adam(learning_rate=budget.learning_rate), jit_compile=False)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=budget.patience, restore_best_weights=True)
    history = trainer.fit(batches, epochs=budget.epochs, callbacks=[ValidationCriterion(validate), stop], verbose=0,
                          shuffle=False)
    return {key: [float(v) for v in values] for key, values in history.history.items()}


def worst_group_loss(losses: np.ndarray, groups: np.ndarray) -> float:
    """The highest mean of `losses` over the groups present."""
    return float(max(losses[groups == g].mean() for g in np.unique(groups)))


def group_means(values: tf.Tensor, groups: tf.Tensor, n_groups: int) -> tf.Tensor:
    """Mean of `values` per group index 0..n_groups-1 (0 for a group absent from the batch)."""
    sums = tf.math.unsorted_segment_sum(values, groups, n_groups)
    counts = tf.math.unsorted_segment_sum(tf.ones_like(values), groups, n_groups)
    return sums / tf.maximum(counts, 1.0)


def attribute_codes(frame: pd.DataFrame, attribute: str) -> tuple[np.ndarray, int]:
    """(class index per row, -1 where unknown; number of classes) of `race` or `gender`."""
    values = frame[attribute]
    classes = sorted(values.dropna().unique())
    codes = pd.Categorical(values, categories=classes).codes.astype(np.int64)
    return codes, len(classes)


def joint_group_codes(train: pd.DataFrame, val: pd.DataFrame, columns, edges) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Group index of each train and each val row, on one list of group names (`sampling.group_codes`)."""
    codes, names = group_codes(pd.concat([train, val]), columns, edges)
    return codes[:len(train)], codes[len(train):], names
