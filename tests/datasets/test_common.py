"""What every adapter shares (common.py): its own age range, its seeded sample, rejects with their reasons."""

import os

import pytest
from pydantic import ValidationError

from stages.lib.datasets import OptionsError, run_adapter
from stages.lib.datasets.common import (
    AdapterResult, DatasetError, Options, Rejected, check_age, check_image_file, dataset_labels, find_one, list_files,
    manifest_row, read_csv_with_columns, reject_row, sample_rows, unique_ids,
)
from stages.lib.core.params import Labels
from tests.datasets.raw_files import LABELS, reasons, write_jpg


def test_a_dataset_narrows_the_age_range_with_its_own_options(wiki_folder):
    result = run_adapter("imdb_wiki", wiki_folder, "wiki", {"variant": "wiki", "min_age": 25}, labels=LABELS)
    assert reasons(result)["good_female.jpg"] == "age_out_of_range"
    assert "age 20 is outside this dataset's age range 25..100" in {
        r["path"].rsplit("/", 1)[-1]: r["reason"] for r in result.rejects}["good_female.jpg"]
    with pytest.raises(OptionsError, match=r"datasets\.wiki\.options: max_age 120 is above labels\.max_age 100"):
        run_adapter("imdb_wiki", wiki_folder, "wiki", {"variant": "wiki", "max_age": 120}, labels=LABELS)
    with pytest.raises(OptionsError, match=r"datasets\.wiki\.options: min_age 50 must be below max_age 40"):
        run_adapter("imdb_wiki", wiki_folder, "wiki", {"variant": "wiki", "min_age": 50, "max_age": 40}, labels=LABELS)


def utkface_aligned_names(n: int) -> list[str]:
    return [f"{20 + i % 60}_{i % 2}_{i % 5}_2017011617452{i:04d}.jpg.chip.jpg" for i in range(n)]


def test_sample_keeps_a_seeded_share_and_rejects_the_rest_with_their_labels(tmp_path):
    for name in utkface_aligned_names(50):
        write_jpg(tmp_path / name)
    whole = run_adapter("utkface", tmp_path, "u", {}, labels=LABELS)
    drawn = run_adapter("utkface", tmp_path, "u", {"sample": 20, "sample_seed": 3}, labels=LABELS)
    again = run_adapter("utkface", tmp_path, "u", {"sample": 20, "sample_seed": 3}, labels=LABELS)
    other = run_adapter("utkface", tmp_path, "u", {"sample": 20, "sample_seed": 4}, labels=LABELS)
    ids = [row["id"] for row in drawn.rows]
    assert len(ids) == 20 and ids == [row["id"] for row in again.rows] != [row["id"] for row in other.rows]
    assert ids == [row["id"] for row in whole.rows if row["id"] in set(ids)]  # the dataset's order is kept
    assert len(drawn.rejects) == 30 and {r["reason"].split(":")[0] for r in drawn.rejects} == {"not_sampled"}
    assert "keeps 20 of the 50 rows" in drawn.rejects[0]["reason"]
    assert all({"age", "gender", "race"} <= set(r) for r in drawn.rejects)  # the quality summary sees who was left out
    assert len(run_adapter("utkface", tmp_path, "u", {"sample": 80}, labels=LABELS).rows) == 50


def test_a_reject_row_keeps_its_reason_and_the_labels_read_before_the_refusal():
    rejected = Rejected("label_invalid", "race 'martian' is not a race", age=30, gender="male", race=None)
    row = reject_row("fairface", "raw/fairface/val/5.jpg", rejected)
    assert row == {"dataset": "fairface", "path": "raw/fairface/val/5.jpg", "stage": "prepare",
                   "reason": "label_invalid: race 'martian' is not a race", "age": 30, "gender": "male"}
    assert str(rejected) == rejected.reason and rejected.code == "label_invalid"


def test_check_age_keeps_both_ends_of_the_range_and_refuses_beyond_them_with_the_labels():
    labels = Labels(min_age=1, max_age=100)
    assert [check_age(age, labels) for age in (1, 100)] == [1, 100]
    for age in (0, 101):
        with pytest.raises(Rejected) as caught:
            check_age(age, labels, gender="female", race=None)
        assert caught.value.code == "age_out_of_range" and caught.value.labels == {"age": age, "gender": "female"}
        assert "1..100" in caught.value.detail


def test_check_image_file_tells_a_missing_image_from_an_empty_one():
    files = {"a/1.jpg": 812, "a/2.jpg": 0}
    check_image_file("a/1.jpg", files)
    for rel, code in [("a/2.jpg", "image_empty"), ("a/3.jpg", "image_missing"), ("1.jpg", "image_missing")]:
        with pytest.raises(Rejected) as caught:
            check_image_file(rel, files)
        assert caught.value.code == code and rel in caught.value.detail


def test_manifest_rows_take_their_id_from_the_dataset_and_the_relative_path(tmp_path):
    row = manifest_row("wiki", tmp_path / "raw", "17/a.jpg", age=30.0, gender="male", race=None, identity="7",
                       box=[1, 2, 3, 4], cropped=0, source_meta="row 3", photo="a.jpg")
    assert row["id"] == "wiki/17/a.jpg" and row["path"] == (tmp_path / "raw" / "17" / "a.jpg").as_posix()
    assert row["age"] == 30 and isinstance(row["age"], int)
    assert row["box"] == [1.0, 2.0, 3.0, 4.0] and all(isinstance(v, float) for v in row["box"])
    assert row["cropped"] is False and row["photo"] == "a.jpg"
    assert manifest_row("wiki", tmp_path, "b.jpg", age=1, gender="female", race=None, identity=None, box=None,
                        cropped=True, source_meta="")["box"] is None


def test_unique_ids_number_the_repeats_of_an_id_in_row_order():
    rows = [{"id": "wiki/a.jpg"}, {"id": "wiki/b.jpg"}, {"id": "wiki/a.jpg"}, {"id": "wiki/a.jpg"}]
    assert [row["id"] for row in unique_ids(rows)] == ["wiki/a.jpg", "wiki/b.jpg", "wiki/a.jpg#1", "wiki/a.jpg#2"]


def test_list_files_walks_every_folder_follows_links_and_lists_a_dangling_link_as_empty(tmp_path):
    root, elsewhere = tmp_path / "raw", tmp_path / "elsewhere"
    (root / "part1" / "deep").mkdir(parents=True)
    elsewhere.mkdir()
    (root / "top.txt").write_bytes(b"12345")
    (root / "part1" / "deep" / "a.jpg").write_bytes(b"123")
    (root / "part1" / "empty.jpg").write_bytes(b"")
    (elsewhere / "linked.jpg").write_bytes(b"12")
    os.symlink(elsewhere, root / "part2")
    os.symlink(tmp_path / "gone.jpg", root / "dangling.jpg")
    assert list(list_files(root).items()) == [  # sorted, folder by folder: the manifest's order is stable
        ("dangling.jpg", 0), ("top.txt", 5), ("part1/empty.jpg", 0), ("part1/deep/a.jpg", 3), ("part2/linked.jpg", 2)]


def test_find_one_refuses_no_copy_and_two_copies():
    files = {"wiki_crop/wiki.mat": 10, "a/imdb.mat": 1, "b/imdb.mat": 1}
    assert find_one(files, "wiki.mat", "raw", hint="extract it") == "wiki_crop/wiki.mat"
    with pytest.raises(DatasetError, match="imdb.mat found more than once .*a/imdb.mat, b/imdb.mat"):
        find_one(files, "imdb.mat", "raw", hint="extract it")
    with pytest.raises(DatasetError, match="celeb.mat not found under raw: extract it"):
        find_one(files, "celeb.mat", "raw", hint="extract it")


def test_label_files_are_read_with_a_byte_order_mark_and_missing_columns_named(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_bytes("path,age,gender\na.jpg,30,f\n".encode("utf-8-sig"))
    assert read_csv_with_columns(labels, ["path", "age"], "a label file") == [{"path": "a.jpg", "age": "30",
                                                                               "gender": "f"}]
    labels.write_text("file,age\n")
    with pytest.raises(DatasetError, match=r"labels\.csv lacks columns \['path'\] .*; a label file"):
        read_csv_with_columns(labels, ["path", "age"], "a label file")


def test_dataset_labels_narrow_the_study_range_and_refuse_an_empty_or_wider_one():
    study = Labels(min_age=0, max_age=100)
    assert dataset_labels(Options(), study) == study
    assert dataset_labels(Options(min_age=17), study) == Labels(min_age=17, max_age=100)
    assert dataset_labels(Options(max_age=70), study) == Labels(min_age=0, max_age=70)
    with pytest.raises(ValueError, match="above labels.max_age 100"):
        dataset_labels(Options(max_age=101), study)
    with pytest.raises(ValueError, match="min_age 100 must be below max_age 100"):
        dataset_labels(Options(min_age=100), study)


def test_options_refuse_unknown_keys_and_negative_values():
    for bad in [{"min_ag": 3}, {"min_age": -1}, {"sample": 0}, {"sample_seed": -2}]:
        with pytest.raises(ValidationError):
            Options.model_validate(bad)


def test_sample_rows_keeps_the_old_rejects_and_leaves_a_small_result_alone():
    rows = [{"id": f"d/{i}", "path": f"raw/{i}.jpg", "age": i, "gender": "male", "race": None} for i in range(6)]
    earlier = [{"dataset": "d", "path": "raw/x.jpg", "stage": "prepare", "reason": "image_empty: x"}]
    result = sample_rows(AdapterResult(rows, list(earlier)), "d", 4, seed=1)
    assert len(result.rows) == 4 and result.rejects[0] == earlier[0] and len(result.rejects) == 3
    left_out = {r["path"] for r in result.rejects[1:]}
    assert left_out == {row["path"] for row in rows} - {row["path"] for row in result.rows}
    assert all("race" not in r and r["gender"] == "male" for r in result.rejects[1:])  # unknown race not carried
    small = AdapterResult(rows[:3], [])
    assert sample_rows(small, "d", 3, seed=1) is small


def test_list_files_lists_a_folder_reached_again_through_a_link_once(tmp_path):
    """A link back to an ancestor (`part1/back -> ..`) would list every photo again under each detour, up to
    the kernel's 40 links (and two such links grow it exponentially): the same face as many manifest rows."""
    root = tmp_path / "raw"
    (root / "part1").mkdir(parents=True)
    (root / "top.jpg").write_bytes(b"1")
    (root / "part1" / "a.jpg").write_bytes(b"22")
    os.symlink("..", root / "part1" / "back")  # one link only: two would hang the walk before the fix
    assert list_files(root) == {"top.jpg": 1, "part1/a.jpg": 2}
