"""Experiments side by side on the same faces (paired worst-group summaries); probe accuracy is in
test_probes.py, the report's mitigation section in tests/reporting/test_mitigation.py."""

import numpy as np
import pandas as pd
import pytest

from stages.lib.evaluation.intervals import Bootstrap
from stages.lib.evaluation.worst_groups import (
    PairingError,
    adjust_changes,
    against_reference,
    stratified_counts,
    summarise_experiments,
)

GROUPS = [("white", "male", 40), ("white", "female", 40), ("black", "male", 40), ("black", "female", 40),
          ("asian", "female", 5)]


def faces(errors: dict, wrong: dict | None = None, seed=0, split="test", dataset="utkface") -> pd.DataFrame:
    """Test predictions whose absolute age error is errors[(race, gender)] (± 0.5 noise) and whose gender
    prediction is wrong for the first `wrong[(race, gender)]` faces of each group."""
    rng = np.random.default_rng(seed)
    rows = []
    for race, gender, n in GROUPS:
        for i in range(n):
            error = errors.get((race, gender), 2.0) + rng.uniform(-0.5, 0.5)
            flipped = i < (wrong or {}).get((race, gender), 0)
            rows.append({"id": f"{race}-{gender}-{i}", "dataset": dataset, "split": split, "age": 30,
                         "age_pred": 30 + error * rng.choice([-1, 1]), "gender": gender, "race": race,
                         "gender_pred": ({"male": "female", "female": "male"}[gender] if flipped else gender)})
    return pd.DataFrame(rows)


BOOT = Bootstrap(resamples=400, confidence=0.95, seed=1)


def summary_of(table, experiment, statistic, dataset="utkface"):
    return table[(table["experiment"] == experiment) & (table["statistic"] == statistic)
                 & (table["dataset"] == dataset)].iloc[0]


def test_worst_group_and_gap_by_hand_and_small_groups_not_judged():
    reference = faces({("black", "female"): 10.0, ("asian", "female"): 50.0}, {("black", "male"): 10})
    table, left_out = summarise_experiments({"retrained": reference}, "retrained", BOOT, min_group_size=30)
    worst = summary_of(table, "retrained", "worst_group_mae")
    assert worst["worst_group"] == "black*female"                  # asian*female (5 faces, 50 years) is not judged
    assert worst["value"] == pytest.approx(10.0, abs=0.3)
    gap = summary_of(table, "retrained", "mae_gap")
    assert gap["value"] == pytest.approx(8.0, abs=0.4) and gap["ci_low"] > 6
    accuracy = summary_of(table, "retrained", "worst_group_accuracy")
    assert accuracy["worst_group"] == "black*male" and accuracy["value"] == pytest.approx(0.75)
    assert summary_of(table, "retrained", "accuracy_gap")["value"] == pytest.approx(0.25)   # best − worst: positive
    assert summary_of(table, "retrained", "mae")["value"] == pytest.approx(
        (reference["age_pred"] - reference["age"]).abs().mean())
    assert left_out == {"utkface": []}


def test_a_paired_change_is_shown_where_one_was_planted_and_not_where_none_was():
    reference = faces({("black", "female"): 10.0}, seed=0)
    fixed = faces({("black", "female"): 4.0}, seed=0)              # the same faces, the worst group helped
    same = faces({("black", "female"): 10.0}, seed=5)               # other noise, no planted change
    table, _ = summarise_experiments({"retrained": reference, "fixed": fixed, "same": same}, "retrained", BOOT, 30)
    change = summary_of(table, "fixed", "worst_group_mae")
    assert change["change"] == pytest.approx(-6.0, abs=0.4) and change["change_ci_high"] < 0
    assert summary_of(table, "fixed", "mae_gap")["change_ci_high"] < 0
    unchanged = summary_of(table, "same", "worst_group_mae")
    assert unchanged["change_ci_low"] < 0 < unchanged["change_ci_high"]
    assert (summary_of(table, "retrained", "mae")[["change", "change_ci_low", "change_ci_high"]] == 0).all()


def test_pairing_makes_the_change_interval_narrower_than_the_two_intervals_suggest():
    reference = faces({("black", "female"): 10.0}, seed=0)
    shifted = reference.assign(age_pred=reference["age_pred"] + np.where(reference["age_pred"] > 30, 0.3, -0.3))
    table, _ = summarise_experiments({"retrained": reference, "shifted": shifted}, "retrained", BOOT, 30)
    row = summary_of(table, "shifted", "mae")
    assert row["change"] == pytest.approx(0.3, abs=1e-9)
    assert row["change_ci_high"] - row["change_ci_low"] < 0.1 * (row["ci_high"] - row["ci_low"])


def test_experiments_on_other_faces_are_left_out_by_name_and_kept_unpaired():
    reference = faces({}, seed=0)
    naive = faces({}, seed=0).iloc[3:]
    table, left_out = summarise_experiments({"retrained": reference, "naive_split": naive}, "retrained", BOOT, 30)
    assert left_out == {"utkface": ["naive_split"]} and set(table["experiment"]) == {"retrained"}
    alone = against_reference(naive, reference, "naive_split", BOOT, min_group_size=30)
    assert alone["change"].isna().all() and alone["value"].notna().all()
    assert against_reference(reference, None, "other", BOOT, min_group_size=30)["change"].isna().all()
    with pytest.raises(PairingError, match="'retrained' has no predictions"):
        summarise_experiments({"other": reference}, "retrained", BOOT, 30)


def test_banded_ages_give_no_mae_but_keep_gender():
    table = faces({}).assign(age_band_source="20-29")
    summary, _ = summarise_experiments({"retrained": table}, "retrained", BOOT, 30)
    assert summary[summary["statistic"].str.contains("mae")]["value"].isna().all()
    assert summary_of(summary, "retrained", "gender_accuracy")["value"] == 1.0


def test_stratified_counts_keep_every_stratum_its_size():
    strata = np.array([0, 0, 0, 1, 1, 2])
    counts = stratified_counts(strata, 50, np.random.default_rng(0))
    for stratum, size in ((0, 3), (1, 2), (2, 1)):
        assert (counts[:, strata == stratum].sum(axis=1) == size).all()
    assert counts[:, strata == 0].std() > 0




def test_each_change_carries_a_p_value_and_the_reference_none():
    reference = faces({("black", "female"): 10.0}, seed=0)
    fixed = faces({("black", "female"): 4.0}, seed=0)
    summary, _ = summarise_experiments({"retrained": reference, "group_dro": fixed}, "retrained", BOOT, 30)
    assert summary.loc[summary["experiment"] == "retrained", "change_p"].isna().all()
    assert summary_of(summary, "group_dro", "mae_gap")["change_p"] < 0.001
    assert summary_of(summary, "group_dro", "accuracy_gap")["change_p"] == 1.0   # nothing changed: no spread


def _changes(p_values: dict[str, float], statistic="mae_gap", dataset="utkface") -> pd.DataFrame:
    return pd.DataFrame([{"dataset": dataset, "experiment": name, "statistic": statistic, "change": -1.0,
                          "change_ci_low": -2.0, "change_ci_high": -0.1, "change_p": p}
                         for name, p in p_values.items()])


def test_changes_are_adjusted_per_test_set_and_statistic_over_the_experiments_compared():
    table = pd.concat([_changes({"retrained": np.nan, "a": 0.01, "b": 0.02, "c": 0.04}),
                       _changes({"a": 0.04}, statistic="accuracy_gap"),
                       _changes({"a": 0.04}, dataset="fairface")], ignore_index=True)
    adjusted = adjust_changes(table, 0.05).set_index(["dataset", "statistic", "experiment"]).sort_index()
    gap = adjusted.loc[("utkface", "mae_gap")]
    # Holm over the three with a p-value: 0.03, 0.04, 0.04; the reference is in no family
    assert np.allclose(gap.loc[["a", "b", "c"], "change_p_adjusted"], [0.03, 0.04, 0.04])
    assert gap.loc["a", "change_significant"] and not gap.loc["retrained", "change_significant"]
    assert (gap.loc[["a", "b", "c"], "change_tests"] == 3).all() and gap.loc["a", "change_adjustment"] == "holm"
    # alone in its family a raw 0.04 stays 0.04; with two more tests, 0.03 becomes 0.06 and falls
    assert adjusted.loc[("utkface", "accuracy_gap", "a"), "change_p_adjusted"] == pytest.approx(0.04)
    assert adjusted.loc[("fairface", "mae_gap", "a"), "change_tests"] == 1
    crowded = adjust_changes(_changes({"a": 0.02, "b": 0.03, "c": 0.5}), 0.05).set_index("experiment")
    assert crowded.loc["b", "change_p_adjusted"] == pytest.approx(0.06) and not crowded.loc["b", "change_significant"]


def test_a_summary_written_before_p_values_comes_back_as_it_was():
    old = _changes({"a": 0.01}).drop(columns="change_p")
    assert adjust_changes(old, 0.05).equals(old)
