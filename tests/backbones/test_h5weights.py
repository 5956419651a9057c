"""The published-weights loader on files written here in the exact Keras-2 `save_weights` layout."""

from pathlib import Path

import h5py
import numpy as np
import pytest

from stages.lib.backbones.vgg_face import build_vgg_face
from stages.lib.backbones.h5weights import (
    WeightsFileError,
    load_into,
    read_keras2_weights,
    weighted_layers,
)
from tests.backbones.keras2_files import write_keras2_weights

TINY = dict(input_size=32, conv_widths=(4, 4, 8, 8, 8), fc_width=16)


def keras2_layers(model, head: str | None = None) -> list[tuple[str, list[np.ndarray]]]:
    """The model's weights as deepface's Keras-2 Sequential saved them: automatic layer names,
    a weightless ZeroPadding2D before every conv, dropouts, flatten and activation in between."""
    counters: dict[str, int] = {}

    def auto(kind: str) -> str:
        counters[kind] = counters.get(kind, 0) + 1
        return f"{kind}_{counters[kind]}"

    named = []
    for layer in model.layers:
        if layer.name.startswith("conv"):
            named += [(auto("zero_padding2d"), []), (auto("conv2d"), layer.get_weights())]
        elif layer.name.startswith("pool"):
            named.append((auto("max_pooling2d"), []))
        elif layer.name in ("fc6", "fc7", "fc8"):
            named.append((auto("conv2d"), layer.get_weights()))
        elif layer.name == "predictions":
            named.append(("predictions", layer.get_weights()))
        elif layer.name.endswith("dropout"):
            named.append((auto("dropout"), []))
        elif layer.name in ("flatten", "softmax"):
            named.append((auto("flatten" if layer.name == "flatten" else "activation"), []))
    return named


def assert_same_weights(a, b):
    for layer_a, layer_b in zip(weighted_layers(a), weighted_layers(b), strict=True):
        for wa, wb in zip(layer_a.get_weights(), layer_b.get_weights(), strict=True):
            np.testing.assert_array_equal(wa, wb)


@pytest.fixture(scope="module")
def tiny_source():
    return build_vgg_face(**TINY, classes=10, seed=1)


def test_written_file_has_the_keras2_layout(tmp_path, tiny_source):
    path = tmp_path / "vgg_face_weights.h5"
    write_keras2_weights(path, keras2_layers(tiny_source))
    with h5py.File(path, "r") as handle:
        names = [n.decode() for n in handle.attrs["layer_names"]]
        assert names[:3] == ["zero_padding2d_1", "conv2d_1", "zero_padding2d_2"]
        assert names[-2:] == ["flatten_1", "activation_1"]
        assert list(handle["zero_padding2d_1"].attrs["weight_names"]) == []
        weight_names = [n.decode() for n in handle["conv2d_1"].attrs["weight_names"]]
        assert weight_names == ["conv2d_1/kernel:0", "conv2d_1/bias:0"]
        assert handle["conv2d_1/conv2d_1/kernel:0"].shape == (3, 3, 3, 4)
        assert handle.attrs["backend"] == "tensorflow" and handle.attrs["keras_version"].startswith("2.")


def test_base_file_loads_back_identically(tmp_path, tiny_source):
    path = tmp_path / "vgg_face_weights.h5"
    write_keras2_weights(path, keras2_layers(tiny_source))
    read = read_keras2_weights(path)
    assert [name for name, _ in read] == [f"conv2d_{i}" for i in range(1, 17)]
    target = build_vgg_face(**TINY, classes=10, seed=2)
    load_into(target, path)
    assert_same_weights(tiny_source, target)
    x = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    np.testing.assert_array_equal(tiny_source(x).numpy(), target(x).numpy())


@pytest.mark.parametrize("classes", [101, 2])
def test_age_and_gender_files_load_onto_a_predictions_head(tmp_path, classes):
    source = build_vgg_face(**TINY, head_classes=classes, seed=3)
    path = tmp_path / "head.h5"
    write_keras2_weights(path, keras2_layers(source))
    assert read_keras2_weights(path)[-1][0] == "predictions"
    target = build_vgg_face(**TINY, head_classes=classes, seed=4)
    load_into(target, path)
    assert_same_weights(source, target)


def test_head_file_on_the_base_model_names_the_output_layer(tmp_path):
    path = tmp_path / "age_model_weights.h5"
    write_keras2_weights(path, keras2_layers(build_vgg_face(**TINY, head_classes=101, seed=3)))
    with pytest.raises(WeightsFileError) as error:
        load_into(build_vgg_face(**TINY, classes=2622), path)
    message = str(error.value)
    assert str(path) in message and "#15" in message and "'predictions' in the file" in message
    assert "head_classes=101" in message


@pytest.mark.parametrize("change, layer, hint", [
    (dict(conv_widths=(4, 4, 8, 8, 16)), "#10",
     "backbone.conv_widths must be the real widths [64, 128, 256, 512, 512]"),
    (dict(conv_widths=(8, 4, 8, 8, 8)), "#0", "backbone.conv_widths"),
    (dict(fc_width=32), "#13", "backbone.fc_width must be 4096"),
    (dict(input_size=64), "#13", "backbone.input_size must be 224"),
])
def test_mismatch_names_first_layer_shapes_and_fix(tmp_path, tiny_source, change, layer, hint):
    path = tmp_path / "vgg_face_weights.h5"
    write_keras2_weights(path, keras2_layers(tiny_source))
    target = build_vgg_face(**{**TINY, **change}, classes=10, seed=5)
    before = [w.copy() for w in target.get_weights()]
    with pytest.raises(WeightsFileError) as error:
        load_into(target, path)
    message = str(error.value)
    assert str(path) in message and f"weighted layer {layer} " in message and hint in message
    assert "expects shapes" in message and "the file has" in message
    for old, new in zip(before, target.get_weights()):  # nothing assigned on a mismatch
        np.testing.assert_array_equal(old, new)


def test_layer_count_mismatch(tmp_path, tiny_source):
    path = tmp_path / "short.h5"
    write_keras2_weights(path, keras2_layers(tiny_source)[:-3])
    with pytest.raises(WeightsFileError, match="15 weighted layers.*the model 16"):
        load_into(build_vgg_face(**TINY, classes=10), path)


def test_long_name_lists_split_over_attributes_and_full_model_files(tmp_path):
    """Keras 2 split attributes over 64 KB into layer_names0, layer_names1, ...; model.save() nests
    the weights under /model_weights."""
    kernel, bias = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3), np.ones(3, np.float32)
    path = tmp_path / "split.h5"
    with h5py.File(path, "w") as handle:
        weights = handle.create_group("model_weights")
        weights.attrs["layer_names0"] = np.array([b"dropout_1"])
        weights.attrs["layer_names1"] = np.array([b"conv2d_1"])
        weights.create_group("dropout_1").attrs["weight_names"] = np.array([], dtype="S")
        group = weights.create_group("conv2d_1")
        group.attrs["weight_names"] = np.array([b"conv2d_1/kernel:0", b"conv2d_1/bias:0"])
        group["conv2d_1/kernel:0"], group["conv2d_1/bias:0"] = kernel, bias
    [(name, (read_kernel, read_bias))] = read_keras2_weights(path)
    assert name == "conv2d_1"
    np.testing.assert_array_equal(read_kernel, kernel)
    np.testing.assert_array_equal(read_bias, bias)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="dvc repro download"):
        read_keras2_weights(tmp_path / "absent.h5")
    not_hdf5 = tmp_path / "page.h5"
    not_hdf5.write_text("<html>rate limited</html>")
    with pytest.raises(WeightsFileError, match="not an HDF5 file"):
        read_keras2_weights(not_hdf5)
    keras3 = tmp_path / "other.h5"
    with h5py.File(keras3, "w") as handle:
        handle.create_group("layers")
    with pytest.raises(WeightsFileError, match="no `layer_names`"):
        read_keras2_weights(Path(keras3))
