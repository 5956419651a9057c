import numpy as np
import pytest

from stages.lib.core.labels import LabelError, age_band, band_labels, normalise_age, normalise_gender, normalise_race


@pytest.mark.parametrize("value, expected", [
    (0, "male"), (1, "female"), ("0", "male"), ("1.0", "female"), (0.0, "male"), (np.float64(1.0), "female"),
    ("Male", "male"), ("F", "female"), (" woman ", "female"), ("MAN", "male"),
])
def test_gender_codes_and_words(value, expected):
    assert normalise_gender(value) == expected


@pytest.mark.parametrize("value", [2, "1.5", "x", None, float("nan"), "", True])
def test_gender_refuses(value):
    with pytest.raises(LabelError):
        normalise_gender(value)


@pytest.mark.parametrize("value, expected", [
    (0, "white"), ("1", "black"), (2.0, "asian"), ("3.0", "indian"), (4, "others"),
    ("East Asian", "asian"), ("Southeast Asian", "asian"), ("Latino_Hispanic", "others"),
    ("Middle Eastern", "others"), ("White", "white"), ("Black", "black"), ("Indian", "indian"),
])
def test_race_codes_and_words(value, expected):
    assert normalise_race(value) == expected


@pytest.mark.parametrize("value", [5, -1, "martian", None, float("nan")])
def test_race_refuses(value):
    with pytest.raises(LabelError):
        normalise_race(value)


def test_age_accepts_whole_numbers_only():
    assert normalise_age("26") == 26 and normalise_age(26.0) == 26 and normalise_age(116) == 116
    for bad in [-1, 2.5, "abc", None, float("inf")]:
        with pytest.raises(LabelError):
            normalise_age(bad)


def test_band_labels_from_edges():
    assert band_labels([0, 16, 31, 46, 61]) == ["0-15", "16-30", "31-45", "46-60", "61+"]


def test_age_band_assigns_edges_to_the_band_they_open():
    bands = age_band([0, 15, 16, 30, 31, 60, 61, 116], [0, 16, 31, 46, 61])
    assert list(bands) == ["0-15", "0-15", "16-30", "16-30", "31-45", "46-60", "61+", "61+"]


def test_age_band_below_first_edge_is_missing():
    bands = age_band([10, 20], [16, 31])
    assert bands.isna().tolist() == [True, False]


def test_labelled_band_bounds_read_bands_as_datasets_write_them():
    import math

    from stages.lib.core.labels import labelled_band_bounds

    assert labelled_band_bounds("20-29") == (20, 29) and labelled_band_bounds(" 0 - 2 ") == (0, 2)
    assert labelled_band_bounds("more than 70") == (70, math.inf)
    for bad in ("29-20", "70+", "", None, 25):
        with pytest.raises(LabelError, match="is not `a-b` or `more than N`"):
            labelled_band_bounds(bad)
