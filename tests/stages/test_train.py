"""The pretrain and train stages end to end on a fake features cache: the starting heads, the models,
the predictions table."""

import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import yaml

from stages import pretrain, train
from stages.lib.backbones.h5weights import weighted_layers
from stages.lib.backbones.store import open_features
from stages.lib.backbones.vgg_face import backbone_trunk, build_vgg_face
from tests.backbones.keras2_files import write_keras2_weights
from stages.lib.core.params import ParamsError, validate
from stages.lib.core.schema import BAND_COLUMN, PREDICTION_COLUMNS
from stages.lib.heads.model import layer_weights

DIM = 10


@pytest.fixture
def determinism_requests(monkeypatch):
    """The stages switch TF's process-wide op determinism on; record the request instead, so that the
    switch does not leak into the other tests of this process (TF has no public way to undo it)."""
    requests = []
    monkeypatch.setattr(tf.config.experimental, "enable_op_determinism", lambda: requests.append(True))
    return requests


def write_project(root: Path, backbone: dict, features: np.ndarray | None = None, n_per_dataset=120) -> pd.DataFrame:
    """params.yaml, a split manifest of two datasets and a features cache as the features stage writes it."""
    raw = {
        "paths": yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())["paths"],
        "seed": 7,
        "roles": {"pretrain": "wiki", "finetune": "utkface", "evaluate": ["utkface", "wiki"]},
        "datasets": {"wiki": {"adapter": "imdb_wiki"}, "utkface": {"adapter": "utkface"}},
        "split": {"train": 0.6, "val": 0.2, "test": 0.2},
        "backbone": backbone,
        "train": {"epochs": 3, "patience": 2, "batch_size": 32, "learning_rate": 0.001, "dropout": 0.5},
        "experiments": {
            "published": {"init": "published", "protocol": "none"},
            "retrained": {"init": "backbone"},
            "oversample_x2": {"init": "backbone", "oversample": [{"min_age": 60, "factor": 2}]},
            "reweight": {"init": "random", "reweight": "inverse_band_frequency"},
        },
    }
    validate(raw)
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    rng = np.random.default_rng(0)
    n = 2 * n_per_dataset
    manifest = pd.DataFrame({
        "id": [f"{d}/{i}.jpg" for d in ("wiki", "utkface") for i in range(n_per_dataset)],
        "dataset": ["wiki"] * n_per_dataset + ["utkface"] * n_per_dataset,
        "path": "x.jpg", "age": rng.integers(0, 101, n), "gender": rng.choice(["male", "female"], n),
        "race": rng.choice(["white", "black", None], n), "identity": None, "box": None, "cropped": True,
        "source_meta": "", "split": np.tile(["train", "train", "train", "val", "test"], n // 5),
    })
    (root / "data/processed").mkdir(parents=True)
    manifest.to_parquet(root / "data/processed/manifest.parquet", index=False)
    if features is None:
        features = rng.normal(size=(n, DIM)).astype(np.float16)
        features[:, 0] = manifest["age"] / 50
        features[:, 1] = manifest["gender"] == "female"
    order = rng.permutation(n)  # cache rows in another order than the manifest's: looked up by id
    (root / "data/features").mkdir(parents=True)
    cache = np.lib.format.open_memmap(root / "data/features/features.npy", mode="w+", dtype=np.float16,
                                      shape=features.shape)
    cache[order] = features
    cache.flush()
    pd.DataFrame({"id": manifest["id"], "row": order}).to_parquet(root / "data/features/index.parquet", index=False)
    (root / "data/features/meta.json").write_text(json.dumps({"file": "features.npy", "shape": list(features.shape)}))
    return manifest


def test_offline_pretrain_then_train_writes_models_and_contract_predictions(tmp_path, monkeypatch,
                                                                            determinism_requests):
    monkeypatch.chdir(tmp_path)
    manifest = write_project(tmp_path, {"weights": "random", "fc_width": 8})
    pretrain.main()
    assert determinism_requests
    base = {task: keras.models.load_model(tmp_path / f"models/_pretrain/{task}.keras") for task in ("age", "gender")}
    assert len(pd.read_csv(tmp_path / "models/_pretrain/history.csv").dropna()) == 3  # 3 epochs, both heads

    train.run("published")
    published = pd.read_parquet(tmp_path / "reports/experiments/published/predictions.parquet")
    evaluated = manifest[manifest["dataset"].isin(["utkface", "wiki"])]
    assert list(published.columns) == PREDICTION_COLUMNS + [BAND_COLUMN, "cluster"]
    assert published["id"].tolist() == evaluated["id"].tolist()
    assert set(published["split"]) == {"train", "val", "test"} and set(published["experiment"]) == {"published"}
    features = open_features(tmp_path / "data/features")
    rows = features.rows_for(published["id"])
    expected_female = base["gender"].predict_on_batch(features.array[rows].astype("float32"))[:, 0]
    np.testing.assert_allclose(published["gender_prob_female"], expected_female, rtol=1e-5)
    assert pd.read_csv(tmp_path / "models/published/history.csv").empty

    train.run("oversample_x2")
    summary = json.loads((tmp_path / "models/oversample_x2/live/metrics.json").read_text())
    finetune_train = manifest[(manifest["dataset"] == "utkface") & (manifest["split"] == "train")]
    assert summary["train_faces"] == len(finetune_train)
    assert summary["train_rows"] == len(finetune_train) + int((finetune_train["age"] >= 60).sum())
    assert summary["age"]["epochs"] == 3 and 1 <= summary["age"]["best_epoch"] <= 3
    history = pd.read_csv(tmp_path / "models/oversample_x2/history.csv")
    assert list(history.columns) == ["epoch", "age_loss", "val_age_loss", "gender_loss", "val_gender_loss"]
    assert history["epoch"].tolist() == [1, 2, 3]
    assert (tmp_path / "models/oversample_x2/live/plots/metrics/age/val_loss.tsv").exists()
    retrained = keras.models.load_model(tmp_path / "models/oversample_x2/age.keras")
    assert retrained.output_shape == (None, 101)
    predictions = pd.read_parquet(tmp_path / "reports/experiments/oversample_x2/predictions.parquet")
    assert list(predictions.columns) == PREDICTION_COLUMNS + [BAND_COLUMN, "cluster"]
    assert predictions["age_pred"].between(0, 100).all()
    assert not np.allclose(predictions["age_pred"], published["age_pred"])

    with pytest.raises(ParamsError, match="'nope' is not in params.yaml's experiments"):
        train.run("nope")


def test_published_files_become_dense_heads_that_match_the_whole_network(tmp_path, monkeypatch,
                                                                         determinism_requests):
    """pretrain on published files (written here in the Keras-2 layout): the dense age head on cached
    pool5 features gives what the published conv network gives on the images."""
    monkeypatch.chdir(tmp_path)
    size, widths, width = 64, (4, 4, 8, 8, 8), 8
    networks = {"age": build_vgg_face(size, widths, width, head_classes=101, seed=1),
                "gender": build_vgg_face(size, widths, width, head_classes=2, seed=2),
                "vgg_face": build_vgg_face(size, widths, width, classes=30, seed=3)}
    for name, network in networks.items():
        write_keras2_weights(tmp_path / f"data/raw/weights/{name}.h5",
                             [(layer.name, layer.get_weights()) for layer in weighted_layers(network)])
    images = np.random.default_rng(0).uniform(size=(10, size, size, 3)).astype("float32")
    pool5 = backbone_trunk(networks["age"]).predict_on_batch(images).reshape(10, -1)
    features = np.tile(pool5, (24, 1)).astype(np.float16)
    write_project(tmp_path, {"weights": "vgg_face", "input_size": size, "conv_widths": list(widths),
                             "fc_width": width}, features=features)
    pretrain.main()
    age = keras.models.load_model(tmp_path / "models/_pretrain/age.keras")
    np.testing.assert_allclose(age.predict_on_batch(pool5), networks["age"].predict_on_batch(images),
                               rtol=1e-5, atol=1e-7)
    vgg = layer_weights(keras.models.load_model(tmp_path / "models/_pretrain/vgg_face.keras"))
    np.testing.assert_array_equal(vgg["fc7"][0], networks["vgg_face"].get_layer("fc7").get_weights()[0][0, 0])
    assert vgg["predictions"][0].shape == (width, 30)
