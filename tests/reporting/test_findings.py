"""The report says what the data supports about the model of each section's role (issue 17).

Fixtures are built so that the wrong behaviour would show: a gap significant only before adjustment, a
control with the lowest test MAE, a band change the adjusted test does not hold, ... (the choice of the
best model: test_roles.py; the mitigation section: test_mitigation.py; figures: test_figures.py)
"""

import pandas as pd
import yaml

from stages.lib.core.params import validate
from stages.lib.reporting.comparisons import paired_split_comparison
from stages.lib.reporting.findings import Facts, findings, mitigation_finding, published_gender_finding
from tests.reporting.test_markdown_adjusted import unsupported_adjusted
from tests.reporting.toy_experiments import BOOT, ROOT, params, predictions


# ----- findings: a sentence only where the (adjusted) interval supports it -----------------------------

ADJUSTED_GAP = {"tests": 45, "groups_compared": 10, "adjusted_confidence": 1 - 0.05 / 45,
                "difference_adjusted_ci_low": -0.68, "difference_adjusted_ci_high": -0.36, "omnibus_statistic": 61.2,
                "omnibus_df": 9, "p_all_equal": 1e-9, "p_all_equal_adjusted": 3e-9}


def _gap_evaluation(significant, adjusted=True):
    gaps = pd.DataFrame([{"attribute": "race*gender", "metric": "gender_accuracy", "worst_group": "black*female",
                          "worst_n": 120, "worst": 0.458, "best_group": "indian*male", "best_n": 150, "best": 0.98,
                          "difference": -0.52, "difference_ci_low": -0.6, "difference_ci_high": -0.44,
                          **(ADJUSTED_GAP if adjusted else {}),
                          "verdict": "worse", **({} if significant is None else {"significant": significant})}])
    return type("E", (), {"gaps": gaps, "overall": {}})()


def test_a_gap_finding_follows_the_adjusted_verdict_where_there_is_one():
    facts = Facts(params=params(), dataset="utkface", published="published")
    facts.published_evaluations = {"utkface": _gap_evaluation(None, adjusted=False)}
    sentence = published_gender_finding(facts)
    assert "no multiplicity adjustment" in sentence and "45.8% of black female" in sentence and "raw interval" in sentence
    facts.published_evaluations = {"utkface": _gap_evaluation(True)}
    sentence = published_gender_finding(facts)
    assert ("-52.0 [-60.0, -44.0] pts (raw interval; adjusted 99.9% interval [-68.0, -36.0] pts, Bonferroni over the "
            "45 pairs of the 10 groups compared; all 10 groups equal: Q = 61.2 (9 df), Holm-adjusted p < 0.001)"
            in sentence)
    facts.published_evaluations = {"utkface": _gap_evaluation(False)}    # raw interval excludes 0, adjusted does not
    assert published_gender_finding(facts) is None
    said, unsaid = findings(facts)
    assert not any("black female" in s for s in said) and any("gender-accuracy gap" in u for u in unsaid)
    assert any("band_changes" in u for u in unsaid)                      # absent columns are said to be absent



def test_the_retrained_models_gap_is_said_beside_the_published_ones():
    from stages.lib.reporting.findings import retrained_gender_finding

    facts = Facts(params=params(), dataset="utkface", published="published", reference="retrained")
    published = _gap_evaluation(True)
    retrained = _gap_evaluation(True)
    retrained.gaps = retrained.gaps.assign(difference=-0.182, difference_ci_low=-0.263, difference_ci_high=-0.112,
                                           worst=0.777, best=0.959, best_group="white*male",
                                           difference_adjusted_ci_low=-0.31, difference_adjusted_ci_high=-0.06)
    facts.published_evaluations = {"utkface": published}
    facts.evaluations = {"retrained": {"utkface": retrained}}
    sentence = retrained_gender_finding(facts)
    assert sentence.startswith("Retrained (retrained) gets gender right for 77.7% of black female faces")
    assert "-18.2 [-26.3, -11.2] pts (raw interval; adjusted 99.9% interval [-31.0, -6.0] pts" in sentence
    assert sentence.endswith("The published model's gap on the same test set: -52.0 pts.")
    retrained.gaps = retrained.gaps.assign(significant=False, difference_adjusted_ci_high=0.01)
    assert retrained_gender_finding(facts) is None

# ----- leakage: paired on shared faces ------------------------------------------------------------------

def test_leakage_is_compared_on_the_test_faces_both_splits_share():
    grouped = predictions(5, 5, seed=1, ids=range(0, 400)).query("split == 'test'")
    naive = predictions(5, 3, seed=2, ids=range(200, 600)).query("split == 'test'")
    table = paired_split_comparison(grouped, naive, BOOT).set_index("metric")
    shared = len(set(grouped["id"]) & set(naive["id"]))
    assert table.loc["MAE (years)", "shared test faces"] == shared < len(grouped)
    assert "[" in table.loc["MAE (years)", "naive − grouped [CI]"]
    assert paired_split_comparison(grouped, naive.assign(id="x" + naive["id"]), BOOT).empty


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
    assert "adjusted" in text and unsupported_adjusted(text) == []       # every "adjusted" shows its number


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
                          "ci_low": [0.51, -3.89, -0.01], "ci_high": [1.68, -1.92, 0.2], "p_value": [0.02, 0.0001, 0.06],
                          "p_adjusted": [0.003, 0.0005, 0.12], "significant": [True, True, False]})
    phrases, tests = band_change_phrases({"oversample_x3": table}, "utkface", 0.05)
    assert tests == 3 and phrases == ["oversample_x3 (against retrained): 46-60 +1.09 [+0.51, +1.68] (adjusted p 0.040), "
                                      "61+ -2.91 [-3.89, -1.92] (adjusted p < 0.001)"]
    # listed beside another experiment's bands, the family is all their tests: 46-60 no longer survives
    other = table.assign(p_value=[0.2, 0.3, 0.4], ci_low=-0.5)
    phrases, tests = band_change_phrases({"oversample_x3": table, "reweight": other}, "utkface", 0.05)
    assert tests == 6 and phrases == ["oversample_x3 (against retrained): 61+ -2.91 [-3.89, -1.92] (adjusted p < 0.001)"]
    assert band_change_phrases({"oversample_x3": table}, "fairface", 0.05) == ([], 0)


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
    # the lowest group is named with its Wilson interval (60/100: [50.2%, 69.1%]), not claimed to differ
    assert "yunet finds a face in 98.5%" in sentence and (
        "haar's lowest rate of the race × gender groups is for black female (60.0% [50.2%, 69.1%] found, n=100)"
        in sentence)
    crops["datasets"]["utkface"]["detection_on_precropped"]["haar"] = measured({"white*male": 99, "black*female": 97})
    assert "not shown to differ" in detector_finding(facts)


def test_r2_reads_the_aligned_sets_never_a_set_cut_to_children():
    from types import SimpleNamespace

    from stages.lib.reporting.findings import aligned_sets

    def evaluation(mae):
        return SimpleNamespace(overall={"mae": mae, "mae_ci_low": mae - 1, "mae_ci_high": mae + 1})

    def dataset(**options):
        return SimpleNamespace(options=options)

    params = SimpleNamespace(datasets={
        "utkface": dataset(version="aligned", min_age=17), "utkface_children": dataset(version="aligned", max_age=16),
        "utkface_wild": dataset(version="in_the_wild"), "fairface": dataset()})
    evaluated = {"utkface_children": evaluation(26.7), "utkface": evaluation(11.7), "utkface_wild": evaluation(10.0)}
    assert aligned_sets(params, evaluated, "utkface") == ["utkface"]               # real-offline: the main set
    assert aligned_sets(params, evaluated, "utkface_wild") == ["utkface"]          # full: the aligned release
    assert aligned_sets(params, {"fairface": evaluation(5.0)}, "fairface") == ["fairface"]   # none aligned


def test_leakage_verdicts_survive_holm_over_the_two_metrics():
    """A naive split whose MAE is clearly lower on the shared faces is 'flattered'; a change whose raw
    p-value is 0.03 does not survive Holm over the two metrics (0.06)."""
    import numpy as np
    import pytest
    rng = np.random.default_rng(0)
    n = 400
    base = pd.DataFrame({"id": [f"f{i}" for i in range(n)], "age": 30.0, "gender": "female", "gender_pred": "female"})
    errors = 20 + rng.uniform(0, 2, n)      # far from 0: |error| moves exactly as the error
    grouped = base.assign(age_pred=30 + errors)
    table = paired_split_comparison(grouped, base.assign(age_pred=30 + errors / 2), BOOT).set_index("metric")
    assert table.loc["MAE (years)", "verdict"] == "the naive split scores better: flattered"
    assert table.loc["gender accuracy", "verdict"] == "no difference shown"
    noise = rng.normal(size=n)
    noise = (noise - noise.mean()) / noise.std(ddof=1) * 2.0       # mean 0, sd 2: t = 0.217 / (2 / 20) = 2.17
    row = paired_split_comparison(grouped, base.assign(age_pred=30 + errors - 0.217 + noise), BOOT).set_index(
        "metric").loc["MAE (years)"]
    assert row["verdict"] == "no difference shown" and float(row["p (Holm over the metrics)"]) == pytest.approx(0.06, abs=0.003)


def test_the_mitigation_finding_names_each_mitigations_twin():
    rows = pd.DataFrame({"dataset": "utkface", "experiment": ["balanced", "group_dro"], "statistic": "mae_gap",
                         "reference": "plain", "change": [-1.0, 0.2], "change_ci_low": [-1.5, -0.1],
                         "change_ci_high": [-0.5, 0.5], "change_p": [0.001, 0.4], "change_p_adjusted": [0.002, 0.4],
                         "change_significant": [True, False], "change_adjustment": "holm", "change_tests": 2})
    facts = Facts(params=params(), dataset="utkface", reference="retrained", worst_groups=rows,
                  mitigations=["balanced", "group_dro"])
    text = mitigation_finding(facts)
    assert text.startswith("Against their twins (balanced vs plain) on the same test faces, these mitigations narrow")
    none = mitigation_finding(Facts(params=params(), dataset="utkface", reference="retrained",
                                    worst_groups=rows.assign(change_significant=False), mitigations=["balanced"]))
    assert "every change against its twin (balanced vs plain) holds 0" in none
