"""Running heads on the cached features: softmax outputs, their cross-entropy, the predictions table."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd

from stages.lib.backbones.store import Features
from stages.lib.core.progress import progress
from stages.lib.heads.data import FittedHeads
from stages.lib.heads.model import TASKS, prediction_frame


def cross_entropy(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-row −log p(label), clipped as Keras' sparse categorical cross-entropy clips it."""
    picked = np.asarray(probs, dtype=np.float64)[np.arange(len(labels)), labels]
    return -np.log(np.clip(picked, keras.config.epsilon(), 1.0))


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


def predict_heads(models: dict[str, keras.Model], features: Features, rows: pd.DataFrame, *, batch_size: int,
                  experiment: str) -> pd.DataFrame:
    """The predictions table of manifest `rows` from the age and gender heads."""
    feature_rows = features.rows_for(rows["id"])
    probs = {task: predict_probs(models[task], features.array, feature_rows, batch_size, desc=f"predict {task}")
             for task in TASKS}
    return prediction_frame(rows, probs["age"], probs["gender"], experiment)


def predict_fitted(fitted: FittedHeads, features: Features, rows: pd.DataFrame, *, batch_size: int,
                   experiment: str, male_at: float | None = None) -> pd.DataFrame:
    """The predictions table of manifest `rows` from fitted heads, on what they read (`FittedHeads.reads`);
    the published model's own outputs are called by its decision rule (`male_at`, BackboneSpec.male_at)."""
    if fitted.reads == "published_outputs":
        return published_output_predictions(features, rows, experiment, male_at=male_at)
    return predict_heads(fitted.heads, features.reading(fitted.reads), rows, batch_size=batch_size,
                         experiment=experiment)


def published_output_predictions(features: Features, rows: pd.DataFrame, experiment: str, *,
                                 male_at: float | None = None) -> pd.DataFrame:
    """The predictions table of manifest `rows` from the published model's own outputs, as the features
    stage stored them (float32: P(female), P(male), then the age probabilities); gender called male
    where P(male) >= `male_at` (the published model's decision rule; None: the more probable class)."""
    if features.published is None:
        raise ValueError("the features hold no published outputs: this backbone's published heads are not its own "
                         "output layers")
    outputs = np.asarray(features.published[features.rows_for(rows["id"])], dtype=np.float32)
    return prediction_frame(rows, outputs[:, 2:], outputs[:, :2], experiment, male_at=male_at)
