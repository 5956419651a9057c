"""predictions.py: reading any table of age predictions into the predictions contract."""

import numpy as np
import pandas as pd
import pytest

from stages.lib.core.labels import LabelError
from stages.lib.core.schema import BAND_COLUMN, PREDICTION_COLUMNS
from stages.lib.evaluation.predictions import ColumnError, normalise_predictions, raw_utkface_fields


# ------------------------------------------------------------------------------------------------
# File names


@pytest.mark.parametrize("name, fields", [
    ("26_1_2_20170116174525125.jpg.chip.jpg", {"age": "26", "gender": "1", "race": "2"}),
    ("100_0_0_20170112213500903.jpg", {"age": "100", "gender": "0", "race": "0"}),
    ("UTKFace/part1/9_1_4_20170103.jpg", {"age": "9", "gender": "1", "race": "4"}),
    ("C:\\faces\\61_0_3_2017.jpg", {"age": "61", "gender": "0", "race": "3"}),
    ("39_1_20170116174525125.jpg.chip.jpg", {"age": "39", "gender": "1", "race": None}),   # real malformed name
])
def test_utkface_names(name, fields):
    assert raw_utkface_fields(name) == fields


@pytest.mark.parametrize("name", ["", None, float("nan"), "face.jpg", "x_1_2_3.jpg", "26_1.jpg"])
def test_names_that_are_not_utkface(name):
    with pytest.raises(LabelError):
        raw_utkface_fields(name)


# ------------------------------------------------------------------------------------------------
# Reading any table


def test_codes_floats_and_words_all_normalise():
    raw = pd.DataFrame({
        "age": [20, 30.0, "40", 50, 60, 70],
        "pred": [21, 29, 41, 52, 58, 66],
        "gender": [0, 1.0, "0.0", "M", "female", "F"],
        "race": [0, "1.0", 2.0, "Indian", "others", "East Asian"],
    })
    result = normalise_predictions(raw, {"age_pred": "pred"}, gender_codes="utkface")
    assert result.rejects.empty
    assert list(result.frame["gender"]) == ["male", "female", "male", "male", "female", "female"]
    assert result.gender_codes == "utkface" and "0 = male" in result.sources["gender"]
    assert list(result.frame["race"]) == ["white", "black", "asian", "indian", "others", "asian"]
    assert list(result.frame["age"]) == [20, 30, 40, 50, 60, 70]
    assert list(result.frame.columns) == PREDICTION_COLUMNS + [BAND_COLUMN, "cluster"]


def test_labels_come_from_file_names_when_label_columns_are_missing():
    raw = pd.DataFrame({"file": ["a/26_1_2_2017.jpg.chip.jpg", "70_0_0_2017.jpg", "39_1_2017011617.jpg"],
                        "prediction": [30.5, 50.0, 35.0], "extra": ["x", "y", "z"]})
    result = normalise_predictions(raw)
    assert result.rejects.empty
    assert list(result.frame["age"]) == [26, 70, 39]
    assert list(result.frame["gender"]) == ["female", "male", "female"]
    assert result.frame["race"].iloc[:2].tolist() == ["asian", "white"] and pd.isna(result.frame["race"].iloc[2])
    assert "file names" in result.sources["race"] and result.sources["age_pred"] == "column 'prediction'"
    assert any("no race" in note for note in result.notes)                 # kept, and said so


def test_unusable_rows_are_rejected_with_reasons_and_nothing_else_is_lost():
    raw = pd.DataFrame({"Age": [20, -3, 25.5, None, 30, 116],
                        "Gender": ["m", "f", "m", "f", "robot", 1],
                        "age_pred": [20, 20, 20, 20, "n/a", 80]})
    result = normalise_predictions(raw, gender_codes="utkface")
    assert len(result.frame) + len(result.rejects) == len(raw)
    reasons = dict(zip(result.rejects["row"], result.rejects["reason"]))
    assert set(reasons) == {1, 2, 3, 4}
    assert "whole non-negative" in reasons[1] and "missing" in reasons[3]
    assert "robot" in reasons[4] and "age prediction 'n/a' is not a number" in reasons[4]
    assert result.frame["age"].max() == 116                                 # no age filter unless asked
    assert "race" in result.skipped and "--race-col" in result.skipped["race"]


def test_age_filter_only_when_asked():
    raw = pd.DataFrame({"age": [10, 50, 110], "age_pred": [12, 50, 90]})
    result = normalise_predictions(raw, min_age=16, max_age=100)
    assert list(result.frame["age"]) == [50]
    assert sorted(result.rejects["reason"]) == ["age 10 below --min-age 16", "age 110 above --max-age 100"]


def test_columns_by_name_case_insensitive_and_refused_when_absent():
    raw = pd.DataFrame({"TRUE_AGE": [30], "Weighted_Avg": [31.5], "ArgMax": [30]})
    result = normalise_predictions(raw)
    assert result.frame.loc[0, "age_pred"] == 31.5 and result.frame.loc[0, "age_pred_argmax"] == 30
    with pytest.raises(ColumnError, match="--gender-col"):
        normalise_predictions(raw, {"gender": "sex"})
    with pytest.raises(ColumnError, match="--pred-col"):
        normalise_predictions(pd.DataFrame({"age": [1], "guess": [2]}))
    with pytest.raises(ColumnError, match="no true age"):
        normalise_predictions(pd.DataFrame({"age_pred": [2]}))


def test_gender_predictions_from_words_or_probability():
    raw = pd.DataFrame({"age": [20, 30, 40], "age_pred": [20, 30, 40], "gender": [0, 1, 1],
                        "gender_prob_female": [0.1, 0.8, np.nan]})
    result = normalise_predictions(raw, gender_codes="utkface")
    assert list(result.frame["gender_pred"]) == ["male", "female", None]
    words = normalise_predictions(raw.drop(columns="gender_prob_female").assign(predicted_gender=["F", "M", "x"],
                                                                                gender=["M", "F", "F"]))
    assert list(words.frame["gender_pred"]) == ["female", "male", None]
    assert any("unreadable" in note for note in words.notes)


def test_numeric_gender_is_never_guessed():
    raw = pd.DataFrame({"age": [20, 30], "age_pred": [21, 29], "gender": ["male", "female"], "gender_pred": [1, 0]})
    with pytest.raises(ColumnError, match="'gender_pred' holds numeric gender codes.*--gender-codes"):
        normalise_predictions(raw)
    with pytest.raises(ColumnError, match="'gender' holds numeric gender codes"):
        normalise_predictions(raw.assign(gender=[0.0, 1.0], gender_pred=["m", "f"]))
    deepface = normalise_predictions(raw, gender_codes="deepface")    # argmax over (Woman, Man): 1 = man
    assert list(deepface.frame["gender_pred"]) == ["male", "female"] and deepface.gender_codes == "deepface"
    assert "deepface: 0 = female, 1 = male" in deepface.sources["gender_pred"]
    utkface = normalise_predictions(raw, gender_codes="utkface")      # the same column read as UTKFace: inverted
    assert list(utkface.frame["gender_pred"]) == ["female", "male"]
    bad = normalise_predictions(raw.assign(gender=[2, 0], gender_pred=["m", "f"]), gender_codes="imdb_wiki")
    assert "gender code 2 is not one of imdb_wiki: 0 = female, 1 = male" in bad.rejects.loc[0, "reason"]
    words = normalise_predictions(raw.assign(gender_pred=["Woman", "Man"]))
    assert words.gender_codes is None and list(words.frame["gender_pred"]) == ["female", "male"]


def test_file_names_are_utkface_codes_whatever_the_flag():
    raw = pd.DataFrame({"filename": ["26_1_2_2017.jpg", "70_0_0_2017.jpg"], "age_pred": [30, 60]})
    for codes in (None, "imdb_wiki"):
        assert list(normalise_predictions(raw, gender_codes=codes).frame["gender"]) == ["female", "male"]


def test_a_wholly_empty_label_column_counts_as_absent():
    raw = pd.DataFrame({"age": [20, 30], "age_pred": [21, 29], "race": [None, None]})
    result = normalise_predictions(raw)
    assert result.rejects.empty and "race" in result.skipped


def test_disagreement_between_columns_and_file_names_is_reported():
    raw = pd.DataFrame({"age": [26, 30], "age_pred": [25, 31], "filename": ["26_0_1_x.jpg", "31_0_1_x.jpg"]})
    result = normalise_predictions(raw)
    assert any("1 rows: age" in note for note in result.notes)
