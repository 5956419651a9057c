"""The folder adapter: a researcher's photos in UTKFace naming, or with a labels CSV."""

import pytest

from stages.lib.datasets import OptionsError, parse_options, run_adapter
from stages.lib.datasets.common import DatasetError
from tests.datasets.raw_files import LABELS, reasons, write_jpg


def test_folder_in_utkface_naming(tmp_path):
    root = tmp_path / "mine"
    write_jpg(root / "25_female_black_holiday.jpg")
    write_jpg(root / "trip" / "60_0_3_2019.png")
    write_jpg(root / "IMG_0001.jpg")
    result = run_adapter("folder", root, "mine", {"cropped": True}, labels=LABELS)
    assert reasons(result) == {"IMG_0001.jpg": "name_unparsed"}
    assert sorted((r["age"], r["gender"], r["race"], r["cropped"]) for r in result.rows) == [
        (25, "female", "black", True), (60, "male", "indian", True)]


def test_folder_with_a_labels_csv(tmp_path):
    root = tmp_path / "mine"
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "labels.csv").write_text(
        "path,age,gender,race,identity\n"
        "../photos/a.jpg,34,f,,p1\n"
        "b.jpg,51.0,Male,asian,\n"
        "c.jpg,40,x,white,\n"
        "d.jpg,40,1,white,\n"
        ",40,1,white,\n"
    )
    write_jpg(root / "meta" / "b.jpg")
    write_jpg(root / "meta" / "c.jpg")
    result = run_adapter("folder", root, "mine", {"csv": "meta/labels.csv"}, labels=LABELS)
    codes = sorted(r["reason"].split(":")[0] for r in result.rejects)
    assert codes == ["image_missing", "image_missing", "label_invalid", "label_invalid"]
    assert [(r["id"], r["age"], r["gender"], r["race"], r["cropped"]) for r in result.rows] == [
        ("mine/meta/b.jpg", 51, "male", "asian", False)]


def test_folder_csv_race_and_identity_are_optional(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "labels.csv").write_text("path,age,gender,identity\na.jpg,30,female,anna\nb.jpg,31,0,\n")
    write_jpg(root / "a.jpg")
    write_jpg(root / "b.jpg")
    result = run_adapter("folder", root, "mine", {"csv": "labels.csv"}, labels=LABELS)
    assert [(r["race"], r["identity"]) for r in result.rows] == [(None, "anna"), (None, None)]


def test_folder_csv_errors_name_the_option(tmp_path):
    with pytest.raises(DatasetError, match=r"datasets\.mine\.options\.csv"):
        run_adapter("folder", tmp_path, "mine", {"csv": "labels.csv"}, labels=LABELS)
    (tmp_path / "labels.csv").write_text("file,age\n")
    with pytest.raises(DatasetError, match=r"lacks columns \['path', 'gender'\]"):
        run_adapter("folder", tmp_path, "mine", {"csv": "labels.csv"}, labels=LABELS)
    with pytest.raises(OptionsError, match=r"datasets\.mine\.options\.csv: must be a path inside"):
        parse_options("folder", "mine", {"csv": "../elsewhere.csv"})
