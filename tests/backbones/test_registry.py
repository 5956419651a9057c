"""The backbone registry's contract: a backbone registered under a new name plugs into the features,
split, train and predict code through params alone, and a wrong name fails naming the allowed ones."""


import numpy as np
import pandas as pd
import pytest

from stages.lib.backbones import registry as backbones
from stages.lib.backbones.registry import BackboneSpec, describe, register, uses_published_weights
from stages.lib.backbones.store import read_features, run_features
from stages.lib.heads.inference import predict_crops
from stages.lib.core.params import ParamsError
from stages.lib.backbones.store import open_features
from stages.lib.heads.data import NO_RESAMPLING, HeadData
from stages.lib.heads.plain import train_heads
from tests.backbones.test_store import make_params, write_crops

FAKE_DIM = 6


class ColourStats:
    """A fake backbone: per-channel mean and standard deviation of the crop, 6 numbers."""

    def describe(self, config) -> BackboneSpec:
        return BackboneSpec(name="colour_stats", input_size=config.input_size, alignment="none",
                            feature_dim=FAKE_DIM, head_width=config.fc_width, published_heads=False,
                            weights_file=None)

    def load(self, config, seed, root):
        def embed(images, margins):
            pixels = np.asarray(images, dtype=np.float32).reshape(len(images), -1, 3) / 255.0
            return np.concatenate([pixels.mean(axis=1), pixels.std(axis=1)], axis=1)

        return embed


@pytest.fixture()
def fake_backbone():
    register("colour_stats", ColourStats())
    yield
    backbones._REGISTRY.pop("colour_stats")


def test_a_registered_backbone_runs_through_features_and_training(tmp_path, fake_backbone):
    manifest = write_crops(tmp_path)
    params = make_params(name="colour_stats")
    meta = run_features(manifest, params, tmp_path / "features", root=tmp_path, show_progress=False)
    assert meta["shape"] == [len(manifest), FAKE_DIM] and meta["spec"]["name"] == "colour_stats"
    store = read_features(tmp_path / "features")
    row = store.index["row"][store.index["id"] == manifest["id"][0]].item()
    assert np.all((store.values[row] >= 0) & (store.values[row] <= 1))  # its own numbers, not VGG's

    features = open_features(tmp_path / "features")
    train, val = manifest.iloc[:30], manifest.iloc[30:]
    short = params.model_copy(update={"train": params.train.model_copy(update={"epochs": 2})})
    fitted = train_heads(HeadData(short, features, train, val), "random", NO_RESAMPLING)
    models, histories = fitted.heads, fitted.histories
    assert models["age"].input_shape[-1] == FAKE_DIM and set(histories) == {"age", "gender"}

    spec, embed = backbones.load(params.backbone, params.seed, tmp_path / params.paths.weights)
    crops = [np.full((40, 40, 3), value, np.uint8) for value in (10, 200)]
    predictions = predict_crops(crops, [0.4, np.nan], (spec, embed), models)
    assert list(predictions.columns) == ["age", "age_argmax", "gender", "p_female"] and len(predictions) == 2


def test_only_published_vgg_face_needs_the_published_files(fake_backbone):
    assert uses_published_weights(make_params(weights="vgg_face").backbone)
    assert not uses_published_weights(make_params(weights="random").backbone)
    fake = make_params(name="colour_stats", weights="vgg_face")
    assert not uses_published_weights(fake.backbone) and not describe(fake.backbone).published_heads
    assert not describe(fake.backbone).weights


def test_vgg_face_spec_matches_the_real_model():
    spec = describe(make_params(weights="vgg_face", input_size=224, conv_widths=[64, 128, 256, 512, 512],
                                fc_width=4096).backbone)
    assert (spec.feature_dim, spec.head_width, spec.published_heads) == (7 * 7 * 512, 4096, True)
    assert spec.weights_file == "vgg_face.h5"


def test_an_unknown_backbone_name_lists_the_registered_ones():
    with pytest.raises(ParamsError, match=r"backbone.name: 'vgg_fcae'.*allowed: dlib_resnet, faceres, vgg_face"):
        describe(make_params(name="vgg_fcae").backbone)


def test_dlib_spec_needs_no_dlib_installed():
    spec = describe(make_params(name="dlib_resnet", fc_width=256).backbone)
    assert (spec.feature_dim, spec.head_width, spec.published_heads, spec.weights_file) == (128, 256, False, None)
    assert "landmark" in spec.alignment


def test_each_crop_tells_the_backbone_its_margin():
    from stages.lib.backbones.store import crop_margins

    manifest = pd.DataFrame({"detector": ["precropped", "yunet", "dataset_box"]})
    np.testing.assert_array_equal(crop_margins(manifest, 0.4), [np.nan, 0.4, 0.4])
    legacy = pd.DataFrame({"cropped": [True, False]})  # no route recorded: `cropped` decides
    np.testing.assert_array_equal(crop_margins(legacy, 0.25), [np.nan, 0.25])
