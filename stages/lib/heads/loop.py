"""The one training loop every head goes through, and the one batcher that feeds it.

`fit_loop` is Keras' `fit()` with Adam at the budget's rate: a plain head learns the cross-entropy
of its softmax (labels as class indices); a `Trainer` (a mitigation's algorithm, in its own
`train_step`, as `group_dro.GroupDRO`) learns what its step says. Each epoch's figures are set by
callbacks (`criteria`: a mitigation's own validation criterion, the study's test-set scores) and
`KeepLowest` keeps the weights of the epoch with the lowest monitored loss, stopping after the
budget's patience without a better one.

`RowBatches` reads the rows of a `TaskRows` from the features (a float16 memmap) one batch at a
time, as float32, in an `order` per epoch. The orders are kept as the methods were measured with:
changing one changes the weights a method learns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Literal, Sequence

import keras
import numpy as np
import tensorflow as tf

from stages.lib.core.progress import Progress, progress
from stages.lib.heads.data import Budget, TaskRows

STEPS_PER_EXECUTION = 32  # training steps per call into TensorFlow: the same updates, less Python per step


def configure_determinism(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TF ops deterministic (also on GPU): same seed, same heads."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


# ----- which rows, in which order, each epoch ----------------------------------------------------------

@dataclass(frozen=True)
class InOrder:
    """Every row once, in the given order, every epoch (validation)."""

    endless: ClassVar[bool] = False   # the dataset ends with each epoch (Drawn's never ends)

    def positions(self, n: int, batch_size: int) -> tf.data.Dataset:
        return tf.data.Dataset.range(n)


@dataclass(frozen=True)
class Reshuffled:
    """Every row once per epoch, reshuffled by tf.data from `seed` (the plain heads' order)."""

    seed: int
    endless: ClassVar[bool] = False

    def positions(self, n: int, batch_size: int) -> tf.data.Dataset:
        return tf.data.Dataset.range(n).shuffle(n, seed=self.seed, reshuffle_each_iteration=True)


@dataclass(frozen=True)
class Permuted:
    """Every row once per epoch, in a fresh NumPy permutation from `seed` (the mitigations' order)."""

    seed: int
    endless: ClassVar[bool] = False

    def positions(self, n: int, batch_size: int) -> tf.data.Dataset:
        rng = np.random.default_rng(self.seed)
        return _generated(lambda: rng.permutation(n), n)


@dataclass(frozen=True)
class Drawn:
    """One batch per epoch, drawn at random with replacement (the study's "epoch": np.random.choice(n, size)).

    Its dataset never ends (`endless`): one batch after another, each drawn anew, read by one iterator
    over all epochs, `fit` told that an epoch is one batch. The batches are those of a dataset read anew
    each epoch, without the cost of a new iterator (and the end of its data) per one-batch epoch."""

    seed: int
    endless: ClassVar[bool] = True

    def positions(self, n: int, batch_size: int) -> tf.data.Dataset:
        rng = np.random.default_rng(self.seed)
        return _generated(lambda: rng.integers(0, n, batch_size), batch_size).repeat()


Order = InOrder | Reshuffled | Permuted | Drawn


def _generated(draw: Callable[[], np.ndarray], count: int) -> tf.data.Dataset:
    """The `count` positions `draw()` gives, drawn anew each time the dataset is read (each epoch).

    The generator hands over all of them at once, split into positions by tf.data: one call into Python
    per epoch, not one per row (which made most of a small head's epoch)."""
    def drawn():
        yield draw()

    positions = tf.data.Dataset.from_generator(drawn, output_signature=tf.TensorSpec([count], tf.int64)).unbatch()
    return positions.apply(tf.data.experimental.assert_cardinality(count))


@dataclass(frozen=True)
class RowBatches:
    """Batches (x float32, labels int64[, extra]) of `data`'s rows of `features`, in `order` each epoch.

    `extra`: `weights` (`weights`: a loss weight per row of `data`), `groups` (each row's group index)
    or `attributes` ({attribute: class index}, the adversaries' targets). `in_file_order`: each batch's
    rows are read from the memmap in file order (faster reads; the study's batches keep their drawn order)."""

    features: np.ndarray
    data: TaskRows
    batch_size: int
    order: Order = InOrder()
    extra: Literal["weights", "groups", "attributes"] | None = None
    weights: np.ndarray | None = None
    in_file_order: bool = True

    def _columns(self) -> dict[str, np.ndarray]:
        """The per-row arrays a batch carries after x: the labels, then the extra."""
        columns = {"labels": np.asarray(self.data.labels, dtype=np.int64)}
        if self.extra == "weights":
            columns["weights"] = np.asarray(self.weights, dtype=np.float32)
        elif self.extra == "groups":
            columns["groups"] = np.asarray(self.data.groups, dtype=np.int64)
        elif self.extra == "attributes":
            columns.update({name: np.asarray(codes, dtype=np.int64) for name, codes in self.data.attributes.items()})
        return columns

    def dataset(self) -> tf.data.Dataset:
        rows, columns = np.asarray(self.data.rows, dtype=np.int64), self._columns()
        if any(len(values) != len(rows) for values in columns.values()):
            raise ValueError(f"rows, {', '.join(columns)} must have the same length")
        dim = self.features.shape[1]

        def load(positions: np.ndarray) -> list[np.ndarray]:
            if self.in_file_order:
                positions = positions[np.argsort(rows[positions], kind="stable")]
            x = np.asarray(self.features[rows[positions]], dtype=np.float32)
            return [x, *(values[positions] for values in columns.values())]

        def load_tensors(positions):
            types = [tf.float32, *(tf.as_dtype(values.dtype) for values in columns.values())]
            x, labels, *extra = tf.numpy_function(load, [positions], types, stateful=False)
            x.set_shape([None, dim])
            for tensor in (labels, *extra):
                tensor.set_shape([None])
            if self.extra == "attributes":
                return x, labels, dict(zip(list(columns)[1:], extra))
            return (x, labels, *extra)

        return self.order.positions(len(rows), self.batch_size).batch(self.batch_size).map(load_tensors).prefetch(2)


# ----- the loop --------------------------------------------------------------------------------------

class Trainer(keras.Model):
    """A head (or a head's part) trained by a custom `train_step` (a mitigation's algorithm): `fit()`
    drives it, so the loop's callbacks work. `loss` is the epoch's mean of the objective each step
    returns, weighted by batch size, summed in float64."""

    def __init__(self, head: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.head = head
        self.epoch_loss = keras.metrics.Mean(name="loss", dtype="float64")

    def call(self, inputs, training=False):
        return self.head(inputs, training=training)

    def compile(self, **options):
        """As `keras.Model.compile`, the steps run as TensorFlow graphs, never XLA-compiled: the algorithms'
        weights are those of the graph each step is written as."""
        super().compile(**{**options, "jit_compile": False})

    @property
    def metrics(self):
        return [self.epoch_loss]

    def apply(self, tape: tf.GradientTape, objective: tf.Tensor, variables) -> None:
        """One optimizer step on `variables` down the gradient of `objective`."""
        self.optimizer.apply_gradients(zip(tape.gradient(objective, variables), variables))

    def record(self, objective: tf.Tensor, rows: tf.Tensor) -> dict:
        self.epoch_loss.update_state(tf.cast(objective, "float64"), sample_weight=tf.cast(rows, "float64"))
        return {"loss": self.epoch_loss.result()}


class EpochFigures(keras.callbacks.Callback):
    """Adds `figures()` ({name: value}, e.g. a mitigation's own `val_loss`) to each epoch's logs, before
    `KeepLowest` reads them."""

    def __init__(self, figures: Callable[[], dict[str, float]]):
        super().__init__()
        self.figures = figures

    def on_epoch_end(self, epoch, logs=None):
        logs.update({name: float(value) for name, value in self.figures().items()})


class KeepLowest(keras.callbacks.EarlyStopping):
    """Keeps the weights of the epoch with the lowest `monitor` (restored when training ends) and stops
    after `patience` epochs without a lower one."""

    def __init__(self, monitor: str, patience: int):
        super().__init__(monitor=monitor, mode="min", patience=patience, restore_best_weights=True)


class _EpochProgress(keras.callbacks.Callback):
    """Counts epochs on a progress display, with the last and the best validation loss."""

    def __init__(self, bar: Progress):
        super().__init__()
        self.bar, self.best = bar, float("inf")

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("val_loss")
        if loss is not None:
            self.best = min(self.best, float(loss))
            self.bar.note(f"val_loss {float(loss):.4f} (best {self.best:.4f})")
        self.bar.update()


@dataclass(frozen=True)
class Shown:
    """How a fit shows its epochs: `show` (False: not at all; None: a bar on a terminal, lines
    elsewhere: core.progress) under `desc`."""

    desc: str = "train"
    show: bool | None = False


def compile_for_fit(model: keras.Model, learning_rate: float, steps_per_execution: int = STEPS_PER_EXECUTION) -> None:
    """The study's optimisation: Adam on the cross-entropy of the softmax, labels as class indices (a
    `Trainer`'s own `train_step` says what it learns instead).

    Keras runs `STEPS_PER_EXECUTION` batches per call of its compiled step: the same batches, in the
    same order, give the same weights bit for bit (tests/heads/test_loop_speed.py), with a fraction of
    the per-step Python overhead, which is most of an epoch's cost on the demo's small heads (an
    endless dataset's one-batch epochs: one step per call, `steps_per_execution` 1)."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(), steps_per_execution=steps_per_execution)


def fit_loop(model: keras.Model, batches: RowBatches, *, budget: Budget, validation: RowBatches | None = None,
             figures: Sequence[Callable[[], dict[str, float]]] = (), keep: str = "val_loss",
             shown: Shown = Shown()) -> dict[str, list[float]]:
    """Train `model` in place on `batches` for at most `budget.epochs` epochs with Adam at
    `budget.learning_rate`; keep the epoch of lowest `keep` (KeepLowest, patience `budget.patience`).

    Each epoch's `val_loss` is Keras' loss on `validation`, or what `figures` say. Returns Keras'
    history ({'loss': [...], 'val_loss': [...], ...}, one value per epoch)."""
    keras.utils.set_random_seed(budget.seed)
    endless = batches.order.endless   # one batch an epoch: one step per call, the iterator kept over epochs
    compile_for_fit(model, budget.learning_rate, 1 if endless else STEPS_PER_EXECUTION)
    train = batches.dataset()
    val = None if validation is None else validation.dataset()
    with progress(budget.epochs, shown.desc, "epoch", show=shown.show, at_most=True) as bar:
        callbacks = [*(EpochFigures(f) for f in figures), KeepLowest(keep, budget.patience), _EpochProgress(bar)]
        history = model.fit(train, validation_data=val, epochs=budget.epochs, callbacks=callbacks, verbose=0,
                            shuffle=False, steps_per_epoch=1 if endless else None)
    return {key: [float(v) for v in values] for key, values in history.history.items()}
