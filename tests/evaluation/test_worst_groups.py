<<<<<<< HEAD
"""Experiments side by side on the same faces (paired worst-group summaries), and the report's mitigation
section (probe accuracy: test_probes.py)."""
=======
"""Experiments side by side on the same faces (paired worst-group summaries) and probe accuracy (the
report's mitigation section: tests/reporting/test_mitigation.py)."""
>>>>>>> tests-t4

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


<<<<<<< HEAD
# ----- the report section ------------------------------------------------------------------------------

def test_change_phrases_claim_only_what_the_interval_supports():
    assert change_phrase("worst_group_mae", -2.0, -3.0, -1.0) == "the worst group's MAE falls by 2.00 years [-3.00, -1.00]"
    assert change_phrase("mae_gap", 1.0, 0.5, 1.5) == "the race × gender MAE gap widens by 1.00 years [+0.50, +1.50]"
    assert "no change shown" in change_phrase("accuracy_gap", -0.02, -0.05, 0.01)
    assert "[-5.00, +1.00]" in change_phrase("accuracy_gap", -0.02, -0.05, 0.01)   # accuracies in points
    assert signed_change(0.8234, 0.64, 0.98) == "+0.82 [+0.64, +0.98]"
    assert signed_change(0.015, -0.003, 0.027, as_points=True) == "+1.5 pts [-0.3, +2.7]"


def test_the_section_has_the_figure_tables_and_a_sentence_per_method(tmp_path):
    reference = faces({("black", "female"): 10.0}, {("black", "male"): 10}, seed=0)
    fixed = faces({("black", "female"): 4.0}, {("black", "male"): 10}, seed=0)
    summary, _ = summarise_experiments({"retrained": reference, "group_dro": fixed}, "retrained", BOOT, 30)
    probes = pd.DataFrame([{"backbone": "vgg", "attribute": "race", "dataset": "utkface", "n": 165, "classes": 3,
                            "chance": 1 / 3, "balanced_accuracy": 0.9, "ci_low": 0.85, "ci_high": 0.95}])
    balanced, _ = summarise_experiments({"plain": reference, "balanced": fixed}, "plain", BOOT, 30)
    balanced = balanced.assign(backbone="vgg")
    figure = tradeoff_figure(figure_panels(summary, balanced, "vgg"), 0.95)
    assert len(figure.axes) == 4                                    # (experiments, vgg plain/balanced) x (MAE, gender)
    path = save_figure(figure, tmp_path / "mitigation.png")
    md = Markdown(tmp_path)
    mitigation_section(md, summary, probes, balanced, inputs=MitigationInputs(path, "vgg", 0.95))
    text = md.text()
    assert "![Overall against worst-group error" in text and "(mitigation.png)" in text
    assert "**group_dro** on utkface, against retrained: " in text and "the worst group's MAE falls by" in text
    assert "the worst group's gender accuracy: no change shown" in text
    assert "a linear probe reads race at 90.0% balanced accuracy [85.0%, 95.0%] (chance 33.3%): the embedding holds it" in text
    assert "a gap remains" in text
    age_table = summary_display(summary, "mae", 0.95)
    assert age_table["worst group [95% CI]"].str.endswith("(black*female)").all()
    assert verdict(summary[summary["experiment"] == "group_dro"]).startswith("**group_dro**")
=======
def test_balanced_accuracy_by_hand_and_probe_interval():
    labels = ["a"] * 8 + ["b"] * 2
    predicted = ["a"] * 8 + ["a", "b"]
    assert balanced_accuracy(labels, predicted)[0] == pytest.approx((1.0 + 0.5) / 2)
    frame = pd.DataFrame({"dataset": "d", "label": labels * 5, "predicted": predicted * 5})
    row = probe_summary(frame, "vgg", "race", BOOT).iloc[0]
    assert row["chance"] == 0.5 and row["balanced_accuracy"] == pytest.approx(0.75)
    assert row["ci_low"] < 0.75 < row["ci_high"]
>>>>>>> tests-t4
