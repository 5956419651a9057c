"""band_changes.py: per-age-band paired changes of a rebalancing experiment against the reference."""

import numpy as np
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


def constant_change(shift_old: float):
    """40 faces aged 25 and 40 aged 70; the reference errs by +4 years on each, the experiment by +4 on the
    25-year-olds and by 4 + `shift_old` on the 70-year-olds."""
    ages = np.repeat([25, 70], 40)
    reference = predictions(ages, ages + 4.0)
    experiment = reference.assign(age_pred=ages + 4.0 + np.where(ages == 70, shift_old, 0.0))
    return reference, experiment


def test_a_constant_change_is_experiment_minus_reference_with_a_point_interval():
    reference, experiment = constant_change(shift_old=1.0)
    table = band_changes(experiment, reference.iloc[::-1], EDGES, Bootstrap(resamples=100), dataset="toy")
    assert list(table["band"]) == ["16-30", "61+"]                     # bands without faces are left out
    old, young = table.set_index("band").loc["61+"], table.set_index("band").loc["16-30"]
    assert (old["mae_reference"], old["mae"], old["delta"]) == (4.0, 5.0, 1.0)
    assert (old["ci_low"], old["ci_high"], old["p_value"]) == (1.0, 1.0, 0.0)   # paired by id: no spread
    assert old["verdict"] == "worsens" and old["significant"]
    assert (young["delta"], young["ci_low"], young["ci_high"], young["p_value"]) == (0.0, 0.0, 0.0, 1.0)
    assert young["verdict"] == "n.s." and not young["significant"]
    better = band_changes(*constant_change(shift_old=-1.0)[::-1], EDGES, Bootstrap(resamples=100), dataset="toy")
    assert better.set_index("band").loc["61+", "verdict"] == "improves"


def test_the_paired_interval_covers_a_planted_noisy_change():
    """A change of +0.8 years with noise on 300 faces of one band: the interval holds 0.8 in most of 40
    draws and never holds 0 (a sign or pairing error would miss it every time)."""
    held, excluded_zero = 0, 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        ages = np.full(300, 40)
        reference = predictions(ages, ages + rng.normal(0, 5, 300))
        error = np.abs(reference["age_pred"] - ages).to_numpy() + 0.8 + rng.normal(0, 1, 300)
        experiment = reference.assign(age_pred=ages + error)
        row = band_changes(experiment, reference, EDGES, Bootstrap(resamples=200, seed=seed), dataset="toy").iloc[0]
        held += int(row["ci_low"] <= 0.8 <= row["ci_high"])
        excluded_zero += int(row["ci_low"] > 0 and row["verdict"] == "worsens")
    assert held >= 34 and excluded_zero == 40


def test_look_alike_clusters_widen_the_change_interval():
    rng = np.random.default_rng(1)
    people = np.repeat(np.arange(30), 10)
    ages = np.full(300, 40)
    reference = predictions(ages, ages + 5.0)
    change = rng.normal(0, 2, 30)[people] + rng.normal(0, 0.2, 300)       # one change per person
    experiment = reference.assign(age_pred=ages + 5.0 + change)
    faces = band_changes(experiment, reference, EDGES, Bootstrap(resamples=300), dataset="toy").iloc[0]
    clustered = band_changes(experiment, reference.assign(cluster=[f"p{p}" for p in people]), EDGES,
                             Bootstrap(resamples=300), dataset="toy").iloc[0]
    assert clustered["delta"] == pytest.approx(faces["delta"])
    assert clustered["ci_high"] - clustered["ci_low"] > 2 * (faces["ci_high"] - faces["ci_low"])


def test_where_ages_are_bands_a_higher_band_accuracy_improves():
    ages = np.full(60, 25)                                               # the midpoint of 20-29
    reference = predictions(ages, np.where(np.arange(60) % 2 == 0, 25.0, 45.0), age_band_source="20-29")
    experiment = reference.assign(age_pred=27.0)
    row = band_changes(experiment, reference, EDGES, Bootstrap(resamples=200), dataset="fairface").iloc[0]
    assert row["metric"] == "age_band_accuracy" and "mae" not in row.index
    assert (row["age_band_accuracy_reference"], row["age_band_accuracy"], row["delta"]) == (0.5, 1.0, 0.5)
    assert row["ci_low"] > 0 and row["verdict"] == "improves"


def test_without_resamples_there_is_a_change_but_no_verdict():
    table = band_changes(*constant_change(shift_old=1.0)[::-1], EDGES, Bootstrap(resamples=0), dataset="toy")
    assert list(table["delta"]) == [0.0, 1.0]
    assert table[["ci_low", "ci_high", "p_value", "p_adjusted"]].isna().all().all()
    assert (table["verdict"] == "n.s.").all() and not table["significant"].any()
