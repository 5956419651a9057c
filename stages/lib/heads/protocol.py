"""The study's training protocol, beside ours, so that the report can measure what it changes.

The study (its notebooks, after serengil's tensorflow-101): Adam at Keras' default learning rate 1e-3
on the cross-entropy; 250 "epochs", each a single `fit` on one batch of 512 rows drawn at random,
with replacement, from the training set; a 70/30 train/test split with no validation set, the loss on
the test set computed after every epoch and the checkpoint with the lowest test loss kept. Ours
(heads/training.py): Adam at `train.learning_rate` (1e-4), full passes over the train split, early
stopping on a separate val split, 60/10/30.

`train_heads_study` runs the study's loop (an experiment with `protocol: study`) on the train split
and keeps the checkpoint the study would keep. Our val split is held back from training for one
purpose: after every epoch the heads are scored on both the test and the val split, so the same run
says what the test split gives at the checkpoint the val split would have picked. The gap between
the two (`selection_summary`) is how much picking the checkpoint on the test set flatters the test
figures; the rest of the difference to our protocol is the learning rate, the one-batch epochs and
the 60% (not 70%) of faces trained on.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pandas as pd

from stages.lib.backbones.registry import uses_published_weights
from stages.lib.core.params import Params
from stages.lib.heads.model import TASKS, Init, build_head, expected_age, init_head, task_classes, task_labels
from stages.lib.backbones.store import Features
from stages.lib.heads.training import compile_head, predict_probs, start_for, starting_weights

STUDY_LEARNING_RATE = 1e-3  # keras.optimizers.Adam()'s default, which the study used
STUDY_EPOCHS = 250
STUDY_BATCH_SIZE = 512
_LOG_FLOOR = 1e-7  # Keras clips probabilities to [eps, 1 - eps] before the log


def cross_entropy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean sparse categorical cross-entropy of softmax outputs, as Keras computes it."""
    picked = probs[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(picked, _LOG_FLOOR, 1 - _LOG_FLOOR)).mean())


def task_metric(task: str, probs: np.ndarray, labels: np.ndarray) -> float:
    """Age: MAE of the expected value (years). Gender: accuracy of the most probable class."""
    if task == "age":
        return float(np.abs(expected_age(probs) - labels).mean())
    return float((probs.argmax(axis=1) == labels).mean())


def fit_head_study(model: keras.Model, features: np.ndarray, task: str, train: tuple[np.ndarray, np.ndarray],
                   val: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], *,
                   sample_weight: np.ndarray | None = None, seed: int, epochs: int = STUDY_EPOCHS,
                   batch_size: int = STUDY_BATCH_SIZE, learning_rate: float = STUDY_LEARNING_RATE
                   ) -> dict[str, list[float]]:
    """Train `model` in place the study's way; keep the weights of the epoch with the lowest test loss.

    train, val, test: (feature rows, class labels). Returns per epoch the training batch's `loss`,
    `val_loss` and `test_loss`, and `val_metric` / `test_metric` (`task_metric`).
    """
    if min(len(train[0]), len(val[0]), len(test[0])) == 0:
        raise ValueError(f"the study's protocol needs rows in train ({len(train[0])}), val ({len(val[0])}) and "
                         f"test ({len(test[0])}): check split.* and the finetune dataset's size")
    keras.utils.set_random_seed(seed)
    compile_head(model, learning_rate)
    rng = np.random.default_rng(seed)
    rows, labels = train
    history: dict[str, list[float]] = {key: [] for key in ("loss", "val_loss", "test_loss", "val_metric", "test_metric")}
    best_loss, best_weights = np.inf, model.get_weights()
    for _ in range(epochs):
        drawn = rng.integers(0, len(rows), batch_size)  # np.random.choice(n, size): with replacement
        weights = None if sample_weight is None else sample_weight[drawn]
        batch = np.asarray(features[rows[drawn]], dtype=np.float32)
        history["loss"].append(float(model.train_on_batch(batch, labels[drawn], sample_weight=weights)))
        for name, (split_rows, split_labels) in (("val", val), ("test", test)):
            probs = predict_probs(model, features, split_rows, batch_size, desc=f"{task} {name}")
            history[f"{name}_loss"].append(cross_entropy(probs, split_labels))
            history[f"{name}_metric"].append(task_metric(task, probs, split_labels))
        if history["test_loss"][-1] < best_loss:
            best_loss, best_weights = history["test_loss"][-1], model.get_weights()
    model.set_weights(best_weights)
    return history


def selection_summary(task: str, history: dict[str, list[float]]) -> dict:
    """The test figure at the checkpoint the study keeps (lowest test loss) and at the one the val split
    would pick, with their 1-based epochs: `flattery` is how much better picking on the test set makes
    the test figure look (years of MAE for age, accuracy points for gender; negative: it did not flatter)."""
    metric = "mae" if task == "age" else "accuracy"
    on_test, on_val = int(np.argmin(history["test_loss"])), int(np.argmin(history["val_loss"]))
    picked_test, picked_val = history["test_metric"][on_test], history["test_metric"][on_val]
    return {
        "metric": metric, "epoch_picked_on_test": on_test + 1, "epoch_picked_on_val": on_val + 1,
        f"test_{metric}_picked_on_test": picked_test, f"test_{metric}_picked_on_val": picked_val,
        "flattery": (picked_val - picked_test) if task == "age" else (picked_test - picked_val),
    }


def train_heads_study(params: Params, features: Features, train: pd.DataFrame, val: pd.DataFrame,
                      test: pd.DataFrame, init: Init, plan: tuple[np.ndarray, np.ndarray | None],
                      pretrain_dir: str | Path | None = None
                      ) -> tuple[dict[str, keras.Model], dict[str, dict[str, list[float]]], dict[str, dict]]:
    """`training.train_heads` the study's way: the heads, their histories and each head's `selection_summary`.

    `plan` (oversampling / re-weighting) applies to the rows the random batches are drawn from.
    """
    indices, weights = plan
    rows = {"train": features.rows_for(train["id"])[indices], "val": features.rows_for(val["id"]),
            "test": features.rows_for(test["id"])}
    max_age = params.labels.max_age
    models, histories, selection = {}, {}, {}
    for task in TASKS:
        model = build_head(features.dim, params.backbone.fc_width, task_classes(task, max_age),
                           params.train.dropout, name=task, seed=params.seed)
        start = start_for(init, params.backbone)
        init_head(model, start, starting_weights(start, task, pretrain_dir, uses_published_weights(params.backbone)))
        labels = {"train": task_labels(task, train, max_age)[indices], "val": task_labels(task, val, max_age),
                  "test": task_labels(task, test, max_age)}
        histories[task] = fit_head_study(
            model, features.array, task, *((rows[s], labels[s]) for s in ("train", "val", "test")),
            sample_weight=weights, seed=params.seed)
        selection[task] = selection_summary(task, histories[task])
        models[task] = model
    return models, histories, selection
