"""Linear probes: how much of an attribute (race, gender) a backbone's cached features hold.

A probe is one softmax layer on the features standardised with the train rows' mean and standard
deviation (pool5 of a random VGG-Face varies by hundredths: unscaled, Adam at the heads' learning rate
underfits), fitted like the heads (Adam, the `train` budget, early stopping on the val split) with
class-balanced loss weights, so that it cannot score by predicting the commonest class. What a linear
probe reads, any head built on the features can read.
"""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd

from stages.lib.backbones.store import Features
from stages.lib.heads.data import HeadData, TaskRows
from stages.lib.heads.plain import fit_head
from stages.lib.heads.predicting import predict_probs


def feature_moments(features: np.ndarray, rows: np.ndarray, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and variance of `features[rows]`, read `chunk` rows at a time (float64 sums)."""
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    total, squares = np.zeros(features.shape[1]), np.zeros(features.shape[1])
    for start in range(0, len(rows), chunk):
        block = np.asarray(features[rows[start:start + chunk]], dtype=np.float64)
        total += block.sum(axis=0)
        squares += (block ** 2).sum(axis=0)
    mean = total / max(len(rows), 1)
    return mean, np.maximum(squares / max(len(rows), 1) - mean ** 2, 0.0)


def build_linear_probe(mean: np.ndarray, variance: np.ndarray, classes: int, seed: int = 0) -> keras.Model:
    """Input -> standardise (given mean, variance; a constant column stays 0) -> Dense(classes) -> softmax."""
    inputs = keras.Input(shape=(len(mean),), name="features")
    scaled = keras.layers.Normalization(mean=mean, variance=np.where(variance > 0, variance, 1.0), name="standardise")(inputs)
    logits = keras.layers.Dense(classes, name="probe", kernel_initializer=keras.initializers.GlorotUniform(seed=seed))(scaled)
    return keras.Model(inputs, keras.layers.Activation("softmax", name="softmax")(logits), name="linear_probe")


def class_balanced_weights(codes: np.ndarray) -> np.ndarray:
    """Loss weight per row ∝ 1 / (rows of its class), mean 1: every class carries the same total weight."""
    codes = np.asarray(codes)
    counts = np.bincount(codes)
    return len(codes) / (np.count_nonzero(counts) * counts[codes])


def labelled(frame: pd.DataFrame, attribute: str, classes: list[str]) -> pd.DataFrame:
    """The rows of `frame` whose `attribute` is one of `classes`."""
    return frame[frame[attribute].isin(classes)]


def fit_probe(data: HeadData, attribute: str) -> tuple[keras.Model, list[str]]:
    """A linear probe of `attribute` fitted on `data`'s labelled train rows, stopped on its labelled val
    rows; returns it and its classes (the labels the train rows have, sorted)."""
    features, train, val = data.features, data.train, data.val
    classes = sorted(train[attribute].dropna().unique())
    if len(classes) < 2:
        raise ValueError(f"a probe of {attribute} needs at least two {attribute} labels among the train rows, "
                         f"found {classes}")
    train, val = labelled(train, attribute, classes), labelled(val, attribute, classes)
    codes = {name: pd.Categorical(frame[attribute], categories=classes).codes.astype(np.int64)
             for name, frame in (("train", train), ("val", val))}
    train_rows = features.rows_for(train["id"])
    model = build_linear_probe(*feature_moments(features.array, train_rows), len(classes), seed=data.params.seed)
    fit_head(model, features.array, TaskRows(train_rows, codes["train"]),
             TaskRows(features.rows_for(val["id"]), codes["val"]), budget=data.budget,
             sample_weight=class_balanced_weights(codes["train"]))
    return model, classes


def probe_predictions(model: keras.Model, classes: list[str], features: Features, rows: pd.DataFrame, *,
                      attribute: str, batch_size: int) -> pd.DataFrame:
    """`id`, `dataset`, the true `label` and the probe's `predicted` class of the rows labelled with one of `classes`."""
    rows = labelled(rows, attribute, classes)
    probs = predict_probs(model, features.array, features.rows_for(rows["id"]), batch_size, desc=f"probe {attribute}")
    return pd.DataFrame({"id": rows["id"].to_numpy(), "dataset": rows["dataset"].to_numpy(),
                         "label": rows[attribute].to_numpy(), "predicted": np.asarray(classes)[probs.argmax(axis=1)]})
