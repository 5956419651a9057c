"""dlib's face-recognition ResNet run in Keras, from the very weights dlib reads.

dlib saves a network (`dlib::serialize(net)`) as its layers from the input up, each as a version
string and its fields: integers in dlib's packed form (a byte whose low four bits count the bytes that
follow, little-endian, and whose top bit is the sign), tensors as version 2, four packed dimensions
(samples, k, rows, columns) and the values as float32 little-endian. This reader takes the layers a
ResNet needs and only those:

- `con_4`: one parameter tensor (the filters, (filters, k, rows, columns), then one bias per filter),
  then the filter count, rows, columns, strides and paddings;
- `affine_` (batch normalisation frozen for inference): gamma then beta, one per channel;
- `fc_2`: outputs, inputs, then the (inputs, outputs) weight matrix (no bias in this net);
- `max_pool_2`/`avg_pool_2`: rows, columns, strides, paddings (rows 0: the average of everything);
- `relu_`, `add_prev_`: no parameters.

A layer's string is found as it is written (its packed length, then its characters), so any other
field in the file is skipped. The layers between are dlib's tags and skips, which only route
tensors: the model built here is the shape dlib's `dnn_face_recognition_ex.cpp` declares (a 7x7
convolution and 3x3 max pool, then residual blocks of two 3x3 convolutions, the down-sampling ones
adding an average-pooled shortcut), and any other sequence of layers is refused.

Two dlib semantics are kept that other frameworks do not share: a convolution with stride 2 has no
padding (read from the file, never assumed), and `add_prev` adds tensors of different sizes into the
larger, the smaller one zero-padded at the bottom, right and last channels. The input is dlib's
`input_rgb_image_sized<150>`: RGB, each channel's mean subtracted, divided by 256.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

RGB_MEANS = (122.782, 117.001, 104.298)  # input_rgb_image's avg_red, avg_green, avg_blue
INPUT_SCALE = 256.0
TENSOR_VERSION = 2
_LAYER_NAMES = ("con_4", "affine_", "fc_2", "max_pool_2", "avg_pool_2", "add_prev_", "relu_")
_LAYER = re.compile(b"|".join(re.escape(bytes([1, len(name)]) + name.encode()) for name in _LAYER_NAMES))


class DlibNetError(ValueError):
    """A dlib network file this reader cannot read, or whose layers are not a ResNet it can build."""


@dataclass(frozen=True)
class Layer:
    """One dlib layer: its kind (the version string less its suffix) and its fields."""

    kind: str
    weights: tuple[np.ndarray, ...] = ()
    settings: dict = field(default_factory=dict)


def read_packed_int(data: bytes, position: int) -> tuple[int, int]:
    """The integer dlib packed at `position`, and the position after it."""
    header = data[position]
    size = header & 0x0F
    if size > 8 or position + 1 + size > len(data):
        raise DlibNetError(f"no packed integer at byte {position}")
    value = int.from_bytes(data[position + 1:position + 1 + size], "little")
    return (-value if header & 0x80 else value), position + 1 + size


def _read_ints(data: bytes, position: int, count: int) -> tuple[list[int], int]:
    values = []
    for _ in range(count):
        value, position = read_packed_int(data, position)
        values.append(value)
    return values, position


def read_tensor(data: bytes, position: int) -> tuple[np.ndarray, int]:
    """The float32 tensor dlib wrote at `position` (samples, k, rows, columns), and the position after it."""
    (version, *shape), position = _read_ints(data, position, 5)
    if version != TENSOR_VERSION or min(shape) < 0:
        raise DlibNetError(f"no version-{TENSOR_VERSION} tensor at byte {position}")
    end = position + 4 * int(np.prod(shape))
    if end > len(data):
        raise DlibNetError(f"a tensor at byte {position} runs past the end of the file")
    return np.frombuffer(data, "<f4", int(np.prod(shape)), position).reshape(shape).astype(np.float32), end


def _read_layer(kind: str, data: bytes, position: int) -> Layer:
    if kind == "con":
        params, position = read_tensor(data, position)
        (filters, rows, columns, *geometry), _ = _read_ints(data, position, 7)
        flat = params.reshape(-1)
        channels = (flat.size - filters) // (filters * rows * columns)
        kernel = flat[:filters * channels * rows * columns].reshape(filters, channels, rows, columns)
        return Layer(kind, (kernel, flat[kernel.size:]),
                     {"strides": tuple(geometry[:2]), "padding": tuple(geometry[2:])})
    if kind == "affine":
        params, _ = read_tensor(data, position)
        gamma, beta = np.split(params.reshape(-1), 2)
        return Layer(kind, (gamma, beta))
    if kind == "fc":
        (outputs, inputs), position = _read_ints(data, position, 2)
        params, _ = read_tensor(data, position)
        return Layer(kind, (params.reshape(-1)[:inputs * outputs].reshape(inputs, outputs),))
    if kind in ("max_pool", "avg_pool"):
        values, _ = _read_ints(data, position, 6)
        return Layer(kind, settings={"size": tuple(values[:2]), "strides": tuple(values[2:4]),
                                     "padding": tuple(values[4:])})
    return Layer(kind)


def read_layers(path: Path) -> list[Layer]:
    """The layers of the dlib network saved in `path`, from the input up (tags and skips left out)."""
    data = Path(path).read_bytes()
    layers = []
    for match in _LAYER.finditer(data):
        name = match.group()[2:].decode()
        layers.append(_read_layer(name.removesuffix("_2").removesuffix("_4").rstrip("_"), data, match.end()))
    if not layers:
        raise DlibNetError(f"{path}: no dlib layers found (is it a dlib DNN file?)")
    return layers


def recognition_model(layers: list[Layer], chip_size: int):
    """A Keras model from (N, chip_size, chip_size, 3) RGB chips (0-255) to dlib's descriptors."""

    chips = keras.Input((chip_size, chip_size, 3), name="chips")
    x = keras.layers.Rescaling(1 / INPUT_SCALE, offset=[-m / INPUT_SCALE for m in RGB_MEANS])(chips)
    stack = _Stack(layers)
    x = _conv(stack.expect("con"), x)
    x = _relu(stack, _affine(stack.expect("affine"), x))
    x = _pool(stack.expect("max_pool"), x)
    while stack.peek() == "con":
        x = _residual(stack, x)
    if stack.peek() != "avg_pool" or stack.peek_layer().settings["size"] != (0, 0):
        raise DlibNetError(f"expected the average of everything after the residual blocks, found {stack.peek()}")
    stack.expect("avg_pool")
    x = keras.layers.GlobalAveragePooling2D()(x)
    fc = stack.expect("fc")
    dense = keras.layers.Dense(fc.weights[0].shape[1], use_bias=False, name="descriptor")
    out = dense(x)
    dense.set_weights([fc.weights[0]])
    if stack.peek() is not None:
        raise DlibNetError(f"unexpected {stack.peek()} after the descriptor layer")
    return keras.Model(chips, out, name="dlib_face_recognition_resnet")


class _Stack:
    """The layers, consumed in order, each checked against the kind the ResNet expects next."""

    def __init__(self, layers: list[Layer]):
        self.layers, self.position = layers, 0

    def peek(self) -> str | None:
        return self.layers[self.position].kind if self.position < len(self.layers) else None

    def peek_layer(self) -> Layer:
        return self.layers[self.position]

    def expect(self, kind: str) -> Layer:
        if self.peek() != kind:
            raise DlibNetError(f"layer {self.position}: expected {kind}, found {self.peek()}")
        self.position += 1
        return self.layers[self.position - 1]


def _residual(stack: _Stack, x):
    """conv-affine-relu-conv-affine, plus the block's input (average-pooled when the block down-samples),
    then relu."""

    y = _conv(stack.expect("con"), x)
    y = _relu(stack, _affine(stack.expect("affine"), y))
    y = _conv(stack.expect("con"), y)
    y = _affine(stack.expect("affine"), y)
    shortcut = _pool(stack.expect("avg_pool"), x) if stack.peek() == "avg_pool" else x
    stack.expect("add_prev")
    return _relu(stack, AddIntoLarger()([shortcut, y]))


def _relu(stack: _Stack, x):
    stack.expect("relu")
    return keras.layers.ReLU()(x)


def _conv(layer: Layer, x):

    kernel, bias = layer.weights
    pad_rows, pad_columns = layer.settings["padding"]
    if pad_rows or pad_columns:
        x = keras.layers.ZeroPadding2D((pad_rows, pad_columns))(x)
    conv = keras.layers.Conv2D(kernel.shape[0], kernel.shape[2:], strides=layer.settings["strides"], padding="valid")
    out = conv(x)
    conv.set_weights([np.transpose(kernel, (2, 3, 1, 0)), bias])  # dlib (out, in, rows, cols) -> Keras (rows, cols, in, out)
    return out


def _affine(layer: Layer, x):

    gamma, beta = layer.weights
    norm = keras.layers.BatchNormalization(epsilon=0.0)
    out = norm(x)
    norm.set_weights([gamma, beta, np.zeros_like(gamma), np.ones_like(gamma)])  # x * gamma + beta exactly
    return out


def _pool(layer: Layer, x):

    if any(layer.settings["padding"]):
        raise DlibNetError(f"padded {layer.kind} is not supported")
    pool = keras.layers.MaxPooling2D if layer.kind == "max_pool" else keras.layers.AveragePooling2D
    return pool(layer.settings["size"], strides=layer.settings["strides"], padding="valid")(x)


class AddIntoLarger(keras.layers.Layer):
    """dlib's add_prev: the sum in the larger of two shapes, each input zero-padded at the bottom, right and
    last channels to it (a down-sampling block's two branches can differ by a row and a column)."""

    def compute_output_shape(self, shapes):
        return tuple(None if None in sizes else max(sizes) for sizes in zip(*shapes))

    def call(self, inputs):
        first, second = inputs
        target = self.compute_output_shape([first.shape, second.shape])
        return _pad_to(first, target) + _pad_to(second, target)


def _pad_to(tensor, target):
    missing = [[0, 0]] + [[0, want - have] for want, have in zip(target[1:], tensor.shape[1:])]
    return keras.ops.pad(tensor, missing) if any(end for _, end in missing) else tensor

