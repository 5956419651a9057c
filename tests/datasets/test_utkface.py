"""The UTKFace adapter (aligned chips and in-the-wild photos) and its file-name parser, by property too."""

from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stages.lib.datasets import run_adapter
from stages.lib.datasets.common import DatasetError, Rejected, list_files
from stages.lib.datasets.utkface import landmark_box, parse_landmark_line, parse_landmark_list, parse_utkface_name
from stages.lib.core.labels import GENDERS, RACES
from stages.lib.core.params import Labels
from tests.datasets.raw_files import LABELS, read_full_profile_dataset, reasons, shared_folder, write_jpg


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


def test_both_utkface_releases_name_the_same_photo(tmp_path):
    write_jpg(tmp_path / "aligned" / "26_0_1_20170116174525125.jpg.chip.jpg")
    write_jpg(tmp_path / "wild" / "part1" / "26_0_1_20170116174525125.jpg")
    aligned = run_adapter("utkface", tmp_path / "aligned", "utkface", {"version": "aligned"}, labels=LABELS)
    wild = run_adapter("utkface", tmp_path / "wild", "utkface_wild", {"version": "wild"}, labels=LABELS)
    assert aligned.rows[0]["photo"] == wild.rows[0]["photo"] == "26_0_1_20170116174525125.jpg"


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


def test_utkface_rejects_keep_the_labels_read_before_the_refusal(tmp_path):
    for name in ["30_1_7_20170116174525125.jpg.chip.jpg", "116_0_2_20170116174525125.jpg.chip.jpg",
                 "45_1_3_20170116174525125.jpg"]:
        write_jpg(tmp_path / name)
    result = run_adapter("utkface", tmp_path, "utkface", {"version": "aligned"}, labels=LABELS)
    labels = {r["path"].rsplit("/", 1)[-1].split("_")[0]: (r["reason"].split(":")[0], r.get("age"), r.get("gender"),
                                                           r.get("race")) for r in result.rejects}
    assert labels == {"30": ("label_invalid", 30, "female", None), "116": ("age_out_of_range", 116, "male", "asian"),
                      "45": ("wrong_version", 45, "female", "indian")}


def test_the_wild_release_refuses_aligned_chips_and_skips_its_companions(tmp_path):
    write_jpg(tmp_path / "part1" / "25_0_0_20170104165545457.jpg")
    write_jpg(tmp_path / "part1" / "26_0_1_20170116174525125.jpg.chip.jpg")
    (tmp_path / "part1.tar.gz").write_bytes(b"the archive the download stage extracted")
    (tmp_path / "Landmark_List_part1.txt").write_text("")
    result = run_adapter("utkface", tmp_path, "utkface_wild", {"version": "wild"}, labels=LABELS)
    assert [r["photo"] for r in result.rows] == ["25_0_0_20170104165545457.jpg"]
    assert reasons(result) == {"26_0_1_20170116174525125.jpg.chip.jpg": "wrong_version"}


def test_a_landmark_list_keys_photos_by_name_and_reports_damaged_lines_by_number():
    text = "\n".join([
        landmark_line("1_0_0_2017.jpg.chip.jpg", range(0, 10), range(5, 20)).rstrip(),
        "",
        "2_1_1_2017.jpg 4 5 6",
        landmark_line("3_1_2_2017.jpg", range(2, 4), range(0, 30)).rstrip(),
    ])
    boxes, problems = parse_landmark_list(text, "landmark_list_part1.txt")
    assert boxes == {"1_0_0_2017.jpg": [0.0, 5.0, 9.0, 14.0], "3_1_2_2017.jpg": [2.0, 0.0, 1.0, 29.0]}
    assert problems == {"2_1_1_2017.jpg": "landmark_list_part1.txt line 3: expected a file name and 136 numbers, "
                                          "got 4 fields"}


@pytest.mark.parametrize("age", ["²", "1²", "⁴⁵"], ids=["superscript", "mixed", "two superscripts"])
def test_an_age_field_of_other_digit_characters_is_a_rejected_row_not_a_crash(tmp_path, age):
    """str.isdigit accepts superscripts, which are no number: the row is refused, the others are read."""
    write_jpg(tmp_path / f"{age}_0_0_20170116174525125.jpg.chip.jpg")
    write_jpg(tmp_path / "30_1_0_20170116174525125.jpg.chip.jpg")
    for adapter in ["utkface", "folder"]:
        result = run_adapter(adapter, tmp_path, "u", {}, labels=LABELS)
        assert [r["age"] for r in result.rows] == [30]
        assert [r["reason"].split(":")[0] for r in result.rejects] == ["label_invalid"]
