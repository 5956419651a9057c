"""Face detection and cropping on real photos from ../shared (skipped when absent).

A race-stratified sample of 200 UTKFace aligned faces and 200 FairFace faces. Measured here on the
whole shared sets (5,002 UTKFace, 3,000 FairFace): YuNet (score 0.6) finds 99.9% / 99.8%, every race
at 99.7% or more; Haar (scale 1.1, 5 neighbours) finds 57% / 47%, and on FairFace 30% of Black faces
against 45-55% of the others. The bounds below leave room for the sample's noise.

    .venv/bin/python -m pytest tests/faces/test_detect.py -q -s     prints the rates by race and the speed
"""

import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from stages.lib.faces.crop import CropSettings, crop_manifest
from stages.lib.faces.detect import HaarDetector, YuNetDetector
from stages.lib.faces.stats import crop_quality
from stages.lib.core.labels import RACES
from stages.lib.core.schema import manifest_frame

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
UTKFACE = SHARED / "datasets" / "utkface-aligned-sample"
FAIRFACE = SHARED / "datasets" / "fairface-sample"
YUNET = SHARED / "models" / "face_detection_yunet.onnx"
PER_DATASET = 200

pytestmark = [
    pytest.mark.shared,
    pytest.mark.skipif(
        not (UTKFACE.is_dir() and (FAIRFACE / "fairface_label_val.csv").is_file() and YUNET.is_file()),
        reason=f"real photos or the YuNet model not found in {SHARED} (datasets/utkface-aligned-sample, "
        "datasets/fairface-sample, models/face_detection_yunet.onnx)",
    ),
]


def _stratified(frame: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """About n rows, equally many from each race (as many as there are where a race has fewer)."""
    per_race = -(-n // frame["race"].nunique())
    parts = [rows.sample(min(per_race, len(rows)), random_state=seed) for _, rows in frame.groupby("race")]
    return pd.concat(parts).head(n).reset_index(drop=True)


@pytest.fixture(scope="module")
def samples() -> dict[str, pd.DataFrame]:
    """path, race, age, gender of the sampled photos of each dataset."""
    utk_rows = []
    for path in sorted(UTKFACE.glob("*.jpg")):
        fields = path.name.split("_")
        if len(fields) == 4 and fields[2].isdigit():  # two files carry the dataset's malformed names
            utk_rows.append({"path": str(path), "age": int(fields[0]), "gender": ("male", "female")[int(fields[1])],
                             "race": RACES[int(fields[2])]})
    labels = pd.read_csv(FAIRFACE / "fairface_label_val.csv")
    fair = pd.DataFrame({
        "path": [str(FAIRFACE / name) for name in labels["file"]],
        "age": labels["age"].str.extract(r"(\d+)")[0].astype(int),  # the band's lower edge
        "gender": labels["gender"].str.lower(),
        "race": labels["race"],  # FairFace's seven, to see the detector's bias by its own groups
    })
    return {"utkface": _stratified(pd.DataFrame(utk_rows), PER_DATASET), "fairface": _stratified(fair, PER_DATASET)}


@pytest.fixture(scope="module")
def detections(samples) -> dict[tuple[str, str], pd.DataFrame]:
    """(detector, dataset) -> the sample with a `found` column, and the speed in images per second."""
    results = {}
    for detector in (YuNetDetector(YUNET, 0.6), HaarDetector()):
        for dataset, frame in samples.items():
            start = time.perf_counter()
            found = [bool(detector.detect(cv2.imread(path))) for path in frame["path"]]
            seconds = time.perf_counter() - start
            results[detector.name, dataset] = frame.assign(found=found)
            by_race = frame.assign(found=found).groupby("race")["found"].mean().round(2).to_dict()
            print(f"\n{detector.name} on {dataset}: {np.mean(found):.3f} of {len(frame)} "
                  f"({len(frame) / seconds:.0f} images/s); by race {by_race}")
    return results


@pytest.mark.parametrize("dataset", ["utkface", "fairface"])
def test_yunet_finds_nearly_every_face_of_every_race(detections, dataset):
    frame = detections["yunet", dataset]
    assert frame["found"].mean() >= 0.97
    assert frame.groupby("race")["found"].mean().min() >= 0.9


def test_haar_misses_far_more_faces_and_many_black_faces(detections):
    utk, fair = detections["haar", "utkface"], detections["haar", "fairface"]
    assert utk["found"].mean() <= 0.8
    assert fair["found"].mean() <= 0.75
    assert detections["yunet", "fairface"]["found"].mean() - fair["found"].mean() >= 0.2
    by_race = fair.groupby("race")["found"].mean()
    assert by_race["Black"] <= 0.55


def _manifest(frame: pd.DataFrame, dataset: str, cropped: bool) -> pd.DataFrame:
    return manifest_frame([
        {"id": f"{dataset}/{Path(row.path).name}", "dataset": dataset, "path": row.path, "age": row.age,
         "gender": row.gender, "race": row.race, "identity": None, "box": None, "cropped": cropped, "source_meta": ""}
        for row in frame.itertuples()
    ])


def test_aligned_utkface_is_only_resized(samples, tmp_path):
    manifest = _manifest(samples["utkface"].head(40), "utkface", cropped=True)
    settings = CropSettings(detector="yunet", margin=0.4, size=224, min_score=0.6, yunet_model=YUNET)
    start = time.perf_counter()
    result = crop_manifest(manifest, tmp_path, settings, workers=1, progress=False)
    print(f"\nprecropped UTKFace: {len(manifest) / (time.perf_counter() - start):.0f} images/s")
    assert result.rejects.empty and (result.manifest["detector"] == "precropped").all()
    for row in result.manifest.itertuples():
        crop, source = cv2.imread(row.crop_path), cv2.imread(row.path)
        assert crop.shape == (224, 224, 3) and list(row.crop_box) == [0, 0, 200, 200]
        resized = cv2.resize(source, (224, 224), interpolation=cv2.INTER_LINEAR)
        assert np.abs(crop.astype(int) - resized.astype(int)).mean() < 3  # the same picture, up to JPEG


def test_fairface_faces_are_detected_and_cropped_with_the_margin(samples, tmp_path):
    manifest = _manifest(samples["fairface"].head(60), "fairface", cropped=False)
    settings = CropSettings(detector="yunet", margin=0.4, size=112, min_score=0.6, yunet_model=YUNET)
    start = time.perf_counter()
    result = crop_manifest(manifest, tmp_path, settings, workers=2, progress=False)
    print(f"\nYuNet crop of FairFace, 2 workers: {len(manifest) / (time.perf_counter() - start):.0f} images/s")
    kept = result.manifest
    assert len(kept) >= 58 and (kept["detector"] == "yunet").all() and (kept["faces_found"] >= 1).all()
    # FairFace's faces nearly fill its 224-pixel photos (YuNet's boxes: about 150-220 pixels), so the
    # region, 1.8 x the face, reaches past the photo's edges (padded) and is centred on the face
    boxes = np.array([list(box) for box in kept["crop_box"]])
    assert (1.8 * 140 < boxes[:, 2]).all() and (boxes[:, 2] < 1.8 * 240).all()
    centres = boxes[:, :2] + boxes[:, 2:] / 2
    assert (np.abs(centres - 112) < 50).all()
    assert all(cv2.imread(path).shape == (112, 112, 3) for path in kept["crop_path"])
    quality = crop_quality(manifest, result.outcomes, [0, 16, 31, 46, 61])["fairface"]
    assert quality["detection"]["attempted"] == 60 and quality["detection"]["rate"] >= 0.96
