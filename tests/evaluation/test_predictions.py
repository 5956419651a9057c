"""predictions.py: reading any table of age predictions into the predictions contract."""

import numpy as np
import pandas as pd
import pytest

from stages.lib.core.errors import UserError
from stages.lib.core.labels import LabelError
from stages.lib.core.schema import BAND_COLUMN, PREDICTION_COLUMNS
from stages.lib.evaluation.predictions import (ColumnError, describe_codes, gender_reader, holds_codes,
                                              labels_from_file_names, normalise_predictions, raw_utkface_fields,
                                              read_table, resolve_columns)


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


# ------------------------------------------------------------------------------------------------
# Beyond the moved tests


def test_a_table_without_predictions_is_refused_with_one_line_naming_the_flag_and_the_columns():
    with pytest.raises(ColumnError) as refused:
        normalise_predictions(pd.DataFrame({"age": [30], "guess": [31]}))
    message = str(refused.value)
    assert isinstance(refused.value, UserError) and "\n" not in message
    assert "--pred-col" in message and "['age', 'guess']" in message
    with pytest.raises(ColumnError, match=r"column 'years' \(--age-col\) is not in the table"):
        normalise_predictions(pd.DataFrame({"age": [30], "age_pred": [31]}), {"age": "years"})


def test_resolve_columns_by_name_any_case_and_refuses_one_column_for_two_fields():
    chosen = resolve_columns(["Age", "Pred_Age", "image", "Cluster"], {"age_pred": "PRED_AGE"})
    assert (chosen["age"], chosen["age_pred"], chosen["filename"], chosen["cluster"]) == ("Age", "Pred_Age", "image",
                                                                                        "Cluster")
    guessed = resolve_columns(["age", "prediction"], {"age_pred": "age"})      # the named use wins over a guess
    assert guessed["age_pred"] == "age" and guessed["age"] is None
    with pytest.raises(ColumnError, match="named for both age and age_pred"):
        resolve_columns(["age", "prediction"], {"age": "prediction", "age_pred": "prediction"})


def test_read_table_by_suffix_and_a_missing_file_named(tmp_path):
    frame = pd.DataFrame({"age": [20, 30], "age_pred": [21.5, 29.0]})
    frame.to_csv(tmp_path / "p.tsv", sep="\t", index=False)
    frame.to_parquet(tmp_path / "p.parquet")
    pd.testing.assert_frame_equal(read_table(tmp_path / "p.tsv"), frame)
    pd.testing.assert_frame_equal(read_table(tmp_path / "p.parquet"), frame)
    with pytest.raises(FileNotFoundError, match="absent.csv not found: pass the path"):
        read_table(tmp_path / "absent.csv")


def test_file_name_labels_say_why_a_name_gives_none():
    labels = labels_from_file_names(pd.Series(["26_1_2_x.jpg", "face.jpg", None, "26_1_2_x.jpg"]))
    ages = labels.values["age"]
    assert ages[[0, 3]].tolist() == ["26", "26"] and ages[[1, 2]].isna().all()
    assert pd.isna(labels.problems["race"].iloc[0]) and "not in UTKFace form" in labels.problems["race"].iloc[1]
    assert labels.problems["gender"].iloc[2] == "file name is missing"


def test_gender_codes_are_read_only_in_a_known_convention():
    read = gender_reader("imdb_wiki", "sex")
    assert (read(0), read("1.0"), read("Woman")) == ("female", "male", "female")
    with pytest.raises(LabelError, match="gender code 3 is not one of imdb_wiki"):
        read(3)
    with pytest.raises(ColumnError, match="unknown --gender-codes 'klingon'; allowed: utkface, imdb_wiki, deepface"):
        gender_reader("klingon", "sex")
    assert holds_codes(pd.Series(["male", None, "1"])) and not holds_codes(pd.Series(["male", None]))
    assert describe_codes("utkface") == "utkface: 0 = male, 1 = female"


def test_the_contract_fills_ids_datasets_splits_and_carries_clusters():
    raw = pd.DataFrame({"filename": ["26_1_2_x.jpg", "70_0_0_y.jpg"], "age_pred": [30, 60], "split": [" Test", "VAL"],
                        "cluster": ["p1", None], "age_band_source": ["20-29", None]})
    result = normalise_predictions(raw, dataset="theirs", experiment="study")
    frame = result.frame
    assert list(frame["id"]) == ["26_1_2_x.jpg", "70_0_0_y.jpg"] and list(frame["split"]) == ["test", "val"]
    assert set(frame["dataset"]) == {"theirs"} and set(frame["experiment"]) == {"study"}
    assert frame["cluster"][0] == "p1" and frame[BAND_COLUMN][0] == "20-29"
    assert pd.isna(frame["cluster"][1]) and pd.isna(frame[BAND_COLUMN][1])
    assert "draws clusters" in result.sources["cluster"]
    assert normalise_predictions(raw.drop(columns=["cluster", "split"])).frame["split"].tolist() == ["all", "all"]


def test_an_implausible_true_age_is_rejected_even_without_an_age_filter():
    result = normalise_predictions(pd.DataFrame({"age": [122, 130], "age_pred": [90, 90], "note": ["a", "b"]}))
    assert list(result.frame["age"]) == [122]
    reject = result.rejects.iloc[0]
    assert list(result.rejects.columns[:2]) == ["row", "reason"] and reject["note"] == "b" and reject["row"] == 1
    assert "age 130 is not a plausible human age (over 122)" in reject["reason"]


@pytest.mark.parametrize("age", ["²⁵", "٣٠"])
def test_a_file_name_whose_age_is_not_ascii_digits_is_refused_as_not_utkface(age):
    """str.isdigit takes superscripts and other scripts' digits, which int() refuses or misreads."""
    with pytest.raises(LabelError, match="not in UTKFace form"):
        raw_utkface_fields(f"{age}_0_0_20170116174525125.jpg.chip.jpg")
    assert raw_utkface_fields("25_0_0_20170116174525125.jpg.chip.jpg")["age"] == "25"
