"""The VGG-Face network: real shapes, the fc6 conv/dense equivalence, head weights, preprocessing."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from stages.lib.backbones.vgg_face import (
    backbone_trunk,
    build_vgg_face,
    cut_shape,
    dense_fc6_kernel,
    head_weights,
    precision_policy,
    preprocess,
    set_precision_for_device,
)
from tests.backbones.keras2_files import write_keras2_weights

TINY = dict(input_size=64, conv_widths=(4, 4, 8, 8, 8), fc_width=16)
RNG = np.random.default_rng(0)


def test_real_architecture_shapes_and_parameter_count():
    """Built at the real size (about 3 s, 1.4 GB here): the study's 145,002,878 parameters."""
    model = build_vgg_face()
    assert model.count_params() == 145_002_878
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}
    assert shapes["conv1_2"] == (224, 224, 64)
    assert shapes["pool1"] == (112, 112, 64)
    assert shapes["conv3_3"] == (56, 56, 256)
    assert shapes["pool5"] == (7, 7, 512)
    assert shapes["fc6"] == shapes["fc7"] == (1, 1, 4096)
    assert shapes["fc8"] == (1, 1, 2622) and shapes["softmax"] == (2622,)
    assert tuple(model.get_layer("fc6").kernel.shape) == (7, 7, 512, 4096)
    assert [layer.name for layer in model.layers if layer.weights] == [
        "conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
        "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3", "fc6", "fc7", "fc8",
    ]
    trunk = backbone_trunk(model)
    assert tuple(trunk.output.shape[1:]) == cut_shape(224, (64, 128, 256, 512, 512)) == (7, 7, 512)
    assert trunk.count_params() == 14_714_688 and not trunk.trainable


def test_head_model_replaces_fc8_with_predictions():
    model = build_vgg_face(**TINY, head_classes=101)
    names = [layer.name for layer in model.layers]
    assert "fc8" not in names and names[-3:] == ["predictions", "flatten", "softmax"]
    assert names.index("predictions") == names.index("fc7_dropout") + 1
    assert model.output.shape[1:] == (101,)
    assert tuple(model.get_layer("fc6").kernel.shape) == (2, 2, 8, 16)


def test_same_padding_equals_the_originals_zero_padding_then_valid_conv():
    x = RNG.random((2, 9, 9, 3), dtype=np.float32)
    same = keras.layers.Conv2D(5, 3, padding="same")
    original = keras.Sequential([keras.layers.ZeroPadding2D((1, 1)), keras.layers.Conv2D(5, 3)])
    same.build(x.shape)
    original.build(x.shape)
    original.layers[1].set_weights(same.get_weights())
    np.testing.assert_allclose(same(x).numpy(), original(x).numpy(), rtol=1e-6, atol=1e-6)


def test_fc6_as_dense_on_flattened_pool5_equals_the_convolution():
    model = build_vgg_face(**TINY, seed=7)
    pool5 = RNG.random((4, 2, 2, 8), dtype=np.float32)
    fc6 = model.get_layer("fc6")
    kernel, bias = fc6.get_weights()
    conv_out = fc6(pool5).numpy().reshape(4, -1)
    dense = keras.layers.Dense(16, activation="relu")
    dense.build((None, 32))
    dense.set_weights([dense_fc6_kernel(kernel), bias])
    dense_out = dense(keras.layers.Flatten()(pool5)).numpy()
    np.testing.assert_allclose(conv_out, dense_out, rtol=1e-5, atol=1e-6)
    assert conv_out.std() > 0  # not trivially zero after the relu


def test_dense_fc6_kernel_refuses_a_non_square_kernel():
    with pytest.raises(ValueError, match=r"\(k, k, C, F\)"):
        dense_fc6_kernel(np.zeros((2, 3, 4, 5)))


def test_head_weights_from_model_and_file_agree(tmp_path):
    model = build_vgg_face(**TINY, head_classes=101, seed=3)
    from_model = head_weights(model)
    assert set(from_model) == {"fc6", "fc7", "predictions"}
    assert from_model["fc6"][0].shape == (2 * 2 * 8, 16) and from_model["fc6"][1].shape == (16,)
    assert from_model["fc7"][0].shape == (16, 16)
    assert from_model["predictions"][0].shape == (16, 101)
    np.testing.assert_array_equal(from_model["fc7"][0], model.get_layer("fc7").kernel.numpy()[0, 0])

    layers = [(f"conv2d_{i}", layer.get_weights()) for i, layer in enumerate(
        [layer for layer in model.layers if layer.weights], start=1)]
    layers[-1] = ("predictions", layers[-1][1])
    path = tmp_path / "age_model_weights.h5"
    write_keras2_weights(path, layers)
    from_file = head_weights(path)
    for key in from_model:
        for a, b in zip(from_model[key], from_file[key]):
            np.testing.assert_array_equal(a, b)

    base = build_vgg_face(**TINY, classes=7, seed=3)
    assert set(head_weights(base)) == {"fc6", "fc7", "fc8"}


def test_dense_head_reproduces_the_conv_model(tmp_path):
    """pool5 -> Dense(fc6) -> Dense(fc7) -> Dense(out) -> softmax is the same network as the conv one."""
    model = build_vgg_face(**TINY, head_classes=5, seed=11)
    x = RNG.random((3, 64, 64, 3), dtype=np.float32)
    pool5 = backbone_trunk(model)(x).numpy().reshape(3, -1)
    weights = head_weights(model)
    h = np.maximum(pool5 @ weights["fc6"][0] + weights["fc6"][1], 0)
    h = np.maximum(h @ weights["fc7"][0] + weights["fc7"][1], 0)
    logits = h @ weights["predictions"][0] + weights["predictions"][1]
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model(x).numpy(), probs, rtol=1e-4, atol=1e-6)


def test_seeded_random_init_is_reproducible():
    a, b, c = (build_vgg_face(**TINY, seed=s) for s in (1, 1, 2))
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a.get_layer("conv1_1").kernel.numpy(), c.get_layer("conv1_1").kernel.numpy())
    # distinct per layer, not one repeated draw
    conv2_1, conv2_2 = (a.get_layer(name).kernel.numpy()[..., :4, :] for name in ("conv2_1", "conv2_2"))
    assert not np.allclose(conv2_1, conv2_2)


def test_random_trunk_features_keep_a_float16_friendly_scale():
    trunk = backbone_trunk(build_vgg_face(**TINY, seed=1))
    features = trunk(RNG.random((8, 64, 64, 3), dtype=np.float32)).numpy()
    assert 1e-2 < np.abs(features).mean() < 1e2


def test_preprocess_scales_resizes_and_checks_input():
    image = RNG.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    square = RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(preprocess(square, 32), square / 255.0, atol=1e-6)  # same size: pixels unchanged
    resized = preprocess(image, 64)
    assert resized.shape == (64, 64, 3) and resized.dtype == np.float32
    assert 0.0 <= resized.min() and resized.max() <= 1.0
    batch = preprocess(np.stack([square, square]), 64)
    assert batch.shape == (2, 64, 64, 3)
    listed = preprocess([image, square], 32)
    assert listed.shape == (2, 32, 32, 3)
    flat = np.full((100, 100, 3), 200, np.uint8)
    np.testing.assert_allclose(preprocess(flat, 32), 200 / 255.0, atol=1e-6)  # a downscale averages
    stripes = np.zeros((64, 64, 3), np.uint8)
    stripes[:, ::2] = 255
    np.testing.assert_allclose(preprocess(stripes, 32)[1:-1, 1:-1], 128 / 255.0, atol=1e-6)  # antialiased, rounded
    levels = resized * 255.0
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)  # uint8 levels, as the pipeline feeds
    with pytest.raises(TypeError, match="uint8"):
        preprocess(square / 255.0, 32)
    with pytest.raises(ValueError, match="RGB"):
        preprocess(square[..., :1], 32)


def test_mixed_precision_only_on_a_gpu():
    assert precision_policy([]) == "float32"
    assert precision_policy(["/physical_device:GPU:0"]) == "mixed_float16"
    if not tf.config.list_physical_devices("GPU"):
        assert set_precision_for_device() == "float32" == keras.mixed_precision.global_policy().name


def test_build_refuses_bad_sizes():
    with pytest.raises(ValueError, match="multiple of 32"):
        build_vgg_face(input_size=100)
    with pytest.raises(ValueError, match="one width per block"):
        build_vgg_face(conv_widths=(4, 4, 8))
    with pytest.raises(ValueError, match="not supported"):
        backbone_trunk(build_vgg_face(**TINY), cut="fc7")
