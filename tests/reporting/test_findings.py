"""The report says what the data supports about the model of each section's role (issue 17).

Fixtures are built so that the wrong behaviour would show: a control with the lowest test MAE, a model
best on test but not on val, a stalled refit, a small heatmap cell, a loss spike, ...
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from stages.lib.core.labels import RACES
from stages.lib.core.params import validate
from stages.lib.evaluation.intervals import Bootstrap
from stages.lib.evaluation.worst_groups import summarise_experiments
from stages.lib.reporting.comparisons import paired_split_comparison
from stages.lib.reporting.figures import heatmap_figure, loss_curves_figure, save_figure
from stages.lib.reporting.findings import Facts, findings, published_gender_finding
from stages.lib.reporting.markdown import pivot_display, significance_bullets
from stages.lib.reporting.mitigation import (fixed_group_changes, figure_panels, stall_flags, summary_display,
                                             tradeoff_figure)
from stages.lib.reporting.roles import controls, select_best, study_models

ROOT = Path(__file__).resolve().parents[2]
BOOT = Bootstrap(resamples=60, confidence=0.95, seed=1)


def params(profile: str = "full"):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["profile"] = profile
    return validate(raw)


def predictions(noise_val: float, noise_test: float, *, seed: int, ids=range(400), dataset="utkface"):
    """One experiment's predictions: the first quarter of the faces val, the rest test; errors drawn
    with the given spread on each split."""
    faces, rng = np.random.default_rng(0), np.random.default_rng(seed)
    ids = list(ids)
    n = len(ids)
    split = np.where(np.arange(n) < n // 4, "val", "test")
    age = faces.integers(17, 80, n).astype(float)
    noise = np.where(split == "val", noise_val, noise_test)
    gender = faces.choice(["male", "female"], n)
    return pd.DataFrame({"id": [f"f{i}" for i in ids], "dataset": dataset, "split": split, "age": age,
                         "age_pred": age + rng.normal(0, 1, n) * noise, "gender": gender,
                         "gender_pred": np.where(rng.random(n) < 0.85, gender, np.where(gender == "male", "female", "male")),
                         "race": faces.choice(RACES, n)})


# ----- roles: the best model is chosen on val and is never a control ----------------------------------

def test_controls_are_marked_in_params_and_are_never_candidates():
    experiments = params().experiments
    assert set(controls(experiments)) == {"retrained_random", "naive_split", "study_protocol"}
    candidates = study_models(experiments)
    assert "naive_split" not in candidates and "published" not in candidates and "balanced" not in candidates
    assert {"retrained", "oversample_x2", "oversample_x3"} <= set(candidates)


def test_a_control_with_the_lowest_test_mae_never_becomes_best():
    experiments = params().experiments
    frames = {"retrained": predictions(6, 6, seed=1), "oversample_x2": predictions(7, 7, seed=2),
              "naive_split": predictions(1, 1, seed=3)}          # the control wins on both splits
    selection = select_best(frames, study_models(experiments), "utkface", BOOT)
    assert selection.best == "retrained" and selection.runner_up == "oversample_x2"


def test_best_is_chosen_on_val_not_test_with_the_interval_of_its_lead():
    frames = {"retrained": predictions(3, 9, seed=1), "oversample_x2": predictions(8, 2, seed=2)}
    selection = select_best(frames, ["retrained", "oversample_x2"], "utkface", BOOT)
    assert selection.best == "retrained"                         # best on val, worst on test
    assert selection.shared_faces == 100 and selection.lead.difference < 0
    assert selection.lead.difference_ci_low <= selection.lead.difference <= selection.lead.difference_ci_high
    assert selection.lead_supported()
    close = select_best({"a": predictions(5, 5, seed=1), "b": predictions(5, 5, seed=2)}, ["a", "b"], "utkface", BOOT)
    assert not close.lead_supported()                            # no "better" where the interval holds 0
    assert select_best({"a": predictions(5, 5, seed=1).query("split == 'test'")}, ["a"], "utkface", BOOT) is None


# ----- findings: a sentence only where the (adjusted) interval supports it -----------------------------

def _gap_evaluation(significant):
    gaps = pd.DataFrame([{"attribute": "race*gender", "metric": "gender_accuracy", "worst_group": "black*female",
                          "worst_n": 120, "worst": 0.458, "best_group": "indian*male", "best_n": 150, "best": 0.98,
                          "difference": -0.52, "difference_ci_low": -0.6, "difference_ci_high": -0.44,
                          "verdict": "worse", **({} if significant is None else {"significant": significant})}])
    return type("E", (), {"gaps": gaps, "overall": {}})()


def test_a_gap_finding_follows_the_adjusted_verdict_where_there_is_one():
    facts = Facts(params=params(), dataset="utkface", published="published")
    facts.published_evaluations = {"utkface": _gap_evaluation(None)}
    assert "unadjusted" in published_gender_finding(facts) and "45.8% of black female" in published_gender_finding(facts)
    facts.published_evaluations = {"utkface": _gap_evaluation(True)}
    assert "adjusted for multiplicity" in published_gender_finding(facts)
    facts.published_evaluations = {"utkface": _gap_evaluation(False)}    # raw interval excludes 0, adjusted does not
    assert published_gender_finding(facts) is None
    said, unsaid = findings(facts)
    assert not any("black female" in s for s in said) and any("gender-accuracy gap" in u for u in unsaid)
    assert any("band_changes" in u for u in unsaid)                      # absent columns are said to be absent


def test_an_adjusted_significance_list_is_shorter_than_the_raw_one():
    rows = [{"attribute": "race", "group": g, "metric": "mae", "value": 5.0, "difference": 0.4,
             "difference_ci_low": 0.05, "difference_ci_high": 0.8, "verdict": "above", "small": False,
             "significant": g == "black", "significant_raw": True} for g in RACES]
    table = pd.DataFrame(rows)
    evaluation = type("E", (), {"significance": table})()
    adjusted, _ = significance_bullets(evaluation, 30)
    raw, _ = significance_bullets(type("E", (), {"significance": table.drop(columns=["significant"])})(), 30)
    assert adjusted[0].count("(") < raw[0].count("(") and "black" in adjusted[0] and "white" not in adjusted[0]


# ----- mitigation: reference, stalled refits, the reference's worst group ------------------------------

def _faces(mae_by_group: dict, seed: int, n: int = 40) -> pd.DataFrame:
    rng, rows = np.random.default_rng(seed), []
    for (race, gender), mae in mae_by_group.items():
        for i in range(n):
            age = 40.0
            rows.append({"id": f"{race}{gender}{i}", "dataset": "utkface", "split": "test", "age": age,
                         "age_pred": age + mae * rng.choice([-1, 1]), "race": race, "gender": gender,
                         "gender_pred": gender})
    return pd.DataFrame(rows)


def test_mitigation_table_shows_the_reference_and_the_change_at_its_worst_group():
    reference = _faces({("black", "female"): 10.0, ("white", "male"): 2.0, ("asian", "male"): 3.0}, seed=0)
    moved = _faces({("black", "female"): 4.0, ("white", "male"): 2.0, ("asian", "male"): 6.0}, seed=0)
    summary, _ = summarise_experiments({"retrained": reference, "group_dro": moved}, "retrained", BOOT, 30)
    fixed = fixed_group_changes({"retrained": reference, "group_dro": moved}, "black*female", "mae", BOOT)
    assert fixed["group_dro"].startswith("-6.00")            # black women, not group_dro's own worst (asian men)
    table = summary_display(summary, "mae", 0.95, fixed={("utkface", "group_dro"): fixed["group_dro"]},
                            flags={"group_dro": "stalled"})
    by = table.set_index("experiment")
    assert (by.loc["retrained"].filter(like="Δ") == "reference").all()
    assert "+0.00 [+0.00, +0.00]" not in table.to_string()
    assert by.loc["group_dro", "Δ at retrained's worst group"].startswith("-6.00")
    assert by.loc["group_dro", "training"] == "stalled" and by.loc["retrained", "training"] == ""


def test_a_refit_whose_best_epoch_is_its_first_is_flagged():
    stalled = pd.DataFrame({"epoch": range(1, 22), "val_age_loss": [1.0] + [1.1] * 20,
                            "val_gender_loss": np.linspace(1, 0.5, 21)})
    moving = pd.DataFrame({"epoch": range(1, 22), "val_age_loss": np.linspace(2, 1, 21)})
    flags = stall_flags({"last_layer": stalled, "balanced": moving, "absent": None})
    assert set(flags) == {"last_layer"} and flags["last_layer"].startswith("age:") and "of 21" in flags["last_layer"]
    shorter = stalled.assign(val_age_loss=[1.0, 1.2, 1.3] + [np.nan] * 18)       # a refit phase of 3 epochs
    assert "first of 3" in stall_flags({"last_layer": shorter})["last_layer"]


def test_mitigation_figure_drops_empty_panels():
    reference = _faces({("black", "female"): 10.0, ("white", "male"): 2.0}, seed=0)
    banded = reference.assign(age=np.nan, dataset="fairface")     # no MAE: its MAE panel has nothing to draw
    summary, _ = summarise_experiments({"retrained": pd.concat([reference, banded])}, "retrained", BOOT, 30)
    figure = tradeoff_figure(figure_panels(summary, pd.DataFrame(), "vgg"), 0.95)
    titles = [axis.get_title() for axis in figure.axes]
    assert len(figure.axes) == 3 and not any("fairface: MAE" in t for t in titles)


# ----- leakage: paired on shared faces ------------------------------------------------------------------

def test_leakage_is_compared_on_the_test_faces_both_splits_share():
    grouped = predictions(5, 5, seed=1, ids=range(0, 400)).query("split == 'test'")
    naive = predictions(5, 3, seed=2, ids=range(200, 600)).query("split == 'test'")
    table = paired_split_comparison(grouped, naive, BOOT).set_index("metric")
    shared = len(set(grouped["id"]) & set(naive["id"]))
    assert table.loc["MAE (years)", "shared test faces"] == shared < len(grouped)
    assert "[" in table.loc["MAE (years)", "naive − grouped [CI]"]
    assert paired_split_comparison(grouped, naive.assign(id="x" + naive["id"]), BOOT).empty


# ----- figures ------------------------------------------------------------------------------------------

def test_heatmap_greys_cells_under_the_small_group_size(tmp_path):
    values = pd.DataFrame({"white": [1.0, -9.0], "black": [2.0, 3.0]}, index=["16-30", "61+"])
    counts = pd.DataFrame({"white": [200, 3], "black": [150, 90]}, index=values.index)
    figure = heatmap_figure(values, counts, "t", diverging=True, min_count=30)
    coloured = figure.axes[0].images[0].get_array()
    assert np.ma.is_masked(coloured[1, 0]) and not np.ma.is_masked(coloured[0, 0])
    assert figure.axes[0].images[0].norm.vmax == pytest.approx(3.0)    # the n=3 cell does not set the scale
    assert "(3, *small*)" in pivot_display(values, counts, min_count=30).to_string()


def test_loss_curves_stay_legible_and_a_spike_gets_a_log_axis(tmp_path):
    epochs = np.arange(1, 41)
    histories = {name: pd.DataFrame({"epoch": epochs, "age_loss": 3 - epochs / 20, "val_age_loss": 3.1 - epochs / 20,
                                     "gender_loss": 0.7 - epochs / 100, "val_gender_loss": 0.72 - epochs / 100,
                                     "adversary_loss": np.where(epochs == 5, 33.0, 0.7)})
                 for name in ("retrained", "adversarial", "group_dro", "balanced", "last_layer")}
    figure = loss_curves_figure(histories)
    scales = {axis.get_title(): axis.get_yscale() for axis in figure.axes}
    assert scales["adversary loss (log axis)"] == "log" and scales["age loss"] == "linear"
    path = save_figure(figure, tmp_path / "loss.png")
    assert Image.open(path).size[0] <= 1600


# ----- the whole report ---------------------------------------------------------------------------------

def test_the_report_opens_with_findings_and_names_each_section_by_role(tmp_path, monkeypatch):
    from stages import evaluate as evaluate_stage
    from stages import report as report_stage
    from tests.reporting.test_report import write_params, write_predictions

    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, bootstrap=30)
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    raw["profile"] = "full"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    for name, noise, seed in (("published", 9, 0), ("retrained", 5, 1), ("oversample_x2", 5, 2),
                              ("naive_split", 1, 3)):             # the control has the lowest test MAE by far
        write_predictions(tmp_path, name, noise=noise, seed=seed)
        evaluate_stage.main([name])
    report_stage.main([])
    text = (tmp_path / "reports" / "report.md").read_text()
    sections = {block.split("\n")[0]: block for block in text.split("\n## ")}
    order = list(sections)
    assert order[1] == "Findings" and order[2].startswith("The study's figures") and "**What was run.**" in text.split("## ")[0]
    best = next(title for title in order if title.startswith("The study's best retrained model"))
    assert "naive_split" not in best and "val split" in best
    published = next(block for title, block in sections.items() if title.startswith("The published model"))
    assert "(R11)" in published and "(R12)" in published and "(R11)" not in sections[best]
    assert "| R13 |" in text and "not run" in text.split("| R13 |")[1].split("\n")[0]
    assert "Not candidates: naive_split" in sections["Findings"]
    mitigation = next(block for title, block in sections.items() if title.startswith("Mitigation"))
    assert "| retrained | 5." in mitigation.replace("| utkface | retrained", "| retrained") and "reference" in mitigation
    assert "+0.00 [+0.00, +0.00]" not in mitigation


# ----- duplicate computations: compare and probe read the experiments that trained their heads ---------

def test_compare_and_probe_reuse_the_experiments_only_where_the_heads_are_the_same():
    from stages.compare import same_heads_experiment
    from stages.probe import balanced_experiment

    real = params(profile="real-offline")        # WideResNet: retrained starts from the same random start
    assert same_heads_experiment(real) == "retrained_random" and balanced_experiment(real) == "balanced"
    for profile in ("full", "demo"):             # VGG-Face: `balanced` starts from the pretrained heads
        assert same_heads_experiment(params(profile=profile)) == "retrained_random"
        assert balanced_experiment(params(profile=profile)) is None
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["experiments"]["retrained_random"]["oversample"] = [{"min_age": 60, "factor": 2}]
    raw["profile"] = "real-offline"
    assert same_heads_experiment(validate(raw)) is None


def test_band_changes_are_claimed_only_where_the_adjusted_test_holds():
    from stages.lib.reporting.findings import band_change_phrases

    table = pd.DataFrame({"dataset": "utkface", "band": ["46-60", "61+", "16-30"], "n": [300, 120, 500],
                          "mae_reference": [7.0, 12.0, 6.0], "mae": [8.09, 9.09, 6.1], "delta": [1.09, -2.91, 0.1],
                          "ci_low": [0.51, -3.89, 0.01], "ci_high": [1.68, -1.92, 0.2], "p_value": [0.001, 0.0001, 0.04],
                          "p_adjusted": [0.003, 0.0005, 0.12], "significant": [True, True, False]})
    phrases = band_change_phrases({"oversample_x3": table})
    assert phrases == ["oversample_x3: 46-60 +1.09 [+0.51, +1.68], 61+ -2.91 [-3.89, -1.92]"]   # 16-30: raw only
    assert band_change_phrases({"oversample_x3": table.drop(columns="significant")}) == []


def test_detectors_are_said_to_differ_only_where_the_interval_of_the_difference_shows_it():
    from stages.lib.reporting.findings import detector_finding

    def measured(found_by_group):
        groups = {g: {"in": 100, "found": f} for g, f in found_by_group.items()}
        return {"attempted": 100 * len(groups), "found": sum(found_by_group.values()), "by": {"race_gender": groups}}

    crops = {"datasets": {"utkface": {"detection_on_precropped": {
        "yunet": measured({"white*male": 99, "black*female": 98}),
        "haar": measured({"white*male": 90, "black*female": 60})}}}}
    facts = Facts(params=params(), dataset="utkface", crops=crops)
    sentence = detector_finding(facts)
    assert "yunet finds a face in 98.5%" in sentence and "haar misses most often for black female (60.0% found)" in sentence
    crops["datasets"]["utkface"]["detection_on_precropped"]["haar"] = measured({"white*male": 99, "black*female": 97})
    assert "not shown to differ" in detector_finding(facts)
