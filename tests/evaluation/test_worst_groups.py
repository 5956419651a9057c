"""Experiments side by side on the same faces (paired worst-group summaries); probe accuracy is in
test_probes.py, the report's mitigation section in tests/reporting/test_mitigation.py."""

import numpy as np
import pandas as pd
import pytest

from stages.lib.evaluation.intervals import Bootstrap
from stages.lib.evaluation.worst_groups import (
    PairingError,
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


