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
Init `published` takes all of a baseline head; init `vgg_face` takes fc6/fc7 from `vgg_face.keras`,
or, with a random backbone, from the baseline head of the same task.

A backbone whose published heads are its own model's output layers (spec.published_outputs:
wide_resnet_imdb) has its published predictions stored by the features stage
(`published_output_predictions`; `published_output_heads` select them for `stages.predict`), and no
hidden layers to start from: its retrained heads start
from the seeded random init (`start_for`).
"""

from __future__ import annotations

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
from stages.lib.heads.model import (FC_LAYERS, GENDER_CLASSES, HEAD_LAYERS, TASKS, Init, build_head, init_head,
                                    layer_weights,
                              prediction_frame, task_classes, task_labels)
from stages.lib.core.params import Params
from stages.lib.core.progress import Progress, progress

def configure_determinism(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TF ops deterministic (also on GPU): same seed, same heads."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def row_dataset(features: np.ndarray, rows: np.ndarray, labels: np.ndarray, batch_size: int,
                weights: np.ndarray | None = None, shuffle_seed: int | None = None) -> tf.data.Dataset:
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
    same order, give the same weights bit for bit (tests/test_training_speed.py), with a fraction of
    the per-step Python overhead, which is most of an epoch's cost on the demo's small heads."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(), steps_per_execution=STEPS_PER_EXECUTION)


def fit_head(model: keras.Model, features: np.ndarray, train_rows: np.ndarray, train_labels: np.ndarray,
             val_rows: np.ndarray, val_labels: np.ndarray, *, sample_weight: np.ndarray | None = None,
             epochs: int, patience: int, batch_size: int, learning_rate: float, seed: int,
             show_progress: bool | None = False, desc: str = "train") -> dict[str, list[float]]:
    """Train `model` in place with Adam and sparse categorical cross-entropy; keep the best val loss.

    Stops after `patience` epochs without a better validation loss and restores the weights of the best
    epoch. Labels are class indices. Returns Keras' history: {'loss': [...], 'val_loss': [...]}.
    `show_progress` counts epochs under `desc` (`core.progress`; None: a bar on a terminal, lines elsewhere).
    """
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise ValueError(f"training needs rows in both train ({len(train_rows)}) and val ({len(val_rows)}) "
                         "splits: check split.val and the finetune dataset's size")
    keras.utils.set_random_seed(seed)
    compile_head(model, learning_rate)
    train = row_dataset(features, train_rows, train_labels, batch_size, sample_weight, shuffle_seed=seed)
    val = row_dataset(features, val_rows, val_labels, batch_size)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
    with progress(epochs, desc, "epoch", show=show_progress, at_most=True) as bar:
        history = model.fit(train, validation_data=val, epochs=epochs, callbacks=[stop, _EpochProgress(bar)],
                            verbose=0, shuffle=False)
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


def predict_probs(model: keras.Model, features: np.ndarray, rows: np.ndarray, batch_size: int,
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
    """The starting layer weights for `init` of `head` ('age' | 'gender'); None for `random`.

    See the module docstring for where each init's weights come from.
    """
    if init == "random":
        return None
    if pretrain_dir is None:
        raise ValueError(f"init {init!r} starts from the pretrain stage's heads: give their folder")
    pretrain_dir = Path(pretrain_dir)
    if init == "published":
        return layer_weights(_load_head(pretrain_dir / f"{head}.keras"), HEAD_LAYERS)
    source = pretrain_dir / ("vgg_face.keras" if published_backbone else f"{head}.keras")
    return layer_weights(_load_head(source), FC_LAYERS)


def start_for(init: Init, backbone) -> Init:
    """The init a retrained head really starts from: `random` where the backbone's published heads are
    its model's own output layers (nothing hidden to start from), else `init` itself."""
    if init == "vgg_face" and describe(backbone).published_outputs:
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


def start_head(params: Params, input_dim: int, task: str, init: Init, pretrain_dir: str | Path | None,
               published_backbone: bool) -> keras.Model:
    """A new `task` head for `input_dim`-wide features, holding `init`'s starting weights."""
    model = build_head(input_dim, params.backbone.fc_width, task_classes(task, params.labels.max_age),
                       params.train.dropout, name=task, seed=params.seed)
    start = start_for(init, params.backbone)
    return init_head(model, start, starting_weights(start, task, pretrain_dir, published_backbone))


def train_heads(params: Params, features: Features, train: pd.DataFrame, val: pd.DataFrame, init: Init,
                plan: tuple[np.ndarray, np.ndarray | None], pretrain_dir: str | Path | None = None
                ) -> tuple[dict[str, keras.Model], dict[str, dict[str, list[float]]]]:
    """Build, initialise and (unless init is `published`) fit the age and the gender head.

    `train`/`val` are manifest rows; `plan` is `sampling.training_plan`'s (indices into `train`, loss
    weights or None). Returns the heads and the training history of each head that was trained.
    """
    indices, weights = plan
    train_rows, val_rows = features.rows_for(train["id"])[indices], features.rows_for(val["id"])
    max_age = params.labels.max_age
    models, histories = {}, {}
    for task in TASKS:
        model = start_head(params, features.dim, task, init, pretrain_dir, uses_published_weights(params.backbone))
        if init != "published":
            histories[task] = fit_head(
                model, features.array, train_rows, task_labels(task, train, max_age)[indices],
                val_rows, task_labels(task, val, max_age), sample_weight=weights,
                epochs=params.train.epochs, patience=params.train.patience,
                batch_size=params.train.batch_size, learning_rate=params.train.learning_rate, seed=params.seed,
                show_progress=None, desc=f"train {task}")
        models[task] = model
    return models, histories


def predict_heads(models: dict[str, keras.Model], features: Features, rows: pd.DataFrame, batch_size: int,
                  experiment: str) -> pd.DataFrame:
    """The predictions table of manifest `rows` from the age and gender heads."""
    feature_rows = features.rows_for(rows["id"])
    probs = {task: predict_probs(models[task], features.array, feature_rows, batch_size, desc=f"predict {task}")
             for task in TASKS}
    return prediction_frame(rows, probs["age"], probs["gender"], experiment)


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
