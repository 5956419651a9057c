"""curves.py: the data behind the study's curves and heatmaps."""

import numpy as np
import pandas as pd
import pytest

from stages.lib.evaluation.curves import pivot, predicted_vs_actual, signed_error_by_predicted_band
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
