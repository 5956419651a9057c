"""The VGG-Face network of the study (Keras 3), its frozen trunk, and the shared input preprocessing.

The layer shapes are those of serengil's `VGGFace.base_model()` (tensorflow-101 / deepface), so the
published weight files load onto it (`h5weights.load_into`): thirteen 3x3 convolutions in five blocks,
each block ending in a 2x2 max-pool, then fc6 (a k x k convolution, k = input_size / 32), fc7 and the
output layer (1x1 convolutions), flatten and softmax. The original pads with `ZeroPadding2D((1, 1))`
before each valid 3x3 convolution; a 3x3 convolution with `padding="same"` computes exactly that
(tests/backbones/test_vgg_face.py checks it) in one op instead of two.

Input: RGB scaled to [0, 1], no mean subtraction, resized to `input_size`: `preprocess`, or
`resize_uint8` then `to_unit_range` inside a tf.data pipeline; the features stage, the crop
previews and predictions all share them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from stages.lib.backbones.vgg_shape import CUTS, cut_shape  # noqa: F401  (cut_shape: re-exported)
from stages.lib.backbones.h5weights import (
    CONV_LAYERS_PER_BLOCK,
    PUBLISHED_CONV_WIDTHS,
    PUBLISHED_FC_WIDTH,
    PUBLISHED_INPUT_SIZE,
    VGG_FACE_CLASSES,
    load_into,
    read_keras2_weights,
)



def _initializers(seed: int | None, layer_index: int) -> dict:
    """Seeded initializers, distinct per layer, so that a `random` backbone is the same on every run.

    He-uniform keeps the activations' scale through thirteen ReLU layers (Keras' default Glorot
    shrinks it about 30-fold at pool5), which keeps random features well inside float16's range.
    """
    if seed is None:
        return {}
    return {
        "kernel_initializer": keras.initializers.HeUniform(seed=seed * 1000 + layer_index),
        "bias_initializer": "zeros",
    }


def build_vgg_face(
    input_size: int = PUBLISHED_INPUT_SIZE,
    conv_widths: Sequence[int] = PUBLISHED_CONV_WIDTHS,
    fc_width: int = PUBLISHED_FC_WIDTH,
    classes: int = VGG_FACE_CLASSES,
    *, head_classes: int | None = None,
    seed: int | None = None,
) -> keras.Model:
    """VGG-Face as a functional model with the published layer shapes.

    Layers: conv1_1 ... conv5_3, pool1 ... pool5, fc6, fc6_dropout, fc7, fc7_dropout, then `fc8`
    (`classes` outputs, the 2,622 identities) or, when `head_classes` is given, `predictions`
    (the age/gender models: 101 or 2 outputs on fc7's dropout, no fc8), then flatten and softmax.
    `seed` gives a reproducible random init; None uses Keras' default initializers.
    """
    if input_size % 32:
        raise ValueError(f"input_size must be a multiple of 32 (five 2x2 poolings), got {input_size}")
    if len(conv_widths) != len(CONV_LAYERS_PER_BLOCK):
        raise ValueError(
            f"conv_widths needs one width per block ({len(CONV_LAYERS_PER_BLOCK)}), got {list(conv_widths)}"
        )
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = inputs
    layer_index = 0
    for block, (width, n_convs) in enumerate(zip(conv_widths, CONV_LAYERS_PER_BLOCK), start=1):
        for conv in range(1, n_convs + 1):
            x = keras.layers.Conv2D(
                width, (3, 3), padding="same", activation="relu", name=f"conv{block}_{conv}",
                **_initializers(seed, layer_index),
            )(x)
            layer_index += 1
        x = keras.layers.MaxPooling2D((2, 2), strides=(2, 2), name=f"pool{block}")(x)
    k = input_size // 32
    x = keras.layers.Conv2D(fc_width, (k, k), activation="relu", name="fc6", **_initializers(seed, 13))(x)
    x = keras.layers.Dropout(0.5, name="fc6_dropout")(x)
    x = keras.layers.Conv2D(fc_width, (1, 1), activation="relu", name="fc7", **_initializers(seed, 14))(x)
    x = keras.layers.Dropout(0.5, name="fc7_dropout")(x)
    out_name, out_classes = ("predictions", head_classes) if head_classes is not None else ("fc8", classes)
    x = keras.layers.Conv2D(out_classes, (1, 1), name=out_name, **_initializers(seed, 15))(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="softmax")(x)
    return keras.Model(inputs, outputs, name="vgg_face")


def backbone_trunk(model: keras.Model, cut: str = "pool5") -> keras.Model:
    """The frozen part of `model` from its input to the output of layer `cut`."""
    if cut not in CUTS:
        raise ValueError(f"cut {cut!r} is not supported; allowed: {', '.join(CUTS)}")
    trunk = keras.Model(model.input, model.get_layer(cut).output, name=f"vgg_face_to_{cut}")
    trunk.trainable = False
    return trunk


def dense_fc6_kernel(conv_kernel: np.ndarray) -> np.ndarray:
    """fc6's (k, k, C, F) convolution kernel as a (k*k*C, F) Dense kernel on `Flatten()(pool5)`.

    On a k x k input a valid k x k convolution is a dot product over (row, column, channel); a
    channels-last flatten orders those the same way a C-order reshape of the kernel does.
    """
    conv_kernel = np.asarray(conv_kernel)
    if conv_kernel.ndim != 4 or conv_kernel.shape[0] != conv_kernel.shape[1]:
        raise ValueError(f"fc6 kernel must be (k, k, C, F), got shape {conv_kernel.shape}")
    return conv_kernel.reshape(-1, conv_kernel.shape[-1])


def _dense_1x1(conv_kernel: np.ndarray, name: str) -> np.ndarray:
    if conv_kernel.ndim != 4 or conv_kernel.shape[:2] != (1, 1):
        raise ValueError(f"{name} kernel must be a 1x1 convolution (1, 1, F_in, F_out), got shape {conv_kernel.shape}")
    return conv_kernel[0, 0]


def head_weights(path_or_model: str | Path | keras.Model) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """fc6, fc7 and the output layer in Dense form: {"fc6": (kernel, bias), "fc7": ..., "fc8" | "predictions": ...}.

    From a weights file, the last three weighted layers are fc6, fc7 and the output; the output is
    keyed `predictions` when the file names it so (the age/gender files), else `fc8` (the 2,622-way
    base file). From a model built by `build_vgg_face`, the layers are taken by name.
    """
    if isinstance(path_or_model, keras.Model):
        model = path_or_model
        out_name = "predictions" if any(layer.name == "predictions" for layer in model.layers) else "fc8"
        named = [(name, model.get_layer(name).get_weights()) for name in ("fc6", "fc7", out_name)]
        source = f"model {model.name!r}"
    else:
        layers = read_keras2_weights(path_or_model)
        if len(layers) < 3:
            raise ValueError(f"{path_or_model} has {len(layers)} weighted layers; fc6, fc7 and an output layer need 3")
        fc6, fc7, out = layers[-3:]
        out_name = "predictions" if out[0] == "predictions" else "fc8"
        named = [("fc6", fc6[1]), ("fc7", fc7[1]), (out_name, out[1])]
        source = str(path_or_model)
    try:
        (fc6_kernel, fc6_bias), (fc7_kernel, fc7_bias), (out_kernel, out_bias) = (arrays for _, arrays in named)
        return {
            "fc6": (dense_fc6_kernel(fc6_kernel), np.asarray(fc6_bias)),
            "fc7": (_dense_1x1(np.asarray(fc7_kernel), "fc7"), np.asarray(fc7_bias)),
            out_name: (_dense_1x1(np.asarray(out_kernel), out_name), np.asarray(out_bias)),
        }
    except ValueError as exc:
        raise ValueError(
            f"{source}: its last three weighted layers are not VGG-Face's fc6, fc7, output: {exc}"
        ) from None


def resize_uint8(image, input_size: int) -> tf.Tensor:
    """uint8 RGB image(s) (H, W, 3) or (N, H, W, 3) resized to input_size x input_size, still uint8.

    Bilinear with antialiasing (a downscale averages instead of skipping pixels), rounded back to
    uint8 as a saved crop would be. An image already at input_size (crops are written at crop.size,
    normally the same) is passed through untouched: the resize costs more than the JPEG decode.
    The pipeline stays in uint8 up to the model (a quarter of float32's bytes to batch and copy to
    the GPU); `to_unit_range` then runs inside the model's graph.
    """
    image = tf.convert_to_tensor(image)
    resized = tf.cond(
        tf.reduce_all(tf.equal(tf.shape(image)[-3:-1], input_size)),
        lambda: image,
        lambda: tf.cast(tf.round(tf.clip_by_value(
            tf.image.resize(image, (input_size, input_size), method="bilinear", antialias=True), 0.0, 255.0,
        )), tf.uint8),
    )
    return tf.ensure_shape(resized, image.shape[:-3].concatenate([input_size, input_size, 3]))


def to_unit_range(images: tf.Tensor) -> tf.Tensor:
    """uint8 pixels to the network's float32 input in [0, 1] (no mean subtraction, as in deepface)."""
    return tf.cast(images, tf.float32) / 255.0


def preprocess(images_uint8_rgb, input_size: int) -> np.ndarray:
    """The network's input from uint8 RGB: one image (H, W, 3), a batch (N, H, W, 3) or a list of images.

    Returns float32 in [0, 1], resized to input_size; a list gives a (N, input_size, input_size, 3)
    batch. The same numbers the features pipeline feeds the model (`resize_uint8`, `to_unit_range`).
    """
    if isinstance(images_uint8_rgb, (list, tuple)):
        if not images_uint8_rgb:
            return np.zeros((0, input_size, input_size, 3), np.float32)
        return np.stack([preprocess(image, input_size) for image in images_uint8_rgb])
    images = np.asarray(images_uint8_rgb)
    if images.dtype != np.uint8:
        raise TypeError(f"preprocess expects uint8 RGB pixels (0-255), got dtype {images.dtype}")
    if images.ndim not in (3, 4) or images.shape[-1] != 3:
        raise ValueError(f"preprocess expects (H, W, 3) or (N, H, W, 3) RGB, got shape {images.shape}")
    return to_unit_range(resize_uint8(images, input_size)).numpy()


def flat_features_fn(trunk: keras.Model) -> Callable[[tf.Tensor], tf.Tensor]:
    """A compiled function: uint8 images -> the trunk's output flattened channels-last, as float16."""

    @tf.function(reduce_retracing=True)
    def infer(images):
        out = trunk(to_unit_range(images), training=False)
        return tf.cast(tf.reshape(out, (tf.shape(out)[0], -1)), tf.float16)

    return infer


def precision_policy(gpus: Sequence) -> str:
    """mixed_float16 when a GPU is present (its tensor cores), float32 on the CPU."""
    return "mixed_float16" if len(gpus) else "float32"


def set_precision_for_device() -> str:
    """Set Keras' global dtype policy for this process's device; returns the policy name.

    Call it before building the model: layers take the policy when they are created.
    """
    policy = precision_policy(tf.config.list_physical_devices("GPU"))
    keras.mixed_precision.set_global_policy(policy)
    return policy


def require_weights_file(weights_file: str | Path | None) -> None:
    """FileNotFoundError, saying how to get it, when the published weights file is absent."""
    if weights_file is None or not Path(weights_file).is_file():
        raise FileNotFoundError(
            f"{weights_file} not found: the published weights are fetched by the download stage; "
            "run `dvc repro download` (or set backbone.weights: random for an offline run)"
        )


def trunk_from_params(backbone, seed: int, weights_file: str | Path | None) -> keras.Model:
    """The frozen trunk the params describe: published weights from `weights_file`, or seeded random.

    `backbone` is params.backbone. With weights == "vgg_face", `weights_file` must exist (the
    download stage writes it); with "random", it is ignored and `seed` fixes the init.
    """
    model = build_vgg_face(
        backbone.input_size, backbone.conv_widths, backbone.fc_width,
        seed=seed if backbone.weights == "random" else None,
    )
    if backbone.weights == "vgg_face":
        require_weights_file(weights_file)
        load_into(model, weights_file)
    return backbone_trunk(model, backbone.cut)
