"""Fitting heads on cached features, the pretrain stage's starting heads, and the train stage end to end."""

import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import yaml

from stages import pretrain, train
from stages.lib.backbones.vgg_face import backbone_trunk, build_vgg_face
from stages.lib.backbones.h5weights import weighted_layers
from tests.backbones.keras2_files import write_keras2_weights
from stages.lib.heads.model import build_head, layer_weights
from stages.lib.core.params import ParamsError, validate
from stages.lib.core.schema import BAND_COLUMN, PREDICTION_COLUMNS
from stages.lib.backbones.store import open_features
from stages.lib.backbones.store import Features
from stages.lib.heads.training import (
    Budget,
    HeadData,
    TaskRows,
    published_layer_heads,
    start_head,
    fit_head,
    history_frame,
    predict_probs,
    row_dataset,
    starting_weights,
)

DIM = 10
MINIMAL = {"roles": {"pretrain": "d", "finetune": "d", "evaluate": ["d"]}, "datasets": {"d": {"adapter": "utkface"}},
           "split": {"train": 0.6, "val": 0.1, "test": 0.3}, "experiments": {"x": {"init": "random"}},
           "paths": yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())["paths"]}


@pytest.fixture
def determinism_requests(monkeypatch):
    """The stages switch TF's process-wide op determinism on; record the request instead, so that the
    switch does not leak into the other tests of this process (TF has no public way to undo it)."""
    requests = []
    monkeypatch.setattr(tf.config.experimental, "enable_op_determinism", lambda: requests.append(True))
    return requests


def toy_problem(n=240, seed=0):
    """Features whose first column carries the class of a 3-way problem, stored as float16."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    features = rng.normal(size=(n, DIM)).astype(np.float16)
    features[:, 0] = labels * 2.0
    return features, labels


def fit(features, labels, seed, epochs=4, patience=10, weights=None):
    model = build_head(DIM, 8, 3, dropout=0.2, name="toy", seed=seed)
    history = fit_head(model, features, TaskRows(np.arange(0, 180), labels[:180]),
                       TaskRows(np.arange(180, 240), labels[180:]),
                       budget=Budget(epochs=epochs, patience=patience, batch_size=32, learning_rate=0.01, seed=seed),
                       sample_weight=weights)
    return model, history


def test_batches_are_the_requested_rows_as_float32_reshuffled_each_epoch():
    features, labels = toy_problem(40)
    rows = np.array([5, 1, 30, 7, 22, 9, 14])
    weights = np.arange(7, dtype=np.float32)
    dataset = row_dataset(features, rows, labels[rows], batch_size=3, weights=weights, shuffle_seed=1)
    epochs = [[tuple(t.numpy() for t in batch) for batch in dataset] for _ in range(2)]
    for epoch in epochs:
        x = np.concatenate([b[0] for b in epoch])
        y = np.concatenate([b[1] for b in epoch])
        w = np.concatenate([b[2] for b in epoch])
        assert x.dtype == np.float32 and [len(b[0]) for b in epoch] == [3, 3, 1]
        positions = w.astype(int)  # weight i was given to rows[i]
        assert sorted(positions) == list(range(7))
        np.testing.assert_array_equal(x, features[rows[positions]].astype(np.float32))
        np.testing.assert_array_equal(y, labels[rows[positions]])
    orders = [np.concatenate([b[2] for b in epoch]).tolist() for epoch in epochs]
    assert orders[0] != orders[1]  # reshuffled between epochs
    fresh = row_dataset(features, rows, labels[rows], batch_size=3, weights=weights, shuffle_seed=1)
    assert [np.concatenate([b[2].numpy() for b in fresh]).tolist() for _ in range(2)] == orders  # same seed


def test_same_seed_same_predictions_other_seed_others():
    features, labels = toy_problem()
    probe = np.arange(240)
    first = predict_probs(fit(features, labels, seed=3)[0], features, probe, 64)
    second = predict_probs(fit(features, labels, seed=3)[0], features, probe, 64)
    other = predict_probs(fit(features, labels, seed=4)[0], features, probe, 64)
    np.testing.assert_array_equal(first, second)
    assert np.abs(first - other).max() > 1e-4


def test_fit_learns_and_keeps_the_best_validation_epoch():
    features, labels = toy_problem()
    model, history = fit(features, labels, seed=0, epochs=12, patience=2)
    assert set(history) == {"loss", "val_loss"}
    assert min(history["val_loss"]) < history["val_loss"][0] * 0.7
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy())
    val_loss = model.evaluate(row_dataset(features, np.arange(180, 240), labels[180:], 32), verbose=0)
    assert val_loss == pytest.approx(min(history["val_loss"]), rel=1e-4)


def test_sample_weights_change_the_fit():
    features, labels = toy_problem()
    weights = np.where(labels[:180] == 2, 5.0, 1.0)
    plain = predict_probs(fit(features, labels, seed=3)[0], features, np.arange(240), 64)
    weighted = predict_probs(fit(features, labels, seed=3, weights=weights)[0], features, np.arange(240), 64)
    assert weighted[:, 2].mean() > plain[:, 2].mean()


def test_fit_refuses_an_empty_validation_split():
    features, labels = toy_problem()
    with pytest.raises(ValueError, match="val"):
        fit_head(build_head(DIM, 8, 3, 0.0, name="toy"), features, TaskRows(np.arange(10), labels[:10]),
                 TaskRows(np.arange(0), labels[:0]), budget=Budget(epochs=1, patience=1, batch_size=4, learning_rate=0.01, seed=0))


def test_history_table_has_a_column_pair_per_trained_head():
    frame = history_frame({"age": {"loss": [3.0, 2.0, 1.5], "val_loss": [3.1, 2.5, 2.6]},
                           "gender": {"loss": [0.7, 0.6], "val_loss": [0.8, 0.7]}})
    assert list(frame.columns) == ["epoch", "age_loss", "val_age_loss", "gender_loss", "val_gender_loss"]
    assert frame["epoch"].tolist() == [1, 2, 3]
    assert frame["val_age_loss"].tolist() == [3.1, 2.5, 2.6]
    assert frame["gender_loss"].tolist()[:2] == [0.7, 0.6] and np.isnan(frame["gender_loss"].iloc[2])
    assert list(history_frame({}).columns) == ["epoch"] and history_frame({}).empty


# ----- starting weights --------------------------------------------------------------------------

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


# ----- the stages, end to end on a fake features cache ------------------------------------------

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
