"""yu4u's WideResNet-16-8 trained on IMDB-Wiki (`weights.28-3.73.hdf5`): a model *published* after
training on IMDB-Wiki, as a backbone whose published heads are its own two output layers.

The file is a whole Keras-2 model save (`model_config` + `model_weights`, 195,848,088 bytes, sha256
pinned in params.yaml); Keras 3 `load_model(path, compile=False)` loads it. Its tail:

    ... activation_13 (16x16x512) -> average_pooling2d_1 (8x8, stride 1, "same"; 16x16x512)
        -> flatten_1 (131,072) -> dense_1 (2, softmax, no bias)    gender: index 0 = P(female)
                               -> dense_2 (101, softmax, no bias)  age: expected value over 0..100

Input: (64, 64, 3) float, **BGR**, raw 0-255 (no scaling), each face cropped with a 40% margin
around its detected box and resized with cv2's INTER_LINEAR (yu4u's create_db.py). `embed` does all
of that inside the backbone: a crop cut with another margin is re-framed to 40% (its central part,
when the margin is larger), a dataset's own chip (margin NaN) is taken whole, RGB becomes BGR.

One pass over a face gives
- the cached feature row for retrained heads: the 16x16x512 grid average-pooled to 4x4 cells (8,192
  values, 1/16 of the full flatten), times `FEATURE_SCALE`. Measured on 3,000/2,000 UTKFace chips:
  ridge/logistic on it reach MAE 9.56 and 85.4% gender, near the full 131,072 (9.33 / 85.5%); a
  global pool (512) reaches 78% gender. The raw values are tiny (mean 0.0036, std 0.027, 94% zero)
  and Adam on dense heads barely moves from them, so they are scaled by a fixed 32 (~1/std, measured
  on 5,000 UTKFace chips), the same for every split;
- the published model's own outputs, computed from the full flatten, in float32: P(female), P(male)
  and the 101 age probabilities (`PUBLISHED_OUTPUTS` columns after the feature row). float16 would
  not do: the full features in float16 reproduce the published expected age only to ~1.5e-3 years;
- the full flatten itself (131,072 values, unscaled, stored in float16: 256 KB a face), what the
  published output layers read, so that they can be fine-tuned from their published weights (the
  study's retraining of the published layers; init `published` with a protocol that trains).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from stages.lib.backbones.h5weights import WeightsFileError

MODEL_INPUT = 64
PUBLISHED_MARGIN = 0.4          # IMDB-Wiki's crops, yu4u's training faces
GRID_LAYER = "average_pooling2d_1"
FLATTEN_LAYER = "flatten_1"
GENDER_LAYER, AGE_LAYER = "dense_1", "dense_2"
GRID_SIDE, GRID_CHANNELS = 16, 512
FULL_DIM = GRID_SIDE * GRID_SIDE * GRID_CHANNELS  # 131,072: flatten_1
POOL_CELLS = 4
FEATURE_DIM = POOL_CELLS * POOL_CELLS * GRID_CHANNELS  # 8,192
FEATURE_SCALE = 32.0
AGE_CLASSES = 101
PUBLISHED_OUTPUTS = 2 + AGE_CLASSES  # P(female), P(male), P(age = 0..100)
WEIGHTS_FILE = "wide_resnet_imdb.hdf5"  # in the weights folder, written there by the download stage
ALIGNMENT = ("none: the crop re-framed to a 40% margin (a ready chip whole), resized to 64 with cv2 "
             "INTER_LINEAR, BGR 0-255 as yu4u trained it")
FIX = "run `python -m stages.download --only wide_resnet_imdb` (or `dvc repro download`)"

_REQUIRED_LAYERS = ("activation_13", GRID_LAYER, FLATTEN_LAYER, GENDER_LAYER, AGE_LAYER)
_KERNELS = {GENDER_LAYER: (FULL_DIM, 2), AGE_LAYER: (FULL_DIM, AGE_CLASSES)}


def check_published_file(path: str | Path) -> None:
    """WeightsFileError unless `path` is laid out as yu4u's WideResNet-16-8 save: a Keras model save
    with the layers above and output kernels of (131,072, 2) and (131,072, 101), no biases. h5py
    only, shapes only (milliseconds): the download stage runs it before it trusts a file."""
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise WeightsFileError(f"{path}: not an HDF5 file ({exc})") from None
    with handle:
        if "model_config" not in handle.attrs or "model_weights" not in handle:
            raise WeightsFileError(f"{path}: no model_config/model_weights: not a whole Keras model save")
        config = json.loads(handle.attrs["model_config"])
        names = {layer["config"]["name"] for layer in config["config"]["layers"]}
        missing = [name for name in _REQUIRED_LAYERS if name not in names]
        if missing:
            raise WeightsFileError(f"{path}: layers {missing} missing: not yu4u's WideResNet-16-8")
        weights = handle["model_weights"]
        for layer, shape in _KERNELS.items():
            kernel = weights.get(f"{layer}/{layer}/kernel:0")
            if kernel is None or tuple(kernel.shape) != shape:
                got = None if kernel is None else tuple(kernel.shape)
                raise WeightsFileError(f"{path}: {layer} kernel {got}, expected {shape}")
            if f"{layer}/{layer}/bias:0" in weights:
                raise WeightsFileError(f"{path}: {layer} has a bias; the published layer has none")


def published_output_kernels(path: str | Path) -> dict[str, np.ndarray]:
    """The published output layers' kernels, {"age": (131,072, 101), "gender": (131,072, 2)} float32,
    read with h5py after the structure check (no model built): where init `published` starts."""
    import h5py

    check_published_file(path)
    with h5py.File(path, "r") as handle:
        weights = handle["model_weights"]
        return {task: np.asarray(weights[f"{layer}/{layer}/kernel:0"], dtype=np.float32)
                for task, layer in (("age", AGE_LAYER), ("gender", GENDER_LAYER))}


def load_published_model(path: str | Path):
    """The whole published model (Keras 3), after the structure check; one line naming the fix otherwise."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the WideResNet weights are fetched by the download stage; {FIX}")
    try:
        check_published_file(path)
    except WeightsFileError as exc:
        raise WeightsFileError(f"{exc}; delete it and {FIX}") from None
    return keras.models.load_model(str(path), compile=False)


def published_framing_fraction(margin: float) -> float:
    """The central share of a crop cut with `margin` that frames the face with the published 40%
    margin (1 when the crop's margin is 40% or less: the whole crop; NaN margin: a ready chip, whole)."""
    if np.isnan(margin) or margin <= PUBLISHED_MARGIN:
        return 1.0
    return (1 + 2 * PUBLISHED_MARGIN) / (1 + 2 * margin)


def model_input(images: np.ndarray, margins: np.ndarray) -> np.ndarray:
    """uint8 RGB square crops (N, S, S, 3) -> the model's (N, 64, 64, 3) float32 BGR 0-255 input."""
    out = np.empty((len(images), MODEL_INPUT, MODEL_INPUT, 3), dtype=np.float32)
    for position, (image, margin) in enumerate(zip(np.asarray(images), margins)):
        side = image.shape[0]
        keep = max(1, round(side * published_framing_fraction(float(margin))))
        start = (side - keep) // 2
        face = np.ascontiguousarray(image[start:start + keep, start:start + keep, ::-1])  # RGB -> BGR
        out[position] = cv2.resize(face, (MODEL_INPUT, MODEL_INPUT), interpolation=cv2.INTER_LINEAR)
    return out


def pool_grid(grid: np.ndarray, cells: int = POOL_CELLS) -> np.ndarray:
    """(N, 16, 16, 512) -> (N, cells*cells*512): the mean of each of cells x cells blocks, channels-last."""
    n, side = grid.shape[0], grid.shape[1]
    step = side // cells
    blocks = np.asarray(grid, dtype=np.float32).reshape(n, cells, step, cells, step, grid.shape[-1])
    return blocks.mean(axis=(2, 4)).reshape(n, -1)


def embedder(model):
    """embed(images, margins) -> (N, FEATURE_DIM + PUBLISHED_OUTPUTS + FULL_DIM) float32: the scaled
    pooled grid, the published P(female), P(male) and age probabilities of the same pass, and the
    flatten those published output layers read (unscaled, as they read it)."""
    import keras
    import tensorflow as tf

    both = keras.Model(model.inputs, [model.get_layer(GRID_LAYER).output, model.get_layer(GENDER_LAYER).output,
                                      model.get_layer(AGE_LAYER).output, model.get_layer(FLATTEN_LAYER).output])

    @tf.function(reduce_retracing=True)
    def infer(batch):
        return both(batch, training=False)

    def embed(images, margins) -> np.ndarray:
        images = np.asarray(images)
        if not len(images):
            return np.empty((0, FEATURE_DIM + PUBLISHED_OUTPUTS + FULL_DIM), dtype=np.float32)
        grid, gender, age, flat = (np.asarray(t, dtype=np.float32)
                                   for t in infer(model_input(images, np.asarray(margins))))
        return np.concatenate([pool_grid(grid) * FEATURE_SCALE, gender, age, flat], axis=1)

    return embed
