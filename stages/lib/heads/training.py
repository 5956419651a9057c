"""Fitting and running the dense heads on the cached features, and the files that go around it.

Features are read from the float16 memmap the features stage writes (`features.read_features`) a
batch of rows at a time, and turned into float32 only batch by batch: the real pool5 features are
25,088 wide, so 20k faces are 1 GB in float16 and twice that in float32.

Starting weights (`starting_weights`) come from the `pretrain` stage's folder, so that `train` never
reads a published weights file itself:
- `<pretrain_dir>/age.keras`, `gender.keras`: the baseline heads. With VGG-Face and its published
  weights they are the published age/gender models' heads, converted; otherwise (a random VGG-Face in
  the offline demo, or another backbone: no published files fit its features) they are heads trained from a seeded start on the pretrain-role
  dataset's train split, as the published models were trained on another dataset than UTKFace.
- `<pretrain_dir>/vgg_face.keras` (published VGG-Face weights only): VGG-Face's own fc6/fc7 (and
  its identity softmax), the study's starting point for retraining.
Init `published` takes all of a baseline head; init `backbone` takes fc6/fc7 from `vgg_face.keras`,
or, with a random backbone, from the baseline head of the same task.

A backbone whose published heads are its own model's output layers (spec.published_outputs:
wide_resnet_imdb) has its published predictions stored by the features stage
(`published_output_predictions`; `published_output_heads` select them for `stages.predict`), and no
hidden layers to start from: its retrained heads start
from the seeded random init (`start_for`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from dvclive import Live

from stages.lib.backbones.vgg_face import head_weights, require_weights_file
from stages.lib.backbones.registry import describe, uses_published_weights
from stages.lib.backbones.store import Features
from stages.lib.heads.model import (FC_LAYERS, GENDER_CLASSES, TASKS, Init, build_head, init_head,
                                    layer_weights, prediction_frame, task_classes, task_labels)
from stages.lib.core.params import Params
from stages.lib.core.progress import Progress, progress

Histories = dict[str, dict[str, list[float]]]


@dataclass(frozen=True)
class Budget:
    """How long and how fast heads train (params.train), and the seed."""

    epochs: int
    patience: int
    batch_size: int
    learning_rate: float
    seed: int

    @classmethod
    def from_params(cls, params: Params) -> "Budget":
        train = params.train
        return cls(train.epochs, train.patience, train.batch_size, train.learning_rate, params.seed)


@dataclass(frozen=True)
class TaskRows:
    """Rows to fit or judge one head on: features rows, class labels and, for the mitigations, a group
    index per row and a class index per adversary attribute (-1 where unknown)."""

    rows: np.ndarray
    labels: np.ndarray
    groups: np.ndarray | None = None
    attributes: dict[str, np.ndarray] | None = None

    def take(self, positions: np.ndarray) -> "TaskRows":
        pick = (lambda values: None if values is None else values[positions])
        attributes = None if self.attributes is None else {k: v[positions] for k, v in self.attributes.items()}
        return TaskRows(self.rows[positions], self.labels[positions], pick(self.groups), attributes)


@dataclass(frozen=True)
class HeadData:
    """What every way of fitting heads reads: the params, the cached features, the finetune dataset's
    train and val rows (manifest rows), the pretrain stage's folder (starting weights) and, for the
    study's protocol only, its test rows (it picks its checkpoint on them)."""

    params: Params
    features: "Features"
    train: pd.DataFrame
    val: pd.DataFrame
    pretrain_dir: Path | None = None
    test: pd.DataFrame | None = None
    reads: str = "features"   # which of the features' arrays the heads read (Features.reading)

    @property
    def budget(self) -> Budget:
        return Budget.from_params(self.params)

    def for_heads_from(self, init: Init) -> "HeadData":
        """This data as heads starting from `init` read it: the published heads of a backbone whose
        published heads are its own output layers read what those layers read (the WideResNet's
        flatten, `Features.published_inputs`); every other head reads the cached feature rows."""
        if init == "published" and self.features.published_inputs is not None:
            return replace(self, features=self.features.reading("published_inputs"), reads="published_inputs")
        return self

    def task_rows(self, task: str, frame: pd.DataFrame, groups: np.ndarray | None = None,
                  attributes: dict[str, np.ndarray] | None = None) -> TaskRows:
        """`frame`'s features rows and `task` labels (with `groups`/`attributes` where a mitigation needs them)."""
        return TaskRows(self.features.rows_for(frame["id"]), task_labels(task, frame, self.params.labels.max_age),
                        groups, attributes)


@dataclass(frozen=True)
class FittedHeads:
    """What every way of fitting heads returns: the heads, each trained head's history, what the
    training summary records (models/<exp>/live/metrics.json), what the heads were trained on
    (models/<exp>/mitigation.json: rows, held-out rows, group weights, ...), and what they read:
    `features` (the cached feature rows) or `published_outputs` (the published model's own outputs,
    stored by the features stage) or `published_inputs` (what those published heads read)."""

    heads: dict[str, keras.Model]
    histories: Histories = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    trained_on: dict = field(default_factory=dict)
    reads: str = "features"


def require_rows(train: int, val: int) -> None:
    """Training needs rows in both splits: say which is empty and what to check."""
    if train == 0 or val == 0:
        raise ValueError(f"training needs rows in both train ({train}) and val ({val}) splits: check split.val "
                         "and the finetune dataset's size")


def cross_entropy(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-row −log p(label), clipped as Keras' sparse categorical cross-entropy clips it."""
    picked = np.asarray(probs, dtype=np.float64)[np.arange(len(labels)), labels]
    return -np.log(np.clip(picked, keras.config.epsilon(), 1.0))

def configure_determinism(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TF ops deterministic (also on GPU): same seed, same heads."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def row_dataset(features: np.ndarray, rows: np.ndarray, labels: np.ndarray, batch_size: int,
                *, weights: np.ndarray | None = None, shuffle_seed: int | None = None) -> tf.data.Dataset:
    """Batches (x float32, y int64[, w float32]) read from `features[rows]` one batch at a time.

    With `shuffle_seed` the order is reshuffled every epoch, the same way for the same seed.
    """
    rows = np.asarray(rows, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    weights = None if weights is None else np.asarray(weights, dtype=np.float32)
    if not len(rows) == len(labels) == (len(rows) if weights is None else len(weights)):
        raise ValueError("rows, labels and weights must have the same length")
    dim = features.shape[1]

    def load(positions: np.ndarray):
        positions = positions[np.argsort(rows[positions], kind="stable")]  # read the memmap in file order
        x = np.asarray(features[rows[positions]], dtype=np.float32)
        batch = (x, labels[positions])
        return batch if weights is None else (*batch, weights[positions])

    types = [tf.float32, tf.int64] + ([] if weights is None else [tf.float32])

    def load_tensors(positions):
        tensors = tf.numpy_function(load, [positions], types, stateful=False)
        tensors[0].set_shape([None, dim])
        for tensor in tensors[1:]:
            tensor.set_shape([None])
        return tuple(tensors)

    dataset = tf.data.Dataset.range(len(rows))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(rows), seed=shuffle_seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).map(load_tensors).prefetch(2)


STEPS_PER_EXECUTION = 32  # training steps per call into TensorFlow: the same updates, less Python per step


def compile_head(model: keras.Model, learning_rate: float) -> None:
    """The study's optimisation: Adam on the cross-entropy of the softmax, labels as class indices.

    Keras runs `STEPS_PER_EXECUTION` batches per call of its compiled step: the same batches, in the
    same order, give the same weights bit for bit (tests/heads/test_training_speed.py), with a fraction of
    the per-step Python overhead, which is most of an epoch's cost on the demo's small heads."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(), steps_per_execution=STEPS_PER_EXECUTION)


def fit_head(model: keras.Model, features: np.ndarray, train: TaskRows, val: TaskRows, *, budget: Budget,
             sample_weight: np.ndarray | None = None, show_progress: bool | None = False,
             desc: str = "train") -> dict[str, list[float]]:
    """Train `model` in place with Adam and sparse categorical cross-entropy; keep the best val loss.

    Stops after `budget.patience` epochs without a better validation loss and restores the weights of
    the best epoch (Keras' EarlyStopping). Returns Keras' history: {'loss': [...], 'val_loss': [...]}.
    `show_progress` counts epochs under `desc` (`core.progress`; None: a bar on a terminal, lines elsewhere).
    """
    require_rows(len(train.rows), len(val.rows))
    keras.utils.set_random_seed(budget.seed)
    compile_head(model, budget.learning_rate)
    train_batches = row_dataset(features, train.rows, train.labels, budget.batch_size, weights=sample_weight,
                                shuffle_seed=budget.seed)
    val_batches = row_dataset(features, val.rows, val.labels, budget.batch_size)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=budget.patience, restore_best_weights=True)
    with progress(budget.epochs, desc, "epoch", show=show_progress, at_most=True) as bar:
        history = model.fit(train_batches, validation_data=val_batches, epochs=budget.epochs,
                            callbacks=[stop, _EpochProgress(bar)], verbose=0, shuffle=False)
    return {key: [float(v) for v in values] for key, values in history.history.items()}


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


def predict_probs(model: keras.Model, features: np.ndarray, rows: np.ndarray, batch_size: int, *,
                  desc: str = "predict") -> np.ndarray:
    """Softmax outputs (len(rows), classes) of `model` on `features[rows]`, in the order of `rows`."""
    rows = np.asarray(rows, dtype=np.int64)
    outputs = np.empty((len(rows), model.output_shape[-1]), dtype=np.float32)
    with progress(len(rows), desc, "row") as bar:
        for start in range(0, len(rows), batch_size):
            batch = rows[start:start + batch_size]
            outputs[start:start + len(batch)] = model.predict_on_batch(np.asarray(features[batch], dtype=np.float32))
            bar.update(len(batch))
    return outputs


def history_frame(histories: dict[str, dict[str, list[float]]]) -> pd.DataFrame:
    """One row per epoch (1-based): `epoch`, then `<head>_loss` and `val_<head>_loss` of each trained head.

    A head that stopped earlier than another has empty cells after its last epoch; with no trained
    head the table has only the `epoch` column and no rows.
    """
    trained = {head: h for head, h in histories.items() if h.get("loss")}
    epochs = max((len(h["loss"]) for h in trained.values()), default=0)
    frame = pd.DataFrame({"epoch": np.arange(1, epochs + 1)})
    for head, history in trained.items():
        for key in ("loss", "val_loss"):
            values = np.full(epochs, np.nan)
            values[:len(history[key])] = history[key]
            frame[key.replace("loss", f"{head}_loss")] = values
    return frame


def history_summary(history: dict[str, list[float]]) -> dict[str, float | int]:
    """Epochs run, the best (lowest) validation loss and its 1-based epoch; {} for an untrained head."""
    if not history.get("val_loss"):
        return {}
    best = int(np.argmin(history["val_loss"]))
    return {"epochs": len(history["val_loss"]), "best_epoch": best + 1,
            "best_val_loss": history["val_loss"][best], "loss_at_best": history["loss"][best]}


def log_histories(live_dir: str | Path, histories: dict[str, dict[str, list[float]]], summary: dict) -> None:
    """Write the loss curves with dvclive (`<head>/loss`, `<head>/val_loss`, step = epoch - 1) and `summary`.

    Written after training, one step per epoch across heads, so `dvc plots` shows each head's curves.
    dvclive is told not to touch dvc.yaml nor start its own experiment: the stage's outputs are declared
    in dvc.yaml, `<live_dir>/plots/metrics` among them, so that folder exists even when no head was
    trained (init `published`).
    """
    with Live(dir=str(live_dir), dvcyaml=None, save_dvc_exp=False, report=None) as live:
        Path(live.plots_dir, "metrics").mkdir(parents=True, exist_ok=True)
        for epoch in range(max((len(h.get("loss", [])) for h in histories.values()), default=0)):
            for head, history in histories.items():
                for key in ("loss", "val_loss"):
                    if epoch < len(history.get(key, [])):
                        live.log_metric(f"{head}/{key}", history[key][epoch])
            live.next_step()
        live.summary = summary


def starting_weights(init: Init, head: str, pretrain_dir: str | Path | None, published_backbone: bool):
    """The starting hidden-layer weights for init `backbone` of `head` ('age' | 'gender'); None for
    `random` (init `published` starts from the whole published head: `start_head`).

    See the module docstring for where each init's weights come from.
    """
    if init == "random":
        return None
    if pretrain_dir is None:
        raise ValueError(f"init {init!r} starts from the pretrain stage's heads: give their folder")
    pretrain_dir = Path(pretrain_dir)
    source = pretrain_dir / ("vgg_face.keras" if published_backbone else f"{head}.keras")
    return layer_weights(_load_head(source), FC_LAYERS)


def start_for(init: Init, backbone) -> Init:
    """The init a retrained head really starts from: `random` where the backbone's published heads are
    its model's own output layers (nothing hidden to start from), else `init` itself."""
    if init == "backbone" and describe(backbone).published_outputs:
        return "random"
    return init


def _load_head(path: Path) -> keras.Model:
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the pretrain stage first (`dvc repro pretrain`)")
    return keras.models.load_model(path, compile=False)


def with_split(manifest: pd.DataFrame, split: str) -> pd.DataFrame:
    """The manifest with `split` set to the split an experiment trains and is evaluated on:
    `grouped` (the split stage's `split` column) or `naive` (its `split_naive`)."""
    if split == "grouped":
        return manifest
    if "split_naive" not in manifest.columns:
        raise ValueError("the split manifest has no `split_naive` column: re-run `dvc repro split`")
    return manifest.assign(split=manifest["split_naive"])


def role_splits(manifest: pd.DataFrame, dataset: str, role: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The train and val rows of `dataset` (the dataset playing `role`) in the split manifest."""
    rows = manifest[manifest["dataset"] == dataset]
    if rows.empty:
        raise ValueError(f"roles.{role} names dataset {dataset!r}, but the split manifest has no rows of it: "
                         f"it has {sorted(manifest['dataset'].unique())}; re-run `dvc repro split`")
    return rows[rows["split"] == "train"], rows[rows["split"] == "val"]


def start_head(data: HeadData, task: str, init: Init) -> keras.Model:
    """A new `task` head for `data`'s features, holding `init`'s starting weights: for init `published`
    the pretrain stage's published head itself (its own layers: fc6, fc7 and output for VGG-Face's, the
    one output layer on the flatten for the WideResNet's), else a `build_head` head."""
    if init == "published":
        if data.pretrain_dir is None:
            raise ValueError("init 'published' starts from the pretrain stage's heads: give their folder")
        return _load_head(Path(data.pretrain_dir) / f"{task}.keras")
    params = data.params
    model = build_head(data.features.dim, params.backbone.fc_width, task_classes(task, params.labels.max_age),
                       params.train.dropout, name=task, seed=params.seed)
    start = start_for(init, params.backbone)
    return init_head(model, start, starting_weights(start, task, data.pretrain_dir,
                                                    uses_published_weights(params.backbone)))


def train_heads(data: HeadData, init: Init, plan: tuple[np.ndarray, np.ndarray | None]) -> FittedHeads:
    """Build, initialise and fit the age and the gender head on `data`'s train rows, early stopping on val.

    `plan` is `sampling.training_plan`'s (indices into `data.train`, loss weights or None).
    """
    indices, weights = plan
    heads, histories = {}, {}
    for task in TASKS:
        heads[task] = start_head(data, task, init)
        train = data.task_rows(task, data.train).take(indices)
        histories[task] = fit_head(heads[task], data.features.array, train, data.task_rows(task, data.val),
                                   budget=data.budget, sample_weight=weights, show_progress=None, desc=f"train {task}")
    return FittedHeads(heads, histories, trained_on={"train_rows": len(indices)}, reads=data.reads)


def predict_heads(models: dict[str, keras.Model], features: Features, rows: pd.DataFrame, *, batch_size: int,
                  experiment: str) -> pd.DataFrame:
    """The predictions table of manifest `rows` from the age and gender heads."""
    feature_rows = features.rows_for(rows["id"])
    probs = {task: predict_probs(models[task], features.array, feature_rows, batch_size, desc=f"predict {task}")
             for task in TASKS}
    return prediction_frame(rows, probs["age"], probs["gender"], experiment)


def predict_fitted(fitted: FittedHeads, features: Features, rows: pd.DataFrame, *, batch_size: int,
                   experiment: str) -> pd.DataFrame:
    """The predictions table of manifest `rows` from fitted heads, on what they read (`FittedHeads.reads`)."""
    if fitted.reads == "published_outputs":
        return published_output_predictions(features, rows, experiment)
    return predict_heads(fitted.heads, features.reading(fitted.reads), rows, batch_size=batch_size,
                         experiment=experiment)


def published_output_predictions(features: Features, rows: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """The predictions table of manifest `rows` from the published model's own outputs, as the features
    stage stored them (float32: P(female), P(male), then the age probabilities)."""
    if features.published is None:
        raise ValueError("the features hold no published outputs: this backbone's published heads are not its own "
                         "output layers")
    outputs = np.asarray(features.published[features.rows_for(rows["id"])], dtype=np.float32)
    return prediction_frame(rows, outputs[:, 2:], outputs[:, :2], experiment)


def published_output_heads(published_outputs: int, max_age: int) -> dict[str, keras.Model]:
    """The published heads of a backbone that stores its model's own outputs, as files `predict` can load:
    each selects its task's columns (gender: P(female), P(male); age: the rest) of the stored outputs,
    exactly (a 0/1 kernel, no bias, no activation: the outputs are probabilities already)."""
    layout = {"gender": (0, len(GENDER_CLASSES)), "age": (len(GENDER_CLASSES), published_outputs)}
    heads = {}
    for task, (start, stop) in layout.items():
        if stop - start != task_classes(task, max_age):
            raise ValueError(f"the published {task} outputs have {stop - start} classes, params' labels "
                             f"{task_classes(task, max_age)}: check labels.max_age")
        inputs = keras.Input(shape=(published_outputs,), name="published_outputs")
        select = keras.layers.Dense(stop - start, use_bias=False, name="select", dtype="float32")
        heads[task] = keras.Model(inputs, select(inputs), name=task)
        select.set_weights([np.eye(published_outputs, dtype=np.float32)[:, start:stop]])
    return heads


def published_layer_heads(kernels: dict[str, np.ndarray]) -> dict[str, keras.Model]:
    """Heads that are a published model's own output layers, as published: per task one Dense layer
    without bias (the WideResNet's dense_1/dense_2) and a softmax, on the features those layers read,
    holding the published kernels ({task: (inputs, classes)}). Init `published` starts from them."""
    heads = {}
    for task, kernel in kernels.items():
        inputs = keras.Input(shape=(kernel.shape[0],), name="features")
        output = keras.layers.Dense(kernel.shape[1], use_bias=False, name="predictions")
        heads[task] = keras.Model(inputs, keras.layers.Activation("softmax", name="softmax")(output(inputs)), name=task)
        output.set_weights([np.asarray(kernel, dtype=np.float32)])
    return heads


def heads_signature(fitted: FittedHeads, init: Init, params: Params, split: str) -> dict:
    """What an experiment's twin must share, as its saved heads show it: where they really started
    (`start_for`), what they read, the split, the budget, and each head's weight shapes. Written to
    models/<exp>/mitigation.json (`heads`); the report compares each pair it sets side by side."""
    start = init if init == "published" else start_for(init, params.backbone)
    return {"start": start, "reads": fitted.reads, "split": split,
            "budget": asdict(Budget.from_params(params)),
            "layers": {task: [list(weight.shape) for weight in model.weights] for task, model in fitted.heads.items()}}


def save_heads(models: dict[str, keras.Model], histories: dict[str, dict[str, list[float]]],
               directory: str | Path, summary: dict) -> None:
    """`<directory>/<task>.keras`, `history.csv` (`history_frame`) and the dvclive folder `live/`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for task, model in models.items():
        model.save(directory / f"{task}.keras")
    history_frame(histories).to_csv(directory / "history.csv", index=False)
    log_histories(directory / "live", histories,
                  {**summary, **{task: history_summary(h) for task, h in histories.items()}})


def published_heads(weights_dir: str | Path, names: Sequence[str], input_dim: int, params: Params
                    ) -> dict[str, keras.Model]:
    """Heads holding the published files' fc6, fc7 and output layer, for `names` among age, gender, vgg_face.

    `<weights_dir>/<name>.h5` is read with `backbone.head_weights` (conv kernels turned dense). The
    age/gender heads are built from params (backbone.fc_width, labels.max_age), so a mismatch with
    the file fails here, naming the layer and the params to check; vgg_face keeps its 2,622-way fc8.
    """
    heads = {}
    for name in names:
        path = Path(weights_dir) / f"{name}.h5"
        require_weights_file(path)
        weights = head_weights(path)
        if "fc8" in weights:
            weights["predictions"] = weights.pop("fc8")
        classes = weights["predictions"][0].shape[1] if name == "vgg_face" else task_classes(name, params.labels.max_age)
        model = build_head(input_dim, params.backbone.fc_width, classes, params.train.dropout, name=name,
                           seed=params.seed)
        heads[name] = init_head(model, "published", weights)
    return heads
