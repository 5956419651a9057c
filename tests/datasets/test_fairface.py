"""The FairFace adapter on label CSVs in the official format."""

from pathlib import Path

import pytest

from stages.lib.datasets import run_adapter
from stages.lib.datasets.common import DatasetError
from stages.lib.datasets.fairface import band_age
from stages.lib.core.labels import RACES, LabelError
from stages.lib.core.params import Labels
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


def test_fairface_both_splits_read_every_label_file_present(tmp_path):
    root = fairface_folder(tmp_path / "fairface")
    (root / "fairface_label_train.csv").write_text("file,age,gender,race\ntrain/9.jpg,0-2,Female,Black\n")
    write_jpg(root / "train" / "9.jpg")
    both = run_adapter("fairface", root, "fairface", {}, labels=LABELS)
    assert [r["id"] for r in both.rows] == ["fairface/val/1.jpg", "fairface/val/2.jpg", "fairface/val/3.jpg",
                                            "fairface/train/9.jpg"]
    train = run_adapter("fairface", root, "fairface", {"split": "train"}, labels=LABELS)
    assert [(r["age"], r["gender"], r["race"]) for r in train.rows] == [(1, "female", "black")]
    (root / "fairface_label_val.csv").unlink()
    assert len(run_adapter("fairface", root, "fairface", {"split": "both"}, labels=LABELS).rows) == 1


def test_fairface_refuses_two_copies_of_a_label_file(tmp_path):
    root = fairface_folder(tmp_path / "fairface")
    (root / "copy").mkdir()
    (root / "copy" / "fairface_label_val.csv").write_text(FAIRFACE_CSV)
    with pytest.raises(DatasetError, match=r"fairface_label_val\.csv found more than once .*keep one copy"):
        run_adapter("fairface", root, "fairface", {}, labels=LABELS)


def test_fairface_rejects_point_at_the_csv_line_and_keep_the_labels(tmp_path):
    root = tmp_path / "fairface"
    root.mkdir()
    (root / "fairface_label_val.csv").write_text(
        "file,age,gender,race\n"
        "val/1.jpg,20-29,Female,Indian\n"
        ",30-39,Male,White\n"
        "val/2.jpg,70-79,Male,White\n"
    )
    result = run_adapter("fairface", root, "fairface", {}, labels=Labels(min_age=0, max_age=70))
    assert result.rows == []
    rejects = {r["path"].removeprefix(root.as_posix() + "/"): r for r in result.rejects}
    assert set(rejects) == {"val/1.jpg", "fairface_label_val.csv:3", "val/2.jpg"}
    assert rejects["fairface_label_val.csv:3"]["reason"].startswith("label_invalid: fairface_label_val.csv line 3")
    missing = rejects["val/1.jpg"]
    assert (missing["reason"].split(":")[0], missing["age"], missing["gender"], missing["race"]) == (
        "image_missing", 24, "female", "indian")
    assert rejects["val/2.jpg"]["reason"].startswith("age_out_of_range: age 74")


def test_fairface_images_kept_apart_from_the_labels_are_found_by_their_path_the_shortest_copy_first(tmp_path):
    root = tmp_path / "fairface"
    (root / "labels").mkdir(parents=True)
    (root / "labels" / "fairface_label_val.csv").write_text("file,age,gender,race\nval/1.jpg,20-29,Male,White\n")
    write_jpg(root / "images" / "old" / "copy" / "val" / "1.jpg")
    write_jpg(root / "images" / "val" / "1.jpg")
    result = run_adapter("fairface", root, "fairface", {}, labels=LABELS)
    assert [r["id"] for r in result.rows] == ["fairface/images/val/1.jpg"]
