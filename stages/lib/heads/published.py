"""The published models' heads as Keras models: built from the published files (VGG-Face's fc6, fc7
and output layers) or from a published model's own output layers (the WideResNet's), and the heads
that select a published model's stored outputs, so that `stages.predict` can load them as files."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from stages.lib.backbones.cards import PublishedLayer
from stages.lib.backbones.vgg_face import head_weights, require_weights_file
from stages.lib.core.params import Params
from stages.lib.heads.model import GENDER_CLASSES, build_head, init_head, task_classes


def published_output_heads(published_outputs: int, max_age: int) -> dict[str, keras.Model]:
    """The published heads of a backbone that stores its model's own outputs, as files `predict` can load:
    each selects its task's columns (gender: P(female), P(male); age: the rest) of the stored outputs,
    exactly (a 0/1 kernel, no bias, no activation: the outputs are probabilities already)."""
    layout = {"gender": (0, len(GENDER_CLASSES)), "age": (len(GENDER_CLASSES), published_outputs)}
    heads = {}
    for task, (start, stop) in layout.items():
        if stop - start != task_classes(task, max_age):
            raise ValueError(f"the published {task} outputs have {stop - start} classes, params' labels "
                             f"{task_classes(task, max_age)}: check labels.max_age")
        inputs = keras.Input(shape=(published_outputs,), name="published_outputs")
        select = keras.layers.Dense(stop - start, use_bias=False, name="select", dtype="float32")
        heads[task] = keras.Model(inputs, select(inputs), name=task)
        select.set_weights([np.eye(published_outputs, dtype=np.float32)[:, start:stop]])
    return heads


def published_layer_heads(layers: dict) -> dict[str, keras.Model]:
    """Heads that are a published model's own output layers, as published, on the features those
    layers read: per task either one kernel (a Dense layer without bias, then a softmax: the
    WideResNet's dense_1/dense_2) or a stack of `cards.PublishedLayer`s (FaceRes' `feats` and output
    layer). Init `published` starts from them."""
    heads = {}
    for task, stack in layers.items():
        stack = (PublishedLayer(stack),) if isinstance(stack, np.ndarray) else tuple(stack)
        inputs = keras.Input(shape=(stack[0].kernel.shape[0],), name="features")
        out = inputs
        for position, layer in enumerate(stack, 1):
            dense = keras.layers.Dense(layer.kernel.shape[1], use_bias=layer.bias is not None, name=layer.name)
            out = dense(out)
            dense.set_weights([np.asarray(layer.kernel, dtype=np.float32)]
                              + ([] if layer.bias is None else [np.asarray(layer.bias, dtype=np.float32)]))
            last = position == len(stack)
            out = keras.layers.Activation(layer.activation,
                                          name=layer.activation if last else f"{layer.name}_{layer.activation}")(out)
        heads[task] = keras.Model(inputs, out, name=task)
    return heads


def published_heads(weights_dir: str | Path, names: Sequence[str], input_dim: int, params: Params
                    ) -> dict[str, keras.Model]:
    """Heads holding the published files' fc6, fc7 and output layer, for `names` among age, gender, vgg_face.

    `<weights_dir>/<name>.h5` is read with `backbone.head_weights` (conv kernels turned dense). The
    age/gender heads are built from params (backbone.fc_width, labels.max_age), so a mismatch with
    the file fails here, naming the layer and the params to check; vgg_face keeps its 2,622-way fc8.
    """
    heads = {}
    for name in names:
        path = Path(weights_dir) / f"{name}.h5"
        require_weights_file(path)
        weights = head_weights(path)
        if "fc8" in weights:
            weights["predictions"] = weights.pop("fc8")
        classes = weights["predictions"][0].shape[1] if name == "vgg_face" else task_classes(name, params.labels.max_age)
        model = build_head(input_dim, params.backbone.fc_width, classes, params.train.dropout, name=name,
                           seed=params.seed)
        heads[name] = init_head(model, "published", weights)
    return heads
