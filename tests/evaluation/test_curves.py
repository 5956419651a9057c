"""curves.py: the data behind the study's curves and heatmaps."""

import numpy as np
import pandas as pd
import pytest

from stages.lib.evaluation.curves import (age_bins, error_by_age, pivot, predicted_vs_actual, share_by_age_gender,
                                         signed_error_by_predicted_band)
from tests.evaluation.frames import EDGES, table


def test_signed_error_by_predicted_band_uses_the_prediction():
    frame = table([(70, 50.0, "female", "white", None), (20, 40.0, "female", "white", None),
                   (60, 58.0, "male", "black", None)])
    result = signed_error_by_predicted_band(frame, EDGES).set_index(["predicted_band", "race", "gender"])
    assert result.loc[("46-60", "white", "female"), "mean_error"] == -20
    assert result.loc[("31-45", "white", "female"), "mean_error"] == 20
    assert result.loc[("46-60", "black", "male"), "n"] == 1
    values, counts = pivot(result.reset_index(), "predicted_band", ["race", "gender"], "mean_error", index_order=["31-45", "46-60"])
    assert list(values.columns) == ["white × female", "black × male"]
    assert counts.loc["46-60", "black × male"] == 1


def test_predicted_vs_actual_per_true_age():
    curve = predicted_vs_actual(table([(30, 20.0, "male", None, None), (30, 40.0, "male", None, None),
                                       (50, 45.0, "male", None, None)]), "model")
    assert curve.set_index("age").loc[30, "mean_pred"] == 30 and curve.set_index("age").loc[30, "n"] == 2
    assert set(curve["series"]) == {"model"}


FOUR = table([(20, 22.0, "male", "white", None),      # error +2, age bin 20
              (22, 18.0, "female", "white", None),    # error -4, age bin 20
              (27, 30.0, "male", "black", None),      # error +3, age bin 25
              (24, 24.0, None, None, None)])          # error 0, no gender nor race


def test_predicted_vs_actual_gives_the_quartiles_of_the_predictions():
    curve = predicted_vs_actual(table([(30, p, "male", None, None) for p in (20.0, 30.0, 40.0, 50.0)]), "m")
    assert curve.iloc[0][["age", "n", "mean_pred", "q25", "q75"]].tolist() == [30, 4, 35.0, 27.5, 42.5]
    assert list(curve.columns) == ["series", "age", "n", "mean_pred", "q25", "q75"]


def test_age_bins_are_lower_edges():
    np.testing.assert_array_equal(age_bins([0, 4, 5, 99], 5), [0, 0, 5, 95])
    np.testing.assert_array_equal(age_bins([19, 20], 10), [10, 20])


def test_error_by_age_by_hand_leaves_out_unlabelled_faces():
    race = error_by_age(FOUR, "race").set_index(["group", "age_bin"])
    assert list(race.index) == [("black", 25), ("white", 20)]
    assert race.loc[("white", 20), ["n", "mae", "mean_error"]].tolist() == [2, 3.0, -1.0]
    assert race.loc[("black", 25), ["n", "mae", "mean_error"]].tolist() == [1, 3.0, 3.0]
    assert set(race["attribute"]) == {"race"}
    gender = error_by_age(FOUR, "gender", width=10).set_index(["group", "age_bin"])
    assert gender.loc[("male", 20), ["n", "mae", "mean_error"]].tolist() == [2, 2.5, 2.5]   # 20 and 27
    assert gender.loc[("female", 20), "mean_error"] == -4.0 and len(gender) == 2


def test_share_by_age_gender_counts_labelled_faces_and_shares_sum_to_one():
    share = share_by_age_gender(FOUR).set_index(["age_bin", "gender"])
    assert share["n"].to_dict() == {(20, "female"): 1, (20, "male"): 1, (25, "male"): 1}
    assert share["share"].sum() == pytest.approx(1.0) and share.loc[(20, "male"), "share"] == pytest.approx(1 / 3)


def test_pivot_orders_columns_by_the_vocabulary_and_rows_as_asked():
    long = pd.DataFrame({"band": ["a", "a", "b", "b"], "race": ["others", "white", "black", "white"],
                         "gender": ["male", "female", "male", "male"], "value": [1.0, 2.0, 3.0, 4.0], "n": [5, 6, 7, 8]})
    values, counts = pivot(long, "band", ["race", "gender"], "value", index_order=["b", "missing", "a"])
    assert list(values.columns) == ["white × male", "white × female", "black × male", "others × male"]
    assert list(values.index) == ["b", "a"] and values.columns.name == "race × gender"
    assert values.loc["a", "white × female"] == 2.0 and np.isnan(values.loc["a", "white × male"])
    assert counts.loc["b", "black × male"] == 7 and counts.loc["a", "others × male"] == 5
