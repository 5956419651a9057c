"""The dense heads trained on cached pool5 features: fc6 -> fc7 -> softmax, for age and for gender.

The study (and serengil's deepface models it used) kept VGG-Face's fc6 as a 7x7 convolution over the
7x7 pool5 map, fc7 as a 1x1 convolution and the new output as `Conv2D(classes, (1, 1),
name='predictions')`. On a 7x7 input a 7x7 "valid" convolution is exactly a Dense layer on the
flattened (channels-last) map, so the heads here are Dense layers with the same names; the backbone
module converts the published conv kernels to this dense form. Trained on cached pool5 features,
an epoch costs 5 ms per face on 2 CPU cores against 320 ms for the study's whole-network fit
(bench/bench_heads.py, batch 512 vs 32).

Class order, shared by the published files and every head we train:
- age: class k is k years, k = 0..max_age (101 classes in the study);
- gender: class 0 is female, class 1 is male, as in deepface's gender model (labels ['Woman', 'Man']).
"""

from __future__ import annotations

from typing import Literal, Mapping

import keras
import numpy as np
import pandas as pd

from stages.lib.core.errors import UserError
from stages.lib.core.schema import (BAND_COLUMN, CLUSTER_COLUMN, PREDICTION_COLUMNS, require_columns,
                                    resampling_clusters)

TASKS = ("age", "gender")
GENDER_CLASSES = ("female", "male")  # index = class of the gender softmax (deepface: 'Woman', 'Man')
HEAD_LAYERS = ("fc6", "fc7", "predictions")
FC_LAYERS = ("fc6", "fc7")
HIDDEN_LAYER = "fc7"   # the representation the output layer reads (probes, adversaries, last-layer refits)

Init = Literal["published", "backbone", "random"]
LayerWeights = Mapping[str, tuple[np.ndarray, np.ndarray]]


class HeadWeightsError(UserError, ValueError):
    """Starting weights that do not fit the head they are meant for."""


def age_classes(max_age: int) -> int:
    """Number of classes of the age softmax: one per year from 0 to max_age."""
    return max_age + 1


def task_classes(task: str, max_age: int) -> int:
    """Width of the softmax of the `age` or `gender` head."""
    return {"age": age_classes(max_age), "gender": len(GENDER_CLASSES)}[task]


def task_labels(task: str, frame: pd.DataFrame, max_age: int) -> np.ndarray:
    """Class indices of the manifest rows in `frame` for the `age` or `gender` head."""
    return age_codes(frame["age"], max_age) if task == "age" else gender_codes(frame["gender"])


def build_head(input_dim: int, fc_width: int, classes: int, dropout: float, *, name: str, seed: int = 0) -> keras.Model:
    """Input(input_dim) -> fc6 (relu) -> dropout -> fc7 (relu) -> dropout -> predictions -> softmax.

    Every initializer and dropout layer gets its own seed derived from `seed`, so two heads built with
    the same arguments start from the same weights and drop the same units.
    """
    inputs = keras.Input(shape=(input_dim,), name="features")  # whatever backbone made them
    x = keras.layers.Dense(fc_width, activation="relu", name="fc6",
                           kernel_initializer=keras.initializers.GlorotUniform(seed=seed))(inputs)
    x = keras.layers.Dropout(dropout, seed=seed + 3, name="fc6_dropout")(x)
    x = keras.layers.Dense(fc_width, activation="relu", name="fc7",
                           kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 1))(x)
    x = keras.layers.Dropout(dropout, seed=seed + 4, name="fc7_dropout")(x)
    x = keras.layers.Dense(classes, name="predictions",
                           kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 2))(x)
    outputs = keras.layers.Activation("softmax", name="softmax")(x)
    return keras.Model(inputs, outputs, name=name)


def layer_weights(model: keras.Model, layers: tuple[str, ...] = HEAD_LAYERS) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{layer: (kernel, bias)} of a head, the same dense form `backbone.head_weights` returns."""
    return {name: tuple(np.asarray(w) for w in model.get_layer(name).get_weights()) for name in layers}


def init_head(model: keras.Model, init: Init, weights: LayerWeights | None = None) -> keras.Model:
    """Set a freshly built head's starting weights, in place; returns the model.

    - `published`: fc6, fc7 and predictions all from `weights` (the published age/gender model: used
      as is, it is the study's baseline);
    - `backbone`: fc6 and fc7 from `weights` (VGG-Face's own); the output layer keeps its seeded initialisation;
    - `random`: the seeded initialisation of `build_head`; `weights` must be None.
    """
    layers = {"published": HEAD_LAYERS, "backbone": FC_LAYERS, "random": ()}.get(init)
    if layers is None:
        raise HeadWeightsError(f"init {init!r} is not one of published, backbone, random")
    if not layers:
        if weights is not None:
            raise HeadWeightsError("init 'random' takes no starting weights")
        return model
    if weights is None:
        raise HeadWeightsError(f"init {init!r} needs starting weights for {', '.join(layers)}")
    for name in layers:
        if name not in weights:
            raise HeadWeightsError(f"init {init!r}: the starting weights have no layer {name!r} "
                                   f"(they have {', '.join(sorted(weights))})")
        layer = model.get_layer(name)
        kernel, bias = weights[name]
        expected = tuple(tuple(w.shape) for w in layer.weights)
        if (tuple(kernel.shape), tuple(bias.shape)) != expected:
            raise HeadWeightsError(
                f"init {init!r}: layer {name!r} of head {model.name!r} has kernel/bias shapes {expected}, "
                f"the starting weights have {tuple(kernel.shape)}/{tuple(bias.shape)}; check that "
                "backbone.fc_width, labels.max_age and the features' width match the weights file")
        layer.set_weights([kernel, bias])
    return model


def expected_age(probs: np.ndarray) -> np.ndarray:
    """Σ p(k)·k over the classes of each row: the study's age prediction (N,) in years."""
    probs = np.asarray(probs, dtype=np.float64)
    return probs @ np.arange(probs.shape[1], dtype=np.float64)


def argmax_age(probs: np.ndarray) -> np.ndarray:
    """The most probable age of each row (N,) in whole years."""
    return np.asarray(probs).argmax(axis=1)


def prob_female(probs: np.ndarray) -> np.ndarray:
    """P(female) of each row of the 2-way gender softmax (class order GENDER_CLASSES)."""
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[1] != len(GENDER_CLASSES):
        raise HeadWeightsError(f"gender probabilities must have shape (N, 2), got {probs.shape}")
    return probs[:, GENDER_CLASSES.index("female")]


def predicted_gender(probs: np.ndarray) -> np.ndarray:
    """'female' / 'male' per row: the more probable class (female on an exact tie)."""
    return np.asarray(GENDER_CLASSES, dtype=object)[np.asarray(probs).argmax(axis=1)]


def gender_codes(genders) -> np.ndarray:
    """Class index of each 'female'/'male' label, for training the gender head."""
    codes = {label: index for index, label in enumerate(GENDER_CLASSES)}
    values = list(genders)
    unknown = sorted({g for g in values if g not in codes}, key=str)
    if unknown:
        raise HeadWeightsError(f"gender labels must be one of {GENDER_CLASSES}, found {unknown}")
    return np.array([codes[g] for g in values], dtype=np.int64)


def age_codes(ages, max_age: int) -> np.ndarray:
    """Class index of each age (the age itself), for training the age head; ages must be 0..max_age."""
    ages = np.asarray(ages, dtype=np.int64)
    outside = ages[(ages < 0) | (ages > max_age)]
    if outside.size:
        raise HeadWeightsError(f"ages must lie in 0..{max_age} (labels.max_age) to train the age head; "
                               f"found {sorted(set(outside.tolist()))[:10]}: the prepare stage rejects them")
    return ages


def prediction_frame(rows: pd.DataFrame, age_probs: np.ndarray, gender_probs: np.ndarray,
                     experiment: str) -> pd.DataFrame:
    """The predictions table (schema.PREDICTION_COLUMNS) of manifest `rows` from both heads' softmax."""
    require_columns(rows, ["id", "dataset", "split", "age", "gender", "race"], "manifest rows to predict")
    if not len(rows) == len(age_probs) == len(gender_probs):
        raise ValueError("rows, age_probs and gender_probs must have the same length")
    frame = rows[["id", "dataset", "split", "age", "gender", "race"]].reset_index(drop=True)
    frame["age_pred"] = expected_age(age_probs)
    frame["age_pred_argmax"] = argmax_age(age_probs).astype("int64")
    frame["gender_prob_female"] = prob_female(gender_probs).astype("float64")
    frame["gender_pred"] = predicted_gender(gender_probs)
    frame["experiment"] = experiment
    # FairFace's ages are bands: keep the band, so that evaluation can judge band accuracy.
    bands = rows[BAND_COLUMN].to_numpy() if BAND_COLUMN in rows.columns else None
    # Faces of one person or look-alike cluster: the evaluation's bootstrap draws them together.
    clusters = resampling_clusters(rows).to_numpy()
    return frame[PREDICTION_COLUMNS].assign(**{BAND_COLUMN: bands, CLUSTER_COLUMN: clusters})
