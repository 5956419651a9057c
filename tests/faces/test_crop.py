"""Crop routes and file names, the per-row crop with its rejects, the parallel run and the stage (the
geometry: test_geometry.py; quality: test_stats.py)."""

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from stages.lib.faces import crop as faces
from stages.lib.faces.crop import CropError, CropSettings, CropTask, crop_file_name, crop_manifest, crop_row, route_of
from stages.lib.faces.geometry import Detection
from stages.lib.faces.stats import crop_quality
from stages.lib.core.schema import REJECT_COLUMNS, manifest_frame
from tests.faces.photos import HAAR, gradient, manifest_row, write_photo

REPO_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"

# ---------------------------------------------------------------------------------------------- routes, names


def test_route_prefers_the_dataset_box_then_precropped_then_the_detector():
    assert route_of([1, 2, 3, 4], cropped=True, detector="yunet") == "dataset_box"
    assert route_of(np.array([1.0, 2, 3, 4]), cropped=False, detector="haar") == "dataset_box"
    assert route_of(None, cropped=True, detector="yunet") == "precropped"
    assert route_of(float("nan"), cropped=False, detector="haar") == "haar"
    assert route_of(None, cropped=False, detector="yunet") == "yunet"


def test_crop_file_names_are_stable_sanitised_and_unique():
    name = crop_file_name("utkface/part1/20_0_1_x.jpg", "utkface")
    assert name == crop_file_name("utkface/part1/20_0_1_x.jpg", "utkface")
    assert name.startswith("part1_20_0_1_x.jpg-") and name.endswith(".jpg")
    assert crop_file_name("d/a/b.jpg", "d") != crop_file_name("d/a_b.jpg", "d")
    assert crop_file_name("d/x.jpg", "d") != crop_file_name("d/x.jpg#1", "d")
    odd = crop_file_name("d/Zoë Saldaña/../ photo?.jpg", "d")
    assert all(c.isascii() and (c.isalnum() or c in "-_.") for c in odd) and "/" not in odd
    assert len(crop_file_name("d/" + "x" * 500, "d")) < 100


# ---------------------------------------------------------------------------------------------- one row


class FakeDetector:
    """Returns fixed detections: the crop's geometry can then be checked exactly."""

    name = "yunet"

    def __init__(self, detections):
        self.detections = detections

    def detect(self, image):
        return list(self.detections)


def test_a_detected_row_is_cut_around_the_largest_face(tmp_path):
    image = np.zeros((200, 200, 3), np.uint8)
    image[40:80, 100:140] = 255  # the "face"
    source = write_photo(tmp_path / "photo.png", image)
    task = CropTask(0, str(source), str(tmp_path / "out.png"), "yunet", None)
    detector = FakeDetector([Detection((0, 0, 10, 10), 0.99), Detection((100, 40, 40, 40), 0.8)])
    outcome = crop_row(task, detector, margin=0.0, size=40)
    assert outcome.reason is None and outcome.faces_found == 2
    assert outcome.crop_box == [100, 40, 40, 40]
    assert (cv2.imread(str(tmp_path / "out.png"))[5:35, 5:35] > 200).all()


def test_a_row_without_a_face_is_rejected_with_its_reason(tmp_path):
    source = write_photo(tmp_path / "photo.png", np.zeros((50, 50, 3), np.uint8))
    outcome = crop_row(CropTask(3, str(source), str(tmp_path / "o.jpg"), "haar", None), FakeDetector([]), 0.4, 32)
    assert outcome.index == 3 and outcome.reason.startswith("no_face: ")
    assert not (tmp_path / "o.jpg").exists()


def test_a_dataset_box_is_read_in_stored_pixel_order_and_margined(tmp_path):
    source = write_photo(tmp_path / "photo.png", gradient(100, 100))
    outcome = crop_row(CropTask(0, str(source), str(tmp_path / "o.png"), "dataset_box", (40, 40, 20, 20)), None, 0.5, 20)
    assert outcome.crop_box == [30, 30, 40, 40]
    np.testing.assert_allclose(
        cv2.imread(str(tmp_path / "o.png")).astype(int),
        cv2.resize(gradient(100, 100)[30:70, 30:70], (20, 20), interpolation=cv2.INTER_AREA).astype(int), atol=1,
    )


# ---------------------------------------------------------------------------------------------- manifest


def test_every_row_is_kept_or_rejected_with_a_reason(tmp_path, mixed_manifest):
    result = crop_manifest(mixed_manifest, tmp_path / "crops", HAAR, workers=1, progress=False)
    assert len(result.manifest) + len(result.rejects) == len(mixed_manifest)
    assert list(result.rejects.columns) == REJECT_COLUMNS
    assert (result.rejects["stage"] == "crop").all()
    # rejects keep the manifest's order
    assert list(result.rejects["path"].str.rsplit("/", n=1).str[-1]) == [
        "blank.png", "empty.jpg", "text.jpg", "gone.jpg", "boxed.png", "boxed.png"]
    assert list(result.rejects["reason"].str.split(":").str[0]) == [
        "no_face", "image_empty", "image_unreadable", "image_missing", "box_outside", "box_invalid"]
    assert "gone.jpg does not exist" in result.rejects["reason"].iloc[3]


def test_kept_rows_carry_their_crop_and_how_it_was_made(tmp_path, mixed_manifest):
    result = crop_manifest(mixed_manifest, tmp_path / "crops", HAAR, workers=1, progress=False)
    kept = result.manifest.set_index("id")
    assert kept.loc["a/boxed.png", "detector"] == "dataset_box"
    # box 30 x 40 at (10, 20): side 40 x (1 + 2 x 0.4) = 72 around the centre (25, 40)
    assert list(kept.loc["a/boxed.png", "crop_box"]) == [-11, 4, 72, 72]
    assert kept.loc["a/ready.png", "detector"] == "precropped"
    assert list(kept.loc["a/ready.png", "crop_box"]) == [0, 0, 60, 60]
    assert kept["faces_found"].isna().all()
    for path in kept["crop_path"]:
        assert path.startswith(str(tmp_path / "crops")) and cv2.imread(path).shape == (32, 32, 3)
    assert kept.loc["a/boxed.png", "crop_path"].startswith(str(tmp_path / "crops" / "a"))


def test_two_workers_write_the_same_crops_as_one(tmp_path, mixed_manifest):
    one = crop_manifest(mixed_manifest, tmp_path / "one", HAAR, workers=1, progress=False)
    two = crop_manifest(mixed_manifest, tmp_path / "two", HAAR, workers=2, progress=False)
    assert list(one.rejects["reason"].str.split(":").str[0]) == list(two.rejects["reason"].str.split(":").str[0])
    assert list(one.manifest["id"]) == list(two.manifest["id"])
    for a, b in zip(one.manifest["crop_path"], two.manifest["crop_path"]):
        np.testing.assert_array_equal(cv2.imread(a), cv2.imread(b))


def test_a_missing_yunet_model_fails_before_any_work_with_the_fix(tmp_path, mixed_manifest):
    settings_ = CropSettings(detector="yunet", margin=0.4, size=32, min_score=0.6, yunet_model=tmp_path / "none.onnx")
    with pytest.raises(CropError, match="stages.download --only yunet"):
        crop_manifest(mixed_manifest, tmp_path / "crops", settings_, progress=False)
    assert not (tmp_path / "crops").exists()


def test_no_detector_is_needed_when_every_row_has_a_box_or_is_a_crop(tmp_path, mixed_manifest):
    needs_no_detector = mixed_manifest[mixed_manifest["cropped"] | mixed_manifest["box"].notna()]
    settings_ = CropSettings(detector="yunet", margin=0.4, size=32, min_score=0.6, yunet_model=tmp_path / "none.onnx")
    result = crop_manifest(needs_no_detector, tmp_path / "crops", settings_, progress=False)
    assert len(result.manifest) == 2


def test_an_empty_manifest_gives_empty_outputs_with_the_columns(tmp_path, mixed_manifest):
    result = crop_manifest(mixed_manifest.head(0), tmp_path / "crops", HAAR, progress=False)
    assert result.manifest.empty and result.rejects.empty
    assert {"id", "crop_path", "crop_box", "detector", "faces_found"} <= set(result.manifest.columns)
    assert crop_quality(mixed_manifest.head(0), result.outcomes, [0, 16]) == {}


def test_duplicate_ids_are_refused(tmp_path, mixed_manifest):
    twice = pd.concat([mixed_manifest.head(1), mixed_manifest.head(1)], ignore_index=True)
    with pytest.raises(CropError, match="not unique"):
        crop_manifest(twice, tmp_path / "crops", HAAR, progress=False)


# ---------------------------------------------------------------------------------------------- stage


def _stage_params(tmp_path, **crop):
    raw = yaml.safe_load(REPO_PARAMS.read_text())
    raw["profile"] = "full"
    raw["roles"] = {"pretrain": "utkface", "finetune": "utkface", "evaluate": ["utkface", "fairface"]}
    raw["crop"] = {**raw["crop"], "detector": "haar", "size": 32, "workers": 1, **crop}
    raw["split"]["clusters"] = None  # identities only: no identity stage ran here
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))


def test_crop_then_split_stages_write_their_outputs(tmp_path, monkeypatch):
    from stages import crop as crop_stage
    from stages import split as split_stage

    _stage_params(tmp_path)
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for dataset in ("utkface", "fairface"):
        rows = []
        for k in range(12):
            rel = f"img{k}.png"
            write_photo(tmp_path / "data/raw" / dataset / rel, rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
            rows.append(manifest_row(dataset, rel, f"data/raw/{dataset}/{rel}", cropped=True, age=10 + 5 * k))
        (tmp_path / "data/raw" / dataset / "bad.jpg").write_bytes(b"")
        rows.append(manifest_row(dataset, "bad.jpg", f"data/raw/{dataset}/bad.jpg", cropped=True))
        (tmp_path / "data/interim" / dataset).mkdir(parents=True)
        manifest_frame(rows).to_parquet(tmp_path / "data/interim" / dataset / "manifest.parquet")

    assert crop_stage.main(["--no-progress"]) == 0
    cropped = pd.read_parquet("data/crops/manifest.parquet")
    assert len(cropped) == 24 and set(cropped["dataset"]) == {"utkface", "fairface"}
    assert all(path.startswith("data/crops/") and (tmp_path / path).is_file() for path in cropped["crop_path"])
    rejects = pd.read_csv("data/crops/rejects.csv")
    assert len(rejects) == 2 and rejects["reason"].str.startswith("image_empty").all()
    quality = json.loads((tmp_path / "data/crops/quality.json").read_text())
    assert quality["datasets"]["fairface"]["kept"] == 12 and quality["settings"]["detector"] == "haar"

    assert split_stage.main([]) == 0
    processed = pd.read_parquet("data/processed/manifest.parquet")
    assert list(processed["id"]) == list(cropped["id"])
    assert set(processed["split"]) <= {"train", "val", "test"}
    summary = json.loads((tmp_path / "data/processed/split.json").read_text())
    assert sum(summary["datasets"]["utkface"]["rows"].values()) == 12


def test_crop_stage_names_the_missing_prepared_manifest(tmp_path, monkeypatch, capsys):
    from stages import crop as crop_stage

    _stage_params(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert crop_stage.main(["--no-progress"]) == 2
    assert "data/interim/utkface/manifest.parquet not found" in capsys.readouterr().err


def test_each_worker_creates_its_own_detector_once(monkeypatch):
    threads = cv2.getNumThreads()
    monkeypatch.setattr(faces, "_worker_cropper", None)
    try:
        faces._start_worker(HAAR)
        first = faces._worker_cropper
        faces._start_worker(HAAR)
    finally:
        cv2.setNumThreads(threads)
    assert faces._worker_cropper is not first and not first._detectors  # created on first need
    assert first.detector() is first.detector()
    assert first.detector() is not faces._worker_cropper.detector()


def test_detectors_on_ready_crops_record_what_they_find_and_drop_nothing(tmp_path, mixed_manifest):
    from dataclasses import replace

    from stages.lib.faces.stats import precropped_detection

    plain = crop_manifest(mixed_manifest, tmp_path / "plain", HAAR, workers=1, progress=False)
    measured = crop_manifest(mixed_manifest, tmp_path / "measured", replace(HAAR, detect_precropped=("haar",)),
                             workers=1, progress=False)
    assert list(measured.manifest["id"]) == list(plain.manifest["id"])  # nothing dropped, nothing added
    kept = measured.manifest.set_index("id")
    assert kept.loc["a/ready.png", "found_by_haar"] == 0  # a gradient: Haar finds no face in it
    assert kept["found_by_haar"].drop("a/ready.png").isna().all()  # only ready crops are measured
    stats = precropped_detection(measured.manifest, ["haar"], [0, 16, 31, 46, 61])
    assert stats["a"]["haar"]["attempted"] == 1 and stats["a"]["haar"]["rate"] == 0.0
    assert stats["a"]["haar"]["by"]["race_gender"] == {"unknown female": {"in": 1, "found": 0, "rate": 0.0}}
