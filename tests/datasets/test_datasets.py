"""Dataset adapters on files built here in each dataset's real format, plus property tests."""

import hashlib
from collections import Counter
from datetime import date
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
from hypothesis import given
from hypothesis import strategies as st

from stages.lib.datasets import OptionsError, parse_options, run_adapter
from stages.lib.datasets.common import DatasetError, Rejected, list_files
from stages.lib.datasets.fairface import band_age
from stages.lib.datasets.imdb_wiki import birth_year
from stages.lib.datasets.synthetic import SyntheticOptions, draw_face, parse_group, plan_faces
from stages.lib.datasets.utkface import landmark_box, parse_landmark_line, parse_utkface_name
from stages.lib.core.labels import GENDERS, RACES, LabelError, normalise_age, normalise_gender, normalise_race
from stages.lib.core.params import Labels

LABELS = Labels(min_age=0, max_age=100)


def write_jpg(path: Path, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(".jpg", np.full((size, size, 3), 128, np.uint8))
    path.write_bytes(encoded.tobytes())  # JPEG bytes whatever the name says


def reasons(result) -> dict[str, str]:
    """file name -> reason code of every reject."""
    return {r["path"].rsplit("/", 1)[-1]: r["reason"].split(":")[0] for r in result.rejects}


# ---------------------------------------------------------------- IMDB-Wiki


def datenum(year: int, month: int, day: int) -> float:
    """MATLAB's datenum of a date (datenum(1981,5,5) = 723671 in MATLAB)."""
    return float(date(year, month, day).toordinal() + 366)


def save_imdb_wiki_mat(path: Path, variant: str, photos: list[dict]) -> None:
    """A .mat laid out like the real wiki.mat/imdb.mat: a 1x1 struct whose fields are 1xN arrays."""
    n = len(photos)

    def cells(values) -> np.ndarray:
        array = np.empty((1, n), dtype=object)
        for i, value in enumerate(values):
            array[0, i] = value
        return array

    fields = {
        "dob": np.array([[p["dob"] for p in photos]], dtype=float),
        "photo_taken": np.array([[p["taken"] for p in photos]], dtype=np.uint16),
        "full_path": cells(np.array([p["path"]]) for p in photos),
        "gender": np.array([[p["gender"] for p in photos]], dtype=float),
        "name": cells(np.array([p["name"]]) if p["name"] else np.empty((0,), dtype="<U1") for p in photos),
        "face_location": cells(np.array([p.get("box", [10.0, 20.0, 50.0, 80.0])], dtype=float) for p in photos),
        "face_score": np.array([[p.get("score", 4.0) for p in photos]], dtype=float),
        "second_face_score": np.array([[p.get("second", np.nan) for p in photos]], dtype=float),
    }
    if variant == "imdb":
        names = sorted({p["name"] for p in photos})
        celeb_names = np.empty((1, len(names)), dtype=object)  # 1xM: one per celebrity, not per photo
        for i, name in enumerate(names):
            celeb_names[0, i] = np.array([name])
        fields["celeb_names"] = celeb_names
        fields["celeb_id"] = np.array([[p["celeb_id"] for p in photos]], dtype=np.uint16)
    struct = np.empty((1, 1), dtype=[(name, object) for name in fields])
    for name, value in fields.items():
        struct[0, 0][name] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {variant: struct})


def photo(name_in_path: str, **overrides) -> dict:
    base = {"dob": datenum(1981, 5, 5), "taken": 2009, "gender": 1.0, "name": "Ann Example",
            "path": f"17/{name_in_path}", "celeb_id": 7}
    return {**base, **overrides}


def test_birth_year_reads_matlab_datenums():
    assert birth_year(723671.0) == 1981  # datenum(1981, 5, 5)
    assert birth_year(datenum(1900, 1, 1) + 0.6) == 1900  # fractional days are times of day
    for bad in [float("nan"), float("-inf"), 0.0, 366.0, 1e12]:
        with pytest.raises(ValueError):
            birth_year(bad)


@pytest.fixture
def wiki_folder(tmp_path) -> Path:
    root = tmp_path / "raw" / "wiki"
    photos = [
        photo("good_male.jpg", box=[111.3, 111.3, 252.7, 262.7]),
        photo("good_female.jpg", gender=0.0, name="", dob=datenum(1990, 12, 31), taken=2010),
        photo("no_gender.jpg", gender=np.nan),
        photo("odd_gender.jpg", gender=0.5),
        photo("no_face.jpg", score=-np.inf),
        photo("weak_face.jpg", score=0.4),
        photo("two_faces.jpg", second=2.5),
        photo("missing.jpg"),
        photo("empty.jpg"),
        photo("bad_dob.jpg", dob=np.nan),
        photo("too_old.jpg", dob=datenum(1880, 1, 1)),
    ]
    save_imdb_wiki_mat(root / "wiki_crop" / "wiki.mat", "wiki", photos)
    for p in photos:
        if p["path"].endswith(("missing.jpg", "empty.jpg")):
            continue
        write_jpg(root / "wiki_crop" / p["path"])
    (root / "wiki_crop" / "17" / "empty.jpg").write_bytes(b"")
    return root


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


# ---------------------------------------------------------------- UTKFace aligned


def test_utkface_aligned_folder(tmp_path):
    root = tmp_path / "utkface"
    good = ["26_0_1_20170116174525125.jpg.chip.jpg", "1_1_4_20161221193016140.jpg.chip.jpg",
            "80_1_0_20170110131953974.jpg.chip.jpg"]
    for name in good:
        write_jpg(root / "UTKFace" / name)
    bad = {
        "39_1_20170116174525125.jpg.chip.jpg": "name_unparsed",   # real: race field missing
        "61_1_20170109150557335.jpg.chip.jpg": "name_unparsed",
        "30_3_0_20170116174525125.jpg.chip.jpg": "label_invalid",  # gender 3
        "30_0_7_20170116174525125.jpg.chip.jpg": "label_invalid",  # race 7
        "x_0_0_20170116174525125.jpg.chip.jpg": "label_invalid",
        "116_0_0_20170116174525125.jpg.chip.jpg": "age_out_of_range",
        "26_0_1_20170116174525125.jpg": "wrong_version",           # an in-the-wild name
        "notes.txt": "not_an_image",
    }
    for name in bad:
        write_jpg(root / "UTKFace" / name)
    (root / "UTKFace" / "22_1_2_20170116174525125.jpg.chip.jpg").write_bytes(b"")
    bad["22_1_2_20170116174525125.jpg.chip.jpg"] = "image_empty"
    (root / "UTKFace.tar.gz").write_bytes(b"archive the download stage extracted")

    result = run_adapter("utkface", root, "utkface", {"version": "aligned"}, labels=LABELS)

    assert reasons(result) == bad
    rows = sorted(result.rows, key=lambda r: r["age"])
    assert [(r["age"], r["gender"], r["race"]) for r in rows] == [(1, "female", "others"), (26, "male", "black"),
                                                                    (80, "female", "white")]
    assert all(r["cropped"] and r["box"] is None for r in rows)
    assert rows[1]["id"] == "utkface/UTKFace/26_0_1_20170116174525125.jpg.chip.jpg"
    assert len(result.rows) + len(result.rejects) == len(list_files(root)) - 1  # all but the archive


def test_utkface_without_images_says_what_to_do(tmp_path):
    (tmp_path / "UTKFace.tar.gz").write_bytes(b"x")
    with pytest.raises(DatasetError, match="no UTKFace images"):
        run_adapter("utkface", tmp_path, "utkface", {}, labels=LABELS)


# ---------------------------------------------------------------- UTKFace in the wild


def landmark_line(name: str, xs: range, ys: range) -> str:
    points = [(xs.start + i % len(xs), ys.start + (7 * i) % len(ys)) for i in range(68)]
    points[0], points[1] = (xs.start, ys.start), (xs.stop - 1, ys.stop - 1)
    return name + " " + " ".join(f"{x} {y}" for x, y in points) + " \n"  # the real lists end lines with a space


def test_utkface_wild_boxes_from_landmarks(tmp_path):
    root = tmp_path / "utkface"
    names = ["25_0_0_20170104165545457.jpg", "40_1_1_20170112192327484.jpg", "50_0_2_20170112192327484.jpg",
             "33_1_3_20170104165545457.jpg"]
    write_jpg(root / "part1" / names[0])
    write_jpg(root / "part1" / names[1])
    write_jpg(root / "part2" / names[2])
    write_jpg(root / "part3" / names[3])
    (root / "landmark_list_part1.txt").write_text(
        landmark_line(names[0], range(-4, 120), range(60, 200)) + landmark_line(names[1], range(10, 50), range(5, 40)))
    (root / "landmark_list_part2.txt").write_text(f"{names[2]} 1 2 3\n")  # a damaged line

    result = run_adapter("utkface", root, "utkface", {"version": "wild"}, labels=LABELS)

    assert result.rejects == []
    rows = {row["id"].rsplit("/", 1)[-1]: row for row in result.rows}
    assert rows[names[0]]["box"] == [-4.0, 60.0, 123.0, 139.0]
    assert rows[names[1]]["box"] == [10.0, 5.0, 39.0, 34.0]
    assert rows[names[2]]["box"] is None and "landmark_list_part2.txt line 1" in rows[names[2]]["source_meta"]
    assert rows[names[3]]["box"] is None and "no landmarks" in rows[names[3]]["source_meta"]
    assert not any(row["cropped"] for row in result.rows)


def test_landmark_line_parsing():
    name, points = parse_landmark_line(landmark_line("1_0_0_2017.jpg", range(0, 10), range(0, 10)))
    assert name == "1_0_0_2017.jpg" and points.shape == (68, 2)
    assert landmark_box(np.array([[1, 2], [5, 3], [2, 9]])) == [1.0, 2.0, 4.0, 7.0]
    for bad in ["x.jpg 1 2", "x.jpg " + " ".join(["a"] * 136)]:
        with pytest.raises(ValueError):
            parse_landmark_line(bad)


# ---------------------------------------------------------------- name parser and labels, by property

DATETIME = st.text(alphabet="0123456789", min_size=17, max_size=17)


@given(age=st.integers(0, 130), gender=st.integers(0, 1), race=st.integers(0, 4), taken=DATETIME,
       aligned=st.booleans())
def test_utkface_names_round_trip(age, gender, race, taken, aligned):
    name = f"{age}_{gender}_{race}_{taken}.jpg" + (".chip.jpg" if aligned else "")
    parsed = parse_utkface_name(name)
    assert (parsed.age, parsed.gender, parsed.race, parsed.taken, parsed.aligned) == (
        age, GENDERS[gender], RACES[race], taken, aligned)


@given(st.text(max_size=40))
def test_utkface_name_parser_never_crashes(name):
    try:
        parsed = parse_utkface_name(name)
    except Rejected as rejected:
        assert rejected.code in {"not_an_image", "name_unparsed", "label_invalid"}
    else:
        assert parsed.gender in GENDERS and parsed.race in RACES and parsed.age >= 0


@given(age=st.integers(0, 130), gender=st.integers(0, 1), taken=DATETIME)
def test_utkface_names_missing_a_field_are_rejected(age, gender, taken):
    with pytest.raises(Rejected) as caught:
        parse_utkface_name(f"{age}_{gender}_{taken}.jpg.chip.jpg")
    assert caught.value.code == "name_unparsed"


def code_spellings(code: int):
    return [code, str(code), float(code), f"{code}.0", np.int64(code)]


@given(st.integers(0, 1))
def test_gender_codes_in_any_spelling(code):
    assert {normalise_gender(v) for v in code_spellings(code)} == {GENDERS[code]}
    assert normalise_gender(GENDERS[code].upper()) == GENDERS[code]


@given(st.integers(0, 4))
def test_race_codes_in_any_spelling(code):
    assert {normalise_race(v) for v in code_spellings(code)} == {RACES[code]}
    assert normalise_race(f" {RACES[code].title()} ") == RACES[code]


@given(st.integers().filter(lambda c: c not in (0, 1)))
def test_other_gender_codes_are_refused(code):
    with pytest.raises(LabelError):
        normalise_gender(code)


@given(st.integers().filter(lambda c: not 0 <= c <= 4))
def test_other_race_codes_are_refused(code):
    with pytest.raises(LabelError):
        normalise_race(str(code))


@given(st.one_of(st.text(max_size=20), st.floats(allow_nan=True, allow_infinity=False), st.none(), st.integers()))
def test_label_normalisers_accept_or_raise_label_error(value):
    for normalise, vocabulary in [(normalise_gender, GENDERS), (normalise_race, RACES)]:
        try:
            assert normalise(value) in vocabulary
        except LabelError:
            pass
    try:
        age = normalise_age(value)
    except LabelError:
        pass
    else:
        assert isinstance(age, int) and age >= 0 and age == float(value)


@pytest.mark.parametrize("call", [
    lambda: normalise_gender(float("inf")), lambda: normalise_race("-inf"),
    lambda: parse_utkface_name("26_inf_0_20170116174525125.jpg"),  # a file name must never crash prepare
])
def test_infinite_codes_are_refused(call):
    with pytest.raises((LabelError, Rejected)):
        call()


@given(st.integers(0, 150))
def test_ages_in_any_spelling(age):
    assert {normalise_age(v) for v in [age, str(age), float(age), f"{age}.0"]} == {age}


@given(st.floats(0, 150).filter(lambda f: f != int(f)))
def test_fractional_ages_are_refused(value):
    with pytest.raises(LabelError):
        normalise_age(value)


# ---------------------------------------------------------------- FairFace


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


# ---------------------------------------------------------------- folder


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


# ---------------------------------------------------------------- options


def test_options_errors_name_the_key():
    with pytest.raises(OptionsError) as caught:
        parse_options("imdb_wiki", "wiki", {"variant": "wikipedia", "min_score": 1})
    message = str(caught.value)
    assert "datasets.wiki.options.variant" in message and "datasets.wiki.options.min_score: unknown option" in message
    with pytest.raises(OptionsError, match=r"datasets\.utkface\.options\.version"):
        parse_options("utkface", "utkface", {"version": "cropped"})
    with pytest.raises(OptionsError, match=r"datasets\.synthetic\.options\.underrepresent\.group: .*'purple'"):
        parse_options("synthetic", "synthetic", {"underrepresent": {"group": "purple*female", "fraction": 0.5}})


def test_adapter_defaults():
    assert parse_options("fairface", "f", {}).split == "both"
    assert parse_options("imdb_wiki", "w", {"variant": "wiki"}).max_second_face_score is None
    synthetic = parse_options("synthetic", "s", None)
    assert synthetic.underrepresent.group == synthetic.hard_labels.group == "black*female"


# ---------------------------------------------------------------- synthetic


def test_group_specs():
    group = parse_group("Black*female")
    assert group.matches(30, "female", "black") and not group.matches(30, "male", "black")
    old = parse_group("61+")
    assert old.matches(61, "male", "white") and not old.matches(60, "male", "white")
    band = parse_group("asian*16-30")
    assert band.matches(16, "female", "asian") and not band.matches(31, "female", "asian")
    for bad in ["black*white", "30-20", "61+*16-30", "tall"]:
        with pytest.raises(ValueError):
            parse_group(bad)


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_synthetic_is_seeded(tmp_path):
    options = {"n": 40, "image_size": 64, "seed": 3}
    first = run_adapter("synthetic", tmp_path / "a", "synthetic", options, labels=LABELS)
    second = run_adapter("synthetic", tmp_path / "b", "synthetic", options, labels=LABELS)
    other = run_adapter("synthetic", tmp_path / "c", "synthetic", {**options, "seed": 4}, labels=LABELS)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") and len(digest(tmp_path / "a")) == 40
    assert [r["id"] for r in first.rows] == [r["id"] for r in second.rows]
    assert digest(tmp_path / "a") != digest(tmp_path / "c")
    assert [(r["age"], r["box"]) for r in other.rows] != [(r["age"], r["box"]) for r in first.rows]
    assert [r["box"] for r in first.rows] == [r["box"] for r in second.rows]
    image = cv2.imread(first.rows[0]["path"])
    assert image.shape == (64, 64, 3)
    x, y, w, h = first.rows[0]["box"]
    assert 0 <= x and 0 <= y and x + w <= 64 and y + h <= 64 and w > 10 and h > 10
    assert not any(r["cropped"] for r in first.rows)


def test_synthetic_folder_holds_only_this_runs_faces(tmp_path):
    run_adapter("synthetic", tmp_path, "synthetic", {"n": 12, "image_size": 48}, labels=LABELS)
    (tmp_path / "keep.txt").write_text("not ours")
    result = run_adapter("synthetic", tmp_path, "synthetic", {"n": 5, "image_size": 48}, labels=LABELS)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([r["path"].rsplit("/", 1)[-1] for r in result.rows] + ["keep.txt"])


def test_planted_underrepresentation_shows_in_counts():
    faces = plan_faces(SyntheticOptions(n=3000), LABELS)
    cells = Counter((f.race, f.gender) for f in faces)
    others = [count for cell, count in cells.items() if cell != ("black", "female")]
    assert len(faces) == 3000 and len(cells) == 10
    share = cells[("black", "female")] / np.mean(others)
    assert 0.38 < share < 0.62  # fraction 0.5 of a fair share
    unplanted = plan_faces(SyntheticOptions(n=3000, underrepresent=None), LABELS)
    assert Counter((f.race, f.gender) for f in unplanted)[("black", "female")] > 0.8 * np.mean(others)


def test_planted_hard_labels_move_only_the_group():
    faces = plan_faces(SyntheticOptions(n=1500), LABELS)
    gaps = {key: [f.drawn_age - f.age for f in faces if (f.race, f.gender) == key] for key in
            {(f.race, f.gender) for f in faces}}
    assert np.mean(gaps[("black", "female")]) > 15
    assert all(not any(gap) for key, gap in gaps.items() if key != ("black", "female"))


def test_synthetic_ages_stay_in_the_labels_range():
    faces = plan_faces(SyntheticOptions(n=500), Labels(min_age=16, max_age=70))
    ages = [f.age for f in faces]
    assert min(ages) >= 16 and max(ages) <= 70 and sum(a >= 61 for a in ages) > 0
    with pytest.raises(DatasetError, match="leaves no age to draw"):
        plan_faces(SyntheticOptions(n=5), Labels(min_age=95, max_age=120))


def test_drawn_faces_change_with_age_and_gender():
    """Old faces have grey hair and coarser skin; women's lips are red, men's are not."""
    from stages.lib.datasets.synthetic import Face

    def regions(age, gender):
        """Mean hair brightness (top of the head box), skin roughness (cheeks) and lip redness, over faces."""
        hair, rough, red = [], [], []
        for index in range(12):
            image, (x, y, w, h) = draw_face(Face(index, age, gender, "asian", age), 96, 0)
            image = image.astype(float)
            cols = slice(int(x + 0.3 * w), int(x + 0.7 * w))
            hair.append(image[int(y) + 1:int(y + 0.12 * h), cols].mean())
            rough.append(np.abs(np.diff(image[int(y + 0.62 * h):int(y + 0.68 * h), cols], axis=1)).mean())
            mouth_y, cx = int(y + 0.75 * h), int(x + w / 2)
            lips = image[mouth_y - 1:mouth_y + 2, cx - 3:cx + 4]
            red.append((lips[..., 2] - lips[..., 1]).mean())  # BGR
        return np.mean(hair), np.mean(rough), np.mean(red)

    young, old = regions(20, "female"), regions(80, "female")
    assert old[0] > young[0] + 80      # grey hair
    assert old[1] > young[1] * 2       # coarser skin
    assert young[2] > regions(20, "male")[2] + 40  # red lips


# ---------------------------------------------------------------- the real files in ../shared

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


def shared_folder(name: str) -> Path:
    folder = SHARED / name
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent: the real UTKFace/FairFace samples live in ../shared/datasets beside the repo")
    return folder


@pytest.mark.shared
def test_real_utkface_aligned_sample():
    folder = shared_folder("utkface-aligned-sample")
    result = run_adapter("utkface", folder, "utkface", {"version": "aligned"}, labels=Labels(min_age=0, max_age=120))
    assert len(result.rows) == 5000 and len(result.rejects) == 2
    assert {r["path"].rsplit("/", 1)[-1] for r in result.rejects} == {
        "39_1_20170116174525125.jpg.chip.jpg", "61_1_20170109142408075.jpg.chip.jpg"}
    assert all(r["reason"].startswith("name_unparsed: ") for r in result.rejects)
    assert len({r["id"] for r in result.rows}) == 5000
    # The study's range (default 0..100) also rejects the few centenarians above 100, with that reason.
    default = run_adapter("utkface", folder, "utkface", {}, labels=LABELS)
    over_100 = sum(int(p.name.split("_")[0]) > 100 for p in folder.iterdir())
    codes = Counter(r["reason"].split(":")[0] for r in default.rejects)
    assert codes == {"name_unparsed": 2, "age_out_of_range": over_100} and over_100 > 0


@pytest.mark.shared
def test_real_fairface_sample():
    folder = shared_folder("fairface-sample")
    result = run_adapter("fairface", folder, "fairface", {}, labels=LABELS)
    assert len(result.rows) == 3000 and result.rejects == []
    assert set(r["race"] for r in result.rows) == set(RACES)
    assert set(r["race_source"] for r in result.rows) == {
        "White", "Black", "East Asian", "Southeast Asian", "Indian", "Middle Eastern", "Latino_Hispanic"}
    assert all(Path(r["path"]).is_file() for r in result.rows[:50])


# ---------------------------------------------------------------- options every adapter takes


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


# ---------------------------------------------------------------- the full profile follows the study


def full_profile():
    import yaml

    from stages.lib.core.params import validate

    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())
    return validate({**raw, "profile": "full"})


def read_full_profile_dataset(name: str, root: Path):
    """`name` as the full profile reads it: its adapter and options, the params' labels."""
    params = full_profile()
    dataset = params.datasets[name]
    return run_adapter(dataset.adapter, root, name, dataset.options, labels=params.labels)


def test_full_profile_utkface_in_the_wild_starts_at_17(tmp_path):
    """The study's in-the-wild tables hold no one under 17 and no one over 100 (its training cut)."""
    names = ["16_0_0_20170104165545457.jpg", "17_0_0_20170104165545458.jpg", "100_1_0_20170104165545459.jpg",
             "101_1_0_20170104165545460.jpg"]
    for name in names:
        write_jpg(tmp_path / "part1" / name)
    result = read_full_profile_dataset("utkface_wild", tmp_path)
    assert sorted(row["age"] for row in result.rows) == [17, 100]
    assert reasons(result) == {names[0]: "age_out_of_range", names[3]: "age_out_of_range"}


def test_full_profile_utkface_aligned_keeps_ages_from_1(tmp_path):
    names = ["0_0_0_20170104165545457.jpg.chip.jpg", "1_0_0_20170104165545458.jpg.chip.jpg",
             "16_1_2_20170104165545459.jpg.chip.jpg"]
    for name in names:
        write_jpg(tmp_path / name)
    result = read_full_profile_dataset("utkface", tmp_path)
    assert sorted(row["age"] for row in result.rows) == [1, 16]
    assert reasons(result) == {names[0]: "age_out_of_range"}


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


def test_full_profile_runs_both_utkface_versions_and_a_held_out_imdb():
    """R2 from the aligned chips, R3-R14 from the in-the-wild photos (the finetune set); wiki's figures
    are in-sample for the published weights, imdb's are not, and imdb is sampled."""
    params = full_profile()
    versions = {name: params.datasets[name].options.get("version", "aligned")
                for name in params.roles.evaluate if params.datasets[name].adapter == "utkface"}
    assert sorted(versions.values()) == ["aligned", "wild"]
    assert params.datasets[params.roles.finetune].options["version"] == "wild"
    assert params.datasets[params.roles.pretrain].published_in_sample
    held_out = [name for name in params.roles.evaluate
                if params.datasets[name].adapter == "imdb_wiki" and not params.datasets[name].published_in_sample]
    assert [params.datasets[name].options["variant"] for name in held_out] == ["imdb"]
    assert params.datasets[held_out[0]].options["sample"] >= 1000


def test_both_utkface_releases_name_the_same_photo(tmp_path):
    write_jpg(tmp_path / "aligned" / "26_0_1_20170116174525125.jpg.chip.jpg")
    write_jpg(tmp_path / "wild" / "part1" / "26_0_1_20170116174525125.jpg")
    aligned = run_adapter("utkface", tmp_path / "aligned", "utkface", {"version": "aligned"}, labels=LABELS)
    wild = run_adapter("utkface", tmp_path / "wild", "utkface_wild", {"version": "wild"}, labels=LABELS)
    assert aligned.rows[0]["photo"] == wild.rows[0]["photo"] == "26_0_1_20170116174525125.jpg"
