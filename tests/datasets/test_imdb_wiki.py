"""The IMDB-Wiki adapter on .mat files laid out like the real wiki.mat / imdb.mat."""

import numpy as np
import pytest
import scipy.io

from stages.lib.datasets import run_adapter
from stages.lib.datasets.common import DatasetError
from stages.lib.datasets.imdb_wiki import birth_year, records_from_mat
from stages.lib.core.params import Labels
from tests.datasets.raw_files import (
    LABELS, datenum, photo, read_full_profile_dataset, reasons, save_imdb_wiki_mat, write_jpg,
)


def test_birth_year_reads_matlab_datenums():
    assert birth_year(723671.0) == 1981  # datenum(1981, 5, 5)
    assert birth_year(datenum(1900, 1, 1) + 0.6) == 1900  # fractional days are times of day
    for bad in [float("nan"), float("-inf"), 0.0, 366.0, 1e12]:
        with pytest.raises(ValueError):
            birth_year(bad)


def test_wiki_rows_and_rejects_with_reasons(wiki_folder):
    result = run_adapter("imdb_wiki", wiki_folder, "wiki", {"variant": "wiki"}, labels=LABELS)
    assert reasons(result) == {
        "no_gender.jpg": "gender_missing", "odd_gender.jpg": "gender_missing", "no_face.jpg": "no_face", "weak_face.jpg": "face_score_low",
        "two_faces.jpg": "second_face", "missing.jpg": "image_missing", "empty.jpg": "image_empty",
        "bad_dob.jpg": "bad_date", "too_old.jpg": "age_out_of_range",
    }
    rows = {row["id"]: row for row in result.rows}
    assert set(rows) == {"wiki/wiki_crop/17/good_male.jpg", "wiki/wiki_crop/17/good_female.jpg"}
    assert len(result.rows) + len(result.rejects) == 11  # every row of the .mat, once
    male, female = rows["wiki/wiki_crop/17/good_male.jpg"], rows["wiki/wiki_crop/17/good_female.jpg"]
    assert (male["age"], male["gender"], male["race"], male["cropped"]) == (28, "male", None, False)
    assert male["box"] == pytest.approx([111.3, 111.3, 141.4, 151.4])
    assert male["identity"] == "Ann Example" and female["identity"] is None  # wiki: the name, when given
    assert (female["age"], female["gender"]) == (20, "female")
    assert male["path"] == (wiki_folder / "wiki_crop/17/good_male.jpg").as_posix()
    assert all(r["stage"] == "prepare" and r["dataset"] == "wiki" for r in result.rejects)


def test_wiki_thresholds_are_options(wiki_folder):
    options = {"variant": "wiki", "min_face_score": 0.0, "max_second_face_score": 3.0}
    result = run_adapter("imdb_wiki", wiki_folder, "wiki", options, labels=LABELS)
    kept = {row["id"].rsplit("/", 1)[-1] for row in result.rows}
    assert {"weak_face.jpg", "two_faces.jpg"} <= kept
    assert "no_face.jpg" in reasons(result)  # -inf is no face at any threshold


def test_wiki_age_range_comes_from_labels(wiki_folder):
    result = run_adapter("imdb_wiki", wiki_folder, "wiki", {"variant": "wiki"}, labels=Labels(min_age=25, max_age=100))
    assert reasons(result)["good_female.jpg"] == "age_out_of_range"
    assert [row["age"] for row in result.rows] == [28]


def test_imdb_identity_is_the_celeb_id(tmp_path):
    root = tmp_path / "imdb"
    photos = [photo("a.jpg", celeb_id=11, name="A"), photo("b.jpg", celeb_id=12, name="B")]
    save_imdb_wiki_mat(root / "imdb_crop" / "imdb.mat", "imdb", photos)
    for p in photos:
        write_jpg(root / "imdb_crop" / p["path"])
    result = run_adapter("imdb_wiki", root, "imdb", {"variant": "imdb"}, labels=LABELS)
    assert sorted(row["identity"] for row in result.rows) == ["11", "12"]


def test_imdb_wiki_missing_mat_says_where_it_goes(tmp_path):
    with pytest.raises(DatasetError, match=r"wiki\.mat not found under .*wiki_crop\.tar"):
        run_adapter("imdb_wiki", tmp_path, "wiki", {"variant": "wiki"}, labels=LABELS)


def test_imdb_wiki_wrong_variant_struct(tmp_path):
    save_imdb_wiki_mat(tmp_path / "imdb.mat", "wiki", [photo("a.jpg")])  # a wiki struct in a file named imdb.mat
    with pytest.raises(DatasetError, match="no struct 'imdb'"):
        run_adapter("imdb_wiki", tmp_path, "imdb", {"variant": "imdb"}, labels=LABELS)


@pytest.mark.parametrize("name", ["wiki", "imdb"])
def test_full_profile_imdb_wiki_uses_serengils_filter(tmp_path, name):
    """face_score >= 3, no second face, 0 < age <= 100 (serengil's 22,578 wiki faces)."""
    born = datenum(1950, 6, 1)
    photos = [
        photo("score_3.jpg", score=3.0, dob=born, taken=1990),
        photo("score_2.9.jpg", score=2.9, dob=born, taken=1990),
        photo("second_face.jpg", second=0.5, dob=born, taken=1990),
        photo("age_0.jpg", dob=born, taken=1950),
        photo("age_1.jpg", dob=born, taken=1951),
        photo("age_100.jpg", dob=born, taken=2050),
        photo("age_101.jpg", dob=born, taken=2051),
    ]
    photos = [{**p, "celeb_id": i + 1, "name": f"p{i}"} for i, p in enumerate(photos)]
    save_imdb_wiki_mat(tmp_path / f"{name}_crop" / f"{name}.mat", name, photos)
    for p in photos:
        write_jpg(tmp_path / f"{name}_crop" / p["path"])
    result = read_full_profile_dataset(name, tmp_path)
    assert sorted(row["id"].rsplit("/", 1)[-1] for row in result.rows) == ["age_1.jpg", "age_100.jpg", "score_3.jpg"]
    assert reasons(result) == {"score_2.9.jpg": "face_score_low", "second_face.jpg": "second_face",
                               "age_0.jpg": "age_out_of_range", "age_101.jpg": "age_out_of_range"}


def test_a_photo_with_several_faults_gets_the_first_reason_in_order_with_the_labels_read(tmp_path):
    """bad_date, age_out_of_range, gender_missing, no_face, face_score_low, second_face, image_missing."""
    photos = [
        photo("date_and_gender.jpg", dob=np.nan, gender=np.nan),
        photo("age_and_face.jpg", dob=datenum(1880, 1, 1), score=-np.inf),
        photo("gender_and_face.jpg", gender=np.nan, score=-np.inf),
        photo("face_and_second.jpg", score=-np.inf, second=4.0),
        photo("score_and_missing.jpg", gender=0.0, score=0.5),
        photo("not_a_year.jpg", taken=0),
        photo("three_numbers.jpg", box=[1.0, 2.0, 3.0]),
    ]
    save_imdb_wiki_mat(tmp_path / "wiki.mat", "wiki", photos)
    for p in photos:
        if p["path"] != "17/score_and_missing.jpg":
            write_jpg(tmp_path / p["path"])
    result = run_adapter("imdb_wiki", tmp_path, "wiki", {"variant": "wiki"}, labels=LABELS)
    assert result.rows == []
    rejects = {r["path"].rsplit("/", 1)[-1]: r for r in result.rejects}
    assert reasons(result) == {"date_and_gender.jpg": "bad_date", "age_and_face.jpg": "age_out_of_range",
                               "gender_and_face.jpg": "gender_missing", "face_and_second.jpg": "no_face",
                               "score_and_missing.jpg": "face_score_low", "not_a_year.jpg": "bad_date",
                               "three_numbers.jpg": "no_face"}
    assert "age" not in rejects["date_and_gender.jpg"] and rejects["age_and_face.jpg"]["age"] == 2009 - 1880
    assert (rejects["gender_and_face.jpg"]["age"], "gender" in rejects["gender_and_face.jpg"]) == (28, False)
    assert (rejects["score_and_missing.jpg"]["age"], rejects["score_and_missing.jpg"]["gender"]) == (28, "female")


def test_a_photo_listed_twice_gets_a_second_id(tmp_path):
    save_imdb_wiki_mat(tmp_path / "wiki.mat", "wiki", [photo("a.jpg"), photo("b.jpg"), photo("a.jpg", gender=0.0)])
    write_jpg(tmp_path / "17" / "a.jpg")
    write_jpg(tmp_path / "17" / "b.jpg")
    result = run_adapter("imdb_wiki", tmp_path, "wiki", {"variant": "wiki"}, labels=LABELS)
    assert [(r["id"], r["gender"]) for r in result.rows] == [
        ("wiki/17/a.jpg", "male"), ("wiki/17/b.jpg", "male"), ("wiki/17/a.jpg#1", "female")]


def test_a_damaged_mat_is_a_dataset_error_saying_download_it_again(tmp_path):
    (tmp_path / "wiki_crop").mkdir()
    (tmp_path / "wiki_crop" / "wiki.mat").write_bytes(b"MATLAB 5.0 MAT-file, cut off")
    with pytest.raises(DatasetError, match=r"wiki\.mat cannot be read as a MATLAB file .*download it again"):
        run_adapter("imdb_wiki", tmp_path, "wiki", {"variant": "wiki"}, labels=LABELS)


def test_a_struct_missing_a_field_or_with_uneven_fields_is_refused(tmp_path):
    save_imdb_wiki_mat(tmp_path / "wiki.mat", "wiki", [photo("a.jpg"), photo("b.jpg")])
    mat = scipy.io.loadmat(tmp_path / "wiki.mat")
    assert [r.full_path for r in records_from_mat(mat, "wiki")] == ["17/a.jpg", "17/b.jpg"]
    with pytest.raises(DatasetError, match=r"the imdb struct lacks fields \['celeb_id'\]"):
        records_from_mat({"imdb": mat["wiki"]}, "imdb")
    struct = np.ravel(mat["wiki"])[0]
    struct["dob"] = np.array([[datenum(1981, 5, 5)]])  # one birth date for two photos
    with pytest.raises(DatasetError, match="fields have different lengths: dob 1, photo_taken 2"):
        records_from_mat(mat, "wiki")
