"""band_models.py: a model that predicts age bands, judged by band accuracies, never by an MAE."""

import json

import numpy as np
import pandas as pd
import pytest

from stages.lib.evaluation.band_models import (BAND_GAP_COLUMNS, BAND_GROUP_COLUMNS, PROPORTIONS, band_label, band_outcomes,
                                              evaluate_bands, true_band)
from tests.evaluation.frames import ADIENCE


def test_true_ages_fall_in_the_nearest_adience_band_a_tie_to_the_older():
    ages = [0, 2, 3, 7, 13, 14, 21, 22, 23, 24, 33, 35, 37, 44, 45, 46, 56, 57, 100, 120, np.nan]
    expected = ["0-2", "0-2", "4-6", "8-12", "8-12", "15-20", "15-20", "15-20", "25-32", "25-32", "25-32",
                "38-43", "38-43", "38-43", "38-43", "48-53", "48-53", "60-100", "60-100", "60-100", None]
    names = [f"{low}-{high}" for low, high in ADIENCE]
    assert [names[i] if i >= 0 else None for i in true_band(ages, ADIENCE)] == expected
    exact, one_off = band_outcomes([4, 4, 4, -1], [4, 5, 6, 4])
    np.testing.assert_array_equal(exact, [1, 0, 0, np.nan])
    np.testing.assert_array_equal(one_off, [1, 1, 0, np.nan])


def test_band_evaluation_ignores_an_age_prediction_it_is_given():
    frame = pd.DataFrame({"age": [30, 30, 50, 50], "age_pred": [99.0] * 4, "gender": ["male", "female"] * 2,
                          "gender_pred": ["male", "male", "female", "female"], "race": ["white"] * 4,
                          "band_pred": [4, 3, 6, -1]})
    evaluation = evaluate_bands(frame, ADIENCE, [0, 16, 31, 46, 61], confidence=0.95, min_group_size=1)
    assert evaluation.overall["band_accuracy"] == pytest.approx(2 / 3) and evaluation.overall["n"] == 4
    assert evaluation.overall["one_off_accuracy"] == 1.0 and evaluation.overall["gender_accuracy"] == 0.5
    assert not [key for key in evaluation.overall if "mae" in key]


def planted_band_bias() -> pd.DataFrame:
    """83 faces aged 28 (Adience band 25-32, index 4), every gender right: 40 white faces in the right band;
    40 black faces, 10 in the right band and 30 one band older; 3 asian faces (a small group) far off. An
    age prediction of 99 rides along, which a band model's evaluation must never turn into an MAE."""
    races = ["white"] * 40 + ["black"] * 40 + ["asian"] * 3
    predicted = [4] * 40 + [4] * 10 + [5] * 30 + [0] * 3
    genders = ["male", "female"] * 41 + ["male"]
    return pd.DataFrame({"age": 28, "age_pred": 99.0, "gender": genders, "gender_pred": genders, "race": races,
                         "band_pred": predicted})


def test_band_label_names_a_band_by_its_ends():
    assert [band_label(band) for band in ADIENCE[:2]] == ["0-2", "4-6"]


def test_band_groups_carry_wilson_intervals_and_no_age_error():
    evaluation = evaluate_bands(planted_band_bias(), ADIENCE, [0, 16, 31, 46, 61], confidence=0.95, min_group_size=5)
    groups = evaluation.groups
    assert list(groups.columns) == BAND_GROUP_COLUMNS
    assert not [c for c in groups.columns if "mae" in c or "rmse" in c or "error" in c]
    white = groups.query("attribute == 'race' and group == 'white'").iloc[0]
    assert white["band_accuracy"] == 1.0 and white["band_accuracy_ci_high"] == 1.0
    assert white["band_accuracy_ci_low"] == pytest.approx(0.9124, abs=1e-4)      # Wilson at 40/40, not 100%
    black = groups.query("attribute == 'race' and group == 'black'").iloc[0]
    assert (black["band_accuracy"], black["one_off_accuracy"]) == (0.25, 1.0)
    assert groups.query("group == 'asian'")["small"].all() and not black["small"]


def test_band_gaps_name_the_worst_group_only_where_the_interval_excludes_zero():
    evaluation = evaluate_bands(planted_band_bias(), ADIENCE, [0, 16, 31, 46, 61], confidence=0.95, min_group_size=5)
    gaps = evaluation.gaps.set_index(["attribute", "metric"])
    assert list(evaluation.gaps.columns) == BAND_GAP_COLUMNS
    exact = gaps.loc[("race", "band_accuracy")]
    assert (exact["worst_group"], exact["best_group"], exact["small_left_out"]) == ("black", "white", "asian")
    assert exact["difference"] == pytest.approx(-0.75) and exact["difference_ci_high"] < 0
    assert exact["verdict"] == "worse" and exact["groups_compared"] == 2
    one_off = gaps.loc[("race", "one_off_accuracy")]              # both 100% within one band: no claim
    assert one_off["difference"] == 0 and one_off["verdict"] == "n.s."
    assert set(evaluation.gaps["metric"]) <= set(PROPORTIONS)
    assert evaluation.overall["gaps"]["race.band_accuracy_difference"] == pytest.approx(-0.75)
    assert not [key for key in json.dumps(evaluation.overall).split('"') if "mae" in key]


def test_a_face_without_a_predicted_band_is_not_judged_on_bands():
    frame = planted_band_bias().assign(band_pred=lambda f: np.where(np.arange(len(f)) < 4, -1, f["band_pred"]))
    overall = evaluate_bands(frame, ADIENCE, [0, 16, 31, 46, 61], confidence=0.95, min_group_size=5).overall
    assert overall["n"] == 83 and overall["n_band_accuracy"] == 79 and overall["n_gender_accuracy"] == 83
    assert overall["band_accuracy"] == pytest.approx((36 + 10) / 79)


def test_gaps_keep_small_groups_when_fewer_than_two_would_remain():
    evaluation = evaluate_bands(planted_band_bias(), ADIENCE, [0, 16, 31, 46, 61], confidence=0.95,
                                min_group_size=41)                      # every race group is small
    exact = evaluation.gaps.set_index(["attribute", "metric"]).loc[("race", "band_accuracy")]
    assert (exact["worst_group"], exact["best_group"]) == ("asian", "white") and exact["small_left_out"] == ""
    assert exact["groups_compared"] == 3
