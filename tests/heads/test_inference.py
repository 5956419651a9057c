"""`python -m stages.predict`: faces found and cut as the crop stage does, embedded as the features stage
does, every photo accounted for, table / JSON / annotated output, and clear errors."""

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from stages import predict as stage
from stages.lib.backbones.registry import load
from stages.lib.faces.geometry import Detection, cut_square, square_region
from stages.lib.backbones.store import read_features, run_features
from stages.lib.heads.model import build_head
from stages.lib.heads.inference import Cutting, photo_faces, predict_crops, predict_photos
from tests.backbones.test_store import BACKBONE, ROOT, make_params

CROP_SIZE = 32  # = BACKBONE's input_size


class FixedDetector:
    """Finds the boxes it was given, in the order given (the code must sort them, largest first)."""

    name = "fixed"

    def __init__(self, boxes):
        self.boxes = boxes

    def detect(self, image):
        return [Detection(tuple(map(float, box)), 0.9) for box in self.boxes]


def heads(dim: int, fc_width: int = 16) -> dict:
    return {"age": build_head(dim, fc_width, 101, 0.5, name="age", seed=1),
            "gender": build_head(dim, fc_width, 2, 0.5, name="gender", seed=2)}


def photo(seed: int = 0, size=(120, 160)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (*size, 3), dtype=np.uint8)


def test_faces_are_cut_like_the_crop_stage_largest_first():
    image = photo()
    small, large = (10, 10, 20, 20), (60, 30, 50, 40)
    faces = photo_faces(image, FixedDetector([small, large]), margin=0.4, size=CROP_SIZE)
    assert [f.detection.box for f in faces] == [tuple(map(float, large)), tuple(map(float, small))]
    expected = cv2.cvtColor(cut_square(image, square_region(large, 0.4), CROP_SIZE), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(faces[0].crop_rgb, expected)
    whole = photo_faces(image, None, margin=0.4, size=CROP_SIZE)
    assert len(whole) == 1 and whole[0].region.side == 160  # a ready crop: padded square, no margin


def test_predictions_equal_the_pipelines_on_the_same_crop(tmp_path):
    """A lossless crop file through the features stage and the heads gives what predict gives."""
    params = make_params()
    crop = photo(3, (CROP_SIZE, CROP_SIZE))
    path = tmp_path / "data/crops/one.png"
    path.parent.mkdir(parents=True)
    cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    manifest = pd.DataFrame([{"id": "x/one", "crop_path": "data/crops/one.png"}])
    run_features(manifest, params, tmp_path / "features", root=tmp_path, show_progress=False)
    cached = np.asarray(read_features(tmp_path / "features").values, np.float32)
    spec, embed = load(params.backbone, params.seed, tmp_path / params.paths.weights)
    models = heads(spec.feature_dim)
    ours = predict_crops([crop], [np.nan], (spec, embed), models)
    pipeline_age = models["age"].predict(cached, verbose=0) @ np.arange(101)
    np.testing.assert_allclose(ours["age"], pipeline_age, rtol=1e-3)


def test_every_photo_is_accounted_for(tmp_path):
    params = make_params()
    spec, embed = load(params.backbone, params.seed, tmp_path / params.paths.weights)
    good, empty, broken = tmp_path / "two.png", tmp_path / "none.png", tmp_path / "broken.jpg"
    cv2.imwrite(str(good), photo())
    cv2.imwrite(str(empty), photo(1))
    broken.write_bytes(b"not a jpeg")

    class ByFile(FixedDetector):
        def detect(self, image):
            return super().detect(image) if image.shape[1] == 160 and image[0, 0, 0] == photo()[0, 0, 0] else []

    results, found = predict_photos([good, empty, broken, tmp_path / "missing.jpg"],
                                    Cutting(ByFile([(10, 10, 20, 20), (60, 30, 50, 40)]), 0.4, CROP_SIZE),
                                    (spec, embed), heads(spec.feature_dim))
    by_photo = results.groupby("photo")
    assert by_photo.size().to_dict() == {str(good): 2, str(empty): 1, str(broken): 1, str(tmp_path / "missing.jpg"): 1}
    faces = results[results["photo"] == str(good)]
    assert faces["face"].tolist() == [1, 2] and faces["problem"].isna().all()
    assert faces["age"].between(0, 100).all() and faces["p_female"].between(0, 1).all()
    problems = results.set_index("photo")["problem"]
    assert problems[str(empty)].startswith("no_face")
    assert problems[str(broken)].startswith("image_unreadable")
    assert problems[str(tmp_path / "missing.jpg")].startswith("image_missing")
    assert set(found) == {good, empty}


@pytest.fixture()
def project(tmp_path, monkeypatch):
    """A project folder with params (tiny random backbone, Haar) and trained-shape heads in models/retrained."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["backbone"] = {**raw["backbone"], **BACKBONE}
    raw["crop"] = {**raw["crop"], "detector": "haar", "size": CROP_SIZE}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    params = make_params()
    spec, _ = load(params.backbone, params.seed, tmp_path / params.paths.weights)
    (tmp_path / "models/retrained").mkdir(parents=True)
    for task, model in heads(spec.feature_dim).items():
        model.save(tmp_path / "models/retrained" / f"{task}.keras")
    cv2.imwrite(str(tmp_path / "face.png"), photo(5, (48, 48)))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_cli_json_and_annotated_images(project, capsys):
    assert stage.main(["face.png", "--precropped", "--json", "--annotate", "out"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert len(records) == 1 and records[0]["face"] == 1 and records[0]["gender"] in ("female", "male")
    assert records[0]["problem"] is None and 0 <= records[0]["age"] <= 100
    annotated = cv2.imread(str(project / "out" / "face.jpg"))
    assert annotated.shape == (48, 48, 3)


def test_cli_table_and_exit_status_when_no_face_is_found(project, capsys):
    assert stage.main(["face.png"]) == 1  # Haar finds no face in noise: said, not silently empty
    out = capsys.readouterr().out
    assert "face.png" in out and "no_face: haar found no face" in out


def test_cli_names_the_fix_when_heads_are_missing_or_do_not_fit(project, capsys):
    assert stage.main(["face.png", "--experiment", "oversample_x2"]) == 2
    assert "dvc repro train@oversample_x2" in capsys.readouterr().err
    assert stage.main(["face.png", "--experiment", "nope"]) == 2
    assert "not in params.yaml's experiments" in capsys.readouterr().err
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["backbone"]["input_size"] = 64  # the params changed since training: wider features
    Path("params.yaml").write_text(yaml.safe_dump(raw))
    assert stage.main(["face.png", "--precropped"]) == 2
    err = capsys.readouterr().err
    assert "models/retrained/age.keras takes features 8 wide" in err and "run `dvc repro`" in err


# ---------------------------------------------------------------- framing: as the heads were trained


def test_heads_trained_on_chips_take_each_photo_as_a_chip(project, capsys):
    """No --precropped needed: the heads' recorded framing says they learned from ready face crops (old
    code ran the detector, which finds no face in this chip)."""
    from stages.lib.heads.framing import Framing, write_framing

    write_framing(project / "models/retrained", Framing("chip", None, "utkface training faces"))
    assert stage.main(["face.png", "--json"]) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)) == 1 and "framed as ready face crops" in captured.err
    assert "warning" not in captured.err
    assert stage.main(["face.png", "--margin", "0.4"]) == 1  # the override detects (and finds nothing) ...
    assert "warning: --margin frames faces as face boxes plus a 0.4 margin" in capsys.readouterr().err  # ... and says so


def test_published_output_heads_read_the_models_own_outputs_after_the_feature_row():
    from stages.lib.backbones.registry import BackboneSpec
    from stages.lib.heads.published import published_output_heads, published_layer_heads

    published = np.array([[0.8, 0.2, *np.eye(101)[30]], [0.1, 0.9, *np.eye(101)[61]]], dtype=np.float32)
    inputs = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)

    def embed(images, margins):  # 4 feature columns, the published model's outputs, then what they read
        return np.concatenate([np.full((len(images), 4), 7.0, np.float32), published[:len(images)],
                               inputs[:len(images)]], axis=1)

    spec = BackboneSpec(name="toy", input_size=32, alignment="none", feature_dim=4, head_width=8,
                        published_heads=False, weights_file=None, published_outputs=103, published_inputs=3)
    crops = [np.zeros((32, 32, 3), np.uint8)] * 2
    result = predict_crops(crops, [np.nan, np.nan], (spec, embed), published_output_heads(103, 100))
    assert list(result["age"]) == [30.0, 61.0] and list(result["gender"]) == ["female", "male"]
    assert result["p_female"].tolist() == pytest.approx([0.8, 0.1])
    with pytest.raises(ValueError, match="check labels.max_age"):
        published_output_heads(103, 90)
    # the published output layers themselves read the last part: input 0 says female, 30; input 2 male, 61
    kernels = {"gender": np.log(np.array([[9.0, 1.0], [1.0, 1.0], [1.0, 9.0]])) * 10,
               "age": np.log(np.maximum(np.eye(101)[[30, 0, 61]], 1e-30))}
    layered = predict_crops(crops, [np.nan, np.nan], (spec, embed), published_layer_heads(kernels))
    assert list(layered["gender"]) == ["female", "male"] and layered["age"].round().tolist() == [30.0, 61.0]
