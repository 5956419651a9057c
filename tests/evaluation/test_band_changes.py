"""band_changes.py: per-age-band paired changes of a rebalancing experiment against the reference."""

import numpy as np
import pandas as pd
import pytest

from stages.lib.core.params import Experiment
from stages.lib.evaluation.band_changes import band_changes, columns, is_rebalancing
from stages.lib.evaluation.intervals import Bootstrap
from tests.evaluation.frames import EDGES, old_improve_middle_aged_pay, predictions


def test_band_changes_show_who_gains_and_who_pays():
    reference, experiment = old_improve_middle_aged_pay()
    table = band_changes(experiment, reference, EDGES, Bootstrap(resamples=400), dataset="toy")
    assert list(table.columns) == columns("mae") == [
        "dataset", "band", "metric", "n", "mae_reference", "mae", "delta", "ci_low", "ci_high", "p_value",
        "adjustment", "p_adjusted", "significant", "verdict"]
    by_band = table.set_index("band")
    assert by_band.loc["61+", "verdict"] == "improves" and by_band.loc["61+", "ci_high"] < 0
    assert by_band.loc["46-60", "verdict"] == "worsens" and by_band.loc["46-60", "ci_low"] > 0
    assert by_band.loc["16-30", "verdict"] == "n.s." and by_band.loc["16-30", "n"] == 200
    assert set(table["adjustment"]) == {"holm"} and (table["p_adjusted"] >= table["p_value"]).all()
    # overall MAE barely moves: the bands are what shows the trade
    overall = (experiment["age_pred"] - experiment["age"]).abs().mean() - (reference["age_pred"] - reference["age"]).abs().mean()
    assert abs(overall) < 0.5


def test_band_changes_pair_only_the_shared_faces():
    reference, experiment = old_improve_middle_aged_pay()
    table = band_changes(experiment.iloc[100:], reference.sample(frac=1, random_state=0), EDGES,
                         Bootstrap(resamples=50), dataset="toy")
    assert table.set_index("band").loc["0-15", "n"] == 100


def test_rebalancing_experiments_are_named_by_what_they_change():
    assert is_rebalancing(Experiment(init="backbone", oversample=[{"min_age": 60, "factor": 2}]))
    assert is_rebalancing(Experiment(init="backbone", reweight="inverse_band_frequency"))
    assert is_rebalancing(Experiment(init="backbone", mitigation={"method": "balanced", "groups": ["race"]}))
    assert not is_rebalancing(Experiment(init="backbone", split="naive"))
