"""Where a head's weights start: the pretrain stage's folder, by init."""

import numpy as np
import pandas as pd
import pytest

from stages.lib.backbones.store import Features
from stages.lib.core.params import validate
from stages.lib.heads.data import HeadData
from stages.lib.heads.model import build_head, layer_weights
from stages.lib.heads.published import published_layer_heads
from stages.lib.heads.starts import start_for, start_head, starting_weights
from tests.heads.toys import MINIMAL

DIM = 10


def save_head(path, classes, seed):
    model = build_head(DIM, 8, classes, 0.5, name=path.stem, seed=seed)
    model.save(path)
    return layer_weights(model)


def test_starting_weights_resolve_from_the_pretrain_folder(tmp_path):
    age = save_head(tmp_path / "age.keras", 101, seed=1)
    vgg = save_head(tmp_path / "vgg_face.keras", 2622, seed=2)
    real = starting_weights("backbone", "age", tmp_path, True)     # published VGG-Face's fc6/fc7
    offline = starting_weights("backbone", "age", tmp_path, False)    # the pretrain-trained head's
    assert set(real) == set(offline) == {"fc6", "fc7"}
    np.testing.assert_array_equal(real["fc6"][0], vgg["fc6"][0])
    np.testing.assert_array_equal(offline["fc6"][0], age["fc6"][0])
    assert starting_weights("random", "age", None, False) is None
    with pytest.raises(FileNotFoundError, match="dvc repro pretrain"):
        starting_weights("backbone", "gender", tmp_path, False)


def test_init_published_starts_from_the_whole_published_head_whatever_its_layers(tmp_path):
    """VGG-Face's published heads have fc6, fc7 and an output layer; the WideResNet's are one output
    layer on its flatten: init `published` takes either as it is, to fine-tune it."""
    age = save_head(tmp_path / "age.keras", 101, seed=1)
    kernel = np.random.default_rng(0).normal(size=(12, 2)).astype(np.float32)
    published_layer_heads({"gender": kernel})["gender"].save(tmp_path / "gender.keras")
    data = HeadData(validate(MINIMAL), Features(np.zeros((1, DIM), np.float16), pd.Series([0], index=["a"])),
                    pd.DataFrame(), pd.DataFrame(), tmp_path)
    vgg_like = start_head(data, "age", "published")
    np.testing.assert_array_equal(layer_weights(vgg_like)["predictions"][0], age["predictions"][0])
    wide_like = start_head(data, "gender", "published")
    assert [layer.name for layer in wide_like.layers] == ["features", "predictions", "softmax"]
    np.testing.assert_array_equal(wide_like.get_layer("predictions").get_weights()[0], kernel)
    with pytest.raises(FileNotFoundError, match="dvc repro pretrain"):
        start_head(HeadData(data.params, data.features, data.train, data.val, tmp_path / "none"), "age", "published")


def test_a_backbone_without_published_hidden_layers_starts_its_heads_at_random():
    vgg, wide = (validate({**MINIMAL, "backbone": {"name": name}}).backbone for name in ("vgg_face", "wide_resnet_imdb"))
    assert start_for("backbone", vgg) == "backbone"
    assert start_for("backbone", wide) == "random"        # its published heads are its own output layers
    assert start_for("published", wide) == "published"
