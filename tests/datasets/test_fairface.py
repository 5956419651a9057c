"""The FairFace adapter on label CSVs in the official format."""

from pathlib import Path

import pytest

from stages.lib.datasets import run_adapter
from stages.lib.datasets.common import DatasetError
from stages.lib.datasets.fairface import band_age
from stages.lib.core.labels import RACES, LabelError
from tests.datasets.raw_files import LABELS, reasons, shared_folder, write_jpg


FAIRFACE_CSV = """file,age,gender,race,service_test
val/1.jpg,20-29,Male,White,True
val/2.jpg,more than 70,Female,Latino_Hispanic,False
val/3.jpg,3-9,Female,Southeast Asian,True
val/4.jpg,ancient,Male,Black,False
val/5.jpg,30-39,Male,Martian,False
val/6.jpg,40-49,Female,Indian,True
val/7.jpg,50-59,Male,Middle Eastern,False
"""


def fairface_folder(root: Path, images_under: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "fairface_label_val.csv").write_text(FAIRFACE_CSV)
    for n in [1, 2, 3, 4, 5, 6]:
        write_jpg(root / images_under / "val" / f"{n}.jpg")
    (root / images_under / "val" / "6.jpg").write_bytes(b"")
    return root


def test_fairface_val_labels(tmp_path):
    root = fairface_folder(tmp_path / "fairface")
    result = run_adapter("fairface", root, "fairface", {}, labels=LABELS)
    assert reasons(result) == {"4.jpg": "label_invalid", "5.jpg": "label_invalid", "6.jpg": "image_empty",
                               "7.jpg": "image_missing"}
    rows = {row["id"]: row for row in result.rows}
    assert set(rows) == {"fairface/val/1.jpg", "fairface/val/2.jpg", "fairface/val/3.jpg"}
    older = rows["fairface/val/2.jpg"]
    assert (older["age"], older["age_band_source"], older["race"], older["race_source"]) == (
        75, "more than 70", "others", "Latino_Hispanic")
    assert (rows["fairface/val/1.jpg"]["age"], rows["fairface/val/3.jpg"]["age"]) == (24, 6)
    assert rows["fairface/val/3.jpg"]["race"] == "asian"
    assert all(row["cropped"] and row["box"] is None for row in result.rows)


def test_fairface_images_unpacked_beside_the_labels(tmp_path):
    """The download stage unpacks the zip into a folder of its own, next to the label files."""
    root = fairface_folder(tmp_path / "fairface", images_under="fairface-img-margin025-trainval")
    result = run_adapter("fairface", root, "fairface", {"split": "val", "top_band_age": 80}, labels=LABELS)
    assert len(result.rows) == 3
    rows = {row["id"]: row for row in result.rows}
    assert rows["fairface/fairface-img-margin025-trainval/val/2.jpg"]["age"] == 80


def test_fairface_split_needs_its_label_file(tmp_path):
    root = fairface_folder(tmp_path / "fairface")
    with pytest.raises(DatasetError, match="fairface_label_train.csv not found.*options.split is 'train'"):
        run_adapter("fairface", root, "fairface", {"split": "train"}, labels=LABELS)
    with pytest.raises(DatasetError, match="neither"):
        run_adapter("fairface", tmp_path / "empty", "fairface", {}, labels=LABELS)


def test_fairface_band_midpoints():
    expected = {"0-2": 1, "3-9": 6, "10-19": 14, "20-29": 24, "30-39": 34, "40-49": 44, "50-59": 54, "60-69": 64,
                "more than 70": 75}
    assert {band: band_age(band, 75) for band in expected} == expected
    for bad in ["", "9-3", "70+", "about 30"]:
        with pytest.raises(LabelError):
            band_age(bad, 75)


@pytest.mark.shared
def test_real_fairface_sample():
    folder = shared_folder("fairface-sample")
    result = run_adapter("fairface", folder, "fairface", {}, labels=LABELS)
    assert len(result.rows) == 3000 and result.rejects == []
    assert set(r["race"] for r in result.rows) == set(RACES)
    assert set(r["race_source"] for r in result.rows) == {
        "White", "Black", "East Asian", "Southeast Asian", "Indian", "Middle Eastern", "Latino_Hispanic"}
    assert all(Path(r["path"]).is_file() for r in result.rows[:50])
