"""band_models.py: a model that predicts age bands, judged by band accuracies, never by an MAE."""

import numpy as np
import pandas as pd
import pytest

from stages.lib.evaluation.band_models import band_outcomes, evaluate_bands, true_band
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
