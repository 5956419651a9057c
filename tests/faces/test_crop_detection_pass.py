"""The crop stage's detection-rate pass (crop.detect_precropped) counts, for every ready crop and every
detector, exactly the faces the detector finds when it is shown that photo alone: the stage's path
(photos decoded once, in runs, each detector over a run before the next, in worker processes on one
OpenCV thread) against the plain one (each photo read with cv2.imread and shown to each detector in turn).

On faces drawn here and on real faces from ../shared/datasets (skipped, saying why, when absent); with
Haar, YuNet when ../shared/models has it, and the SSD when its weights are cached or can be fetched.
"""

from pathlib import Path

import cv2
import pandas as pd
import pytest

from stages.lib.core.schema import manifest_frame
from stages.lib.datasets.synthetic import Face, draw_face
from stages.lib.faces.crop import CropSettings, crop_manifest
from stages.lib.faces.detect import make_detector
from tests.published_weights import DETECTOR_KEYS, fetched
from tests.faces.photos import manifest_row

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
YUNET = SHARED / "models" / "face_detection_yunet.onnx"
REAL_PER_DATASET = 20   # of each dataset: the counts of 120 were checked once; 40 keep the suite short


@pytest.fixture(scope="module")
def settings() -> CropSettings:
    """Haar always; YuNet when ../shared has its model; the SSD when its weights are cached or can be fetched."""
    names, ssd_files = ["haar"], None
    if YUNET.is_file():
        names.append("yunet")
    try:
        weights = fetched((), DETECTOR_KEYS)
        names, ssd_files = [*names, "ssd"], (weights / "ssd_face.pb", weights / "ssd_face_config.pbtxt")
    except pytest.skip.Exception as unreachable:
        print(f"\nwithout the SSD: {unreachable}")
    return CropSettings(detector="haar", margin=0.4, size=64, min_score=0.6, yunet_model=YUNET,
                        ssd_files=ssd_files, detect_precropped=tuple(names))


def plain_counts(paths: list[str], settings: CropSettings) -> dict[str, list[int]]:
    """Each detector's number of faces in each photo, one photo at a time."""
    detectors = [make_detector(name, settings.yunet_model, settings.min_score, ssd_files=settings.ssd_files)
                 for name in settings.detect_precropped]
    counts = {detector.name: [] for detector in detectors}
    for path in paths:
        image = cv2.imread(path)
        for detector in detectors:
            counts[detector.name].append(len(detector.detect(image)))
    return counts


def stage_counts(manifest: pd.DataFrame, settings: CropSettings, out: Path, workers: int) -> dict[str, list[int]]:
    """Each detector's `found_by_<detector>` for every row, as the crop stage records it."""
    kept = crop_manifest(manifest, out, settings, workers=workers, progress=False).manifest
    assert list(kept["path"]) == list(manifest["path"])  # every ready crop kept, in order
    return {name: [int(n) for n in kept[f"found_by_{name}"]] for name in settings.detect_precropped}


def drawn_manifest(folder: Path) -> pd.DataFrame:
    """20 drawn faces (every age band, gender and race) at three sizes, written as JPEGs."""
    rows = []
    combos = [(age, gender, race) for age in (8, 25, 40, 71) for gender in ("male", "female")
              for race in ("white", "black", "asian", "indian", "others")][::2]
    for index, (age, gender, race) in enumerate(combos):
        path = folder / f"{index}.jpg"
        cv2.imwrite(str(path), draw_face(Face(index, age, gender, race, age), (224, 200, 160)[index % 3], seed=7)[0])
        rows.append(manifest_row("drawn", path.name, path, cropped=True, age=age, gender=gender, race=race))
    return manifest_frame(rows)


def test_drawn_faces_get_the_plain_counts_in_one_process_and_in_two(tmp_path, settings):
    folder = tmp_path / "raw"
    folder.mkdir()
    manifest = drawn_manifest(folder)
    plain = plain_counts(list(manifest["path"]), settings)
    assert all(0 < sum(n > 0 for n in found) < len(manifest) for found in plain.values())  # finds and misses
    assert stage_counts(manifest, settings, tmp_path / "one", workers=1) == plain
    assert stage_counts(manifest, settings, tmp_path / "two", workers=2) == plain


@pytest.mark.shared
def test_real_faces_get_the_plain_counts(tmp_path, settings):
    utkface = sorted((SHARED / "datasets" / "utkface-aligned-sample").glob("*.jpg"))
    fairface = sorted((SHARED / "datasets" / "fairface-sample" / "val").glob("*.jpg"))
    if not utkface or not fairface:
        pytest.skip(f"no real faces in {SHARED / 'datasets'} (utkface-aligned-sample, fairface-sample/val)")
    paths = [found[::max(1, len(found) // REAL_PER_DATASET)][:REAL_PER_DATASET] for found in (utkface, fairface)]
    manifest = manifest_frame([manifest_row(path.parent.name, path.name, path, cropped=True)
                               for path in paths[0] + paths[1]])
    plain = plain_counts(list(manifest["path"]), settings)
    assert stage_counts(manifest, settings, tmp_path / "two", workers=2) == plain
