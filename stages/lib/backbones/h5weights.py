"""Reading the published VGG-Face weight files (Keras-2 `save_weights` HDF5).

Layout of such a file (what `keras.Model.save_weights("x.h5")` wrote in Keras 2):

    /                        attrs: layer_names = [b'zero_padding2d_1', b'conv2d_1', ...] (model order,
                                    weightless layers included), keras_version, backend
    /<layer>                 attrs: weight_names = [b'conv2d_1/kernel:0', b'conv2d_1/bias:0'] (may be empty)
    /<layer>/<weight name>   the array, e.g. /conv2d_1/conv2d_1/kernel:0

Layer names in the published files are Keras-2 automatic names (`conv2d_7`, `predictions`, ...), so we
never match by name: the file's weighted layers are assigned to the model's weighted layers in order,
and every array's shape is checked before anything is assigned.
"""

from __future__ import annotations

from itertools import zip_longest
from pathlib import Path

import h5py
import numpy as np

from stages.lib.core.errors import UserError

# The architecture the published files were trained with; a model built otherwise cannot load them.
PUBLISHED_INPUT_SIZE = 224
PUBLISHED_CONV_WIDTHS = (64, 128, 256, 512, 512)
PUBLISHED_FC_WIDTH = 4096
VGG_FACE_CLASSES = 2622
CONV_LAYERS_PER_BLOCK = (2, 2, 3, 3, 3)
N_CONV_LAYERS = sum(CONV_LAYERS_PER_BLOCK)  # 13; then fc6, fc7 and the output layer

# The published files (keys of params' `weights`) and the classes of their output layer.
PUBLISHED_OUTPUT_CLASSES = {"vgg_face": VGG_FACE_CLASSES, "age": 101, "gender": 2}

NamedWeights = list[tuple[str, list[np.ndarray]]]


class WeightsFileError(UserError, ValueError):
    """A weights file that is not a Keras-2 HDF5 weights file, or that does not fit the model."""


def _decode(name) -> str:
    return name.decode("utf8") if isinstance(name, bytes) else str(name)


def _name_list(node: h5py.Group, key: str) -> list[str] | None:
    """A list-of-names attribute; Keras 2 split long ones into `key0`, `key1`, ... (64 KB header limit)."""
    if key in node.attrs:
        return [_decode(n) for n in node.attrs[key]]
    if f"{key}0" not in node.attrs:
        return None
    names: list[str] = []
    chunk = 0
    while f"{key}{chunk}" in node.attrs:
        names.extend(_decode(n) for n in node.attrs[f"{key}{chunk}"])
        chunk += 1
    return names


def read_keras2_weights(path: str | Path) -> NamedWeights:
    """The weighted layers of a Keras-2 weights file, in file order: [(layer name, [kernel, bias]), ...]."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `dvc repro download` to fetch the published weights")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise WeightsFileError(f"{path} is not an HDF5 file ({exc}); delete it and run `dvc repro download`") from None
    with handle:
        root = handle["model_weights"] if "model_weights" in handle else handle  # a full-model .h5 also works
        layer_names = _name_list(root, "layer_names")
        if layer_names is None:
            raise WeightsFileError(
                f"{path} has no `layer_names` attribute: not a Keras-2 `save_weights` HDF5 file "
                "(expected the deepface release files vgg_face_weights.h5, age_model_weights.h5, "
                "gender_model_weights.h5)"
            )
        layers: NamedWeights = []
        for layer_name in layer_names:
            if layer_name not in root:
                raise WeightsFileError(f"{path}: layer {layer_name!r} is listed in layer_names but has no group")
            group = root[layer_name]
            weight_names = _name_list(group, "weight_names") or []
            if weight_names:
                layers.append((layer_name, [np.asarray(group[name]) for name in weight_names]))
    if not layers:
        raise WeightsFileError(f"{path} holds no weights")
    return layers


def check_published_file(path: str | Path, name: str) -> None:
    """WeightsFileError unless `path` is laid out as the published `name` file (a key of
    PUBLISHED_OUTPUT_CLASSES): a Keras-2 HDF5 weights file with 13 conv layers, fc6, fc7 and an output
    layer of the right number of classes. Reads the shapes only, not the arrays (the download stage
    checks a file this way before it trusts its hash)."""
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise WeightsFileError(f"not an HDF5 file ({exc})") from None
    with handle:
        root = handle["model_weights"] if "model_weights" in handle else handle
        names = _name_list(root, "layer_names")
        if names is None:
            raise WeightsFileError("an HDF5 file without `layer_names`: not a Keras-2 `save_weights` file")
        shapes = [[root[layer][weight].shape for weight in _name_list(root[layer], "weight_names") or []]
                  for layer in names if layer in root]
    weighted = [layer for layer in shapes if layer]
    if len(weighted) != N_CONV_LAYERS + 3:
        raise WeightsFileError(f"{len(weighted)} weighted layers where the published files have {N_CONV_LAYERS + 3} "
                               "(13 conv layers, fc6, fc7 and an output layer)")
    classes = weighted[-1][0][-1]
    if classes != PUBLISHED_OUTPUT_CLASSES[name]:
        raise WeightsFileError(f"its output layer has {classes} classes where the published {name} file has "
                               f"{PUBLISHED_OUTPUT_CLASSES[name]}: is it another of the published files?")


def weighted_layers(model) -> list:
    """The model's layers that own weights, in model order (the order the published files use)."""
    return [layer for layer in model.layers if layer.weights]


def _fix_hint(index: int, n_layers: int, expected: tuple, found: tuple) -> str:
    """What to change so a model built from params fits the published file, by the layer's role."""
    widths = (
        f"params backbone.conv_widths must be the real widths {list(PUBLISHED_CONV_WIDTHS)} "
        "to load the published weights"
    )
    if index < min(N_CONV_LAYERS, n_layers - 3):
        return widths
    if index == n_layers - 1 and expected and found:
        return (
            f"the file's output layer has {found[-1]} classes and the model's {expected[-1]}: build the model "
            f"with classes={VGG_FACE_CLASSES} for vgg_face_weights.h5, head_classes=101 for the age file, "
            "head_classes=2 for the gender file"
        )
    if index == n_layers - 3 and len(expected) == 4 and expected[:2] != found[:2]:
        return (
            f"fc6's {found[0]}x{found[1]} kernel fixes the input size: params backbone.input_size must be "
            f"{PUBLISHED_INPUT_SIZE} to load the published weights"
        )
    if index == n_layers - 3 and len(expected) == 4 and expected[2] != found[2]:
        return widths
    return f"params backbone.fc_width must be {PUBLISHED_FC_WIDTH} to load the published weights"


def check_fits(model, file_layers: NamedWeights, path: str | Path) -> None:
    """Raise WeightsFileError at the first weighted layer whose arrays do not match the file's."""
    model_layers = weighted_layers(model)
    if len(model_layers) != len(file_layers):
        raise WeightsFileError(
            f"{path} has {len(file_layers)} weighted layers ({', '.join(n for n, _ in file_layers)}), "
            f"the model {len(model_layers)} ({', '.join(layer.name for layer in model_layers)}): "
            "the file was saved from a different architecture (the published files have 13 conv layers, "
            "fc6, fc7 and an output layer)"
        )
    for index, (layer, (file_name, arrays)) in enumerate(zip(model_layers, file_layers)):
        expected = [tuple(w.shape) for w in layer.weights]
        found = [tuple(a.shape) for a in arrays]
        if expected != found:
            first = next((e, f) for e, f in zip_longest(expected, found, fillvalue=()) if e != f)
            raise WeightsFileError(
                f"{path}: weighted layer #{index} ({file_name!r} in the file, {layer.name!r} in the model) "
                f"does not fit: the model expects shapes {expected}, the file has {found}. "
                f"Fix: {_fix_hint(index, len(model_layers), first[0], first[1])}"
            )


def load_into(model, path: str | Path) -> None:
    """Assign a Keras-2 weights file to `model`'s weighted layers in order; nothing is assigned on a mismatch."""
    file_layers = read_keras2_weights(path)
    check_fits(model, file_layers, path)
    for layer, (_, arrays) in zip(weighted_layers(model), file_layers):
        layer.set_weights(arrays)
