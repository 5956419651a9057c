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


def test_folder_without_images_says_what_to_do(tmp_path):
    (tmp_path / "notes.txt").write_text("photos to come")
    with pytest.raises(DatasetError, match=r"no images under .*datasets\.mine\.options\.csv"):
        run_adapter("folder", tmp_path, "mine", {}, labels=LABELS)


def test_folder_names_skip_archives_and_refuse_empty_images_with_their_labels(tmp_path):
    write_jpg(tmp_path / "30_1_0_a.jpg")
    (tmp_path / "31_0_1_b.jpg").write_bytes(b"")
    (tmp_path / "photos.zip").write_bytes(b"the archive the photos came in")
    result = run_adapter("folder", tmp_path, "mine", {}, labels=LABELS)
    assert [(r["age"], r["gender"], r["cropped"]) for r in result.rows] == [(30, "female", False)]
    [empty] = result.rejects
    assert (empty["reason"].split(":")[0], empty["age"], empty["gender"], empty["race"]) == (
        "image_empty", 31, "male", "black")


def test_folder_csv_paths_may_use_backslashes_and_rejects_keep_the_labels(tmp_path):
    (tmp_path / "labels.csv").write_text("path,age,gender,race\nsub\\a.jpg,30,f,asian\nsub\\b.jpg,40,m,\n"
                                         "sub/c.jpg,101,m,white\n")
    write_jpg(tmp_path / "sub" / "a.jpg")
    result = run_adapter("folder", tmp_path, "mine", {"csv": "labels.csv"}, labels=LABELS)
    assert [r["id"] for r in result.rows] == ["mine/sub/a.jpg"]
    rejects = {r["path"].rsplit("/", 1)[-1]: r for r in result.rejects}
    assert (rejects["b.jpg"]["reason"].split(":")[0], rejects["b.jpg"]["age"], rejects["b.jpg"]["gender"]) == (
        "image_missing", 40, "male")
    assert "race" not in rejects["b.jpg"]  # unknown, not refused
    assert rejects["c.jpg"]["reason"].startswith("age_out_of_range") and rejects["c.jpg"]["race"] == "white"
