"""Issue 17's statistics: adjusted verdicts, the test of all groups equal beside each gap, the cluster
bootstrap, per-age-band paired changes, and no age error where ages are bands."""

import json

import numpy as np
import pandas as pd
import pytest

from stages.lib.core.labels import RACES
from stages.lib.evaluation.band_changes import band_changes, columns
from stages.lib.evaluation.disaggregation import AGE_ERROR_COLUMNS, disaggregate, group_metrics
from stages.lib.evaluation.group_gaps import GAP_COLUMNS, gaps
from stages.lib.evaluation.groups import evaluate
from stages.lib.evaluation.significance import SIGNIFICANCE_COLUMNS, significance
from stages.lib.evaluation.intervals import Bootstrap
from stages.lib.evaluation.multiplicity import adjust_families, benjamini_hochberg, holm
from stages.lib.evaluation.results import write_evaluation
from stages.lib.evaluation.worst_groups import summarise_experiments
from tests.evaluation.frames import EDGES, old_improve_middle_aged_pay, predictions


def test_holm_and_benjamini_hochberg_by_hand():
    p = [0.01, 0.04, 0.03, 0.005, np.nan]
    assert np.allclose(holm(p)[:4], [0.03, 0.06, 0.06, 0.02]) and np.isnan(holm(p)[4])
    assert np.allclose(benjamini_hochberg(p)[:4], [0.02, 0.04, 0.04, 0.02])


def test_short_families_get_holm_long_ones_benjamini_hochberg():
    table = pd.DataFrame({"family": ["race × mae"] * 5 + ["race*age_band × mae"] * 25,
                          "p_value": np.linspace(0.001, 0.5, 30)})
    adjusted = adjust_families(table, 0.05)
    assert set(adjusted.loc[adjusted["family"] == "race × mae", "adjustment"]) == {"holm"}
    assert set(adjusted.loc[adjusted["family"] == "race*age_band × mae", "adjustment"]) == {"bh"}
    assert (adjusted["p_adjusted"] >= adjusted["p_value"]).all()


def null_groups_with_one_real_difference(seed=4):
    """25 race × age-band cells of 60 faces whose errors share one distribution, but black*61+ (+6 years)."""
    rng = np.random.default_rng(seed)
    cells = [(race, age) for race in RACES for age in (10, 25, 40, 55, 70)]
    races = np.repeat([race for race, _ in cells], 60)
    ages = np.repeat([age for _, age in cells], 60)
    errors = rng.normal(0, 5, len(ages))
    errors[(races == "black") & (ages == 70)] += 6
    return predictions(ages, ages + errors, races=races, seed=seed)


def test_adjusted_significant_list_is_shorter_and_keeps_the_real_difference():
    verdicts = significance(disaggregate(null_groups_with_one_real_difference(), EDGES, Bootstrap(resamples=400), 30))
    assert list(verdicts.columns) == SIGNIFICANCE_COLUMNS
    raw, adjusted = verdicts[verdicts["significant_raw"]], verdicts[verdicts["significant"]]
    assert len(adjusted) < len(raw)
    real = verdicts.set_index(["attribute", "group", "metric"]).loc[("race*age_band", "black*61+", "mae")]
    assert real["significant"] and real["verdict"] == "above" and real["adjustment"] == "bh"
    # every adjusted claim is also a raw one, and the verdict word follows the adjusted test only
    assert set(adjusted.index) <= set(raw.index)
    assert (verdicts.loc[~verdicts["significant"], "verdict"].isin(["n.s.", "no interval"])).all()
    assert set(verdicts.loc[verdicts["attribute"] == "race", "adjustment"]) == {"holm"}


def test_a_gap_adjusted_over_every_pair_is_not_flattered_by_picking_the_extremes():
    """Five races with one error distribution: picking the worst and best first calls many gaps `worse`
    on their raw interval; their interval adjusted over the 10 pairs of races, very few."""
    raw_worse = adjusted_worse = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        ages = rng.integers(17, 80, 600)
        frame = predictions(ages, ages + rng.normal(0, 6, 600), seed=seed)
        table = gaps(disaggregate(frame, EDGES, Bootstrap(resamples=200, seed=seed), 30, attributes=["all", "race"]),
                     metrics=["mae"])
        raw_worse += int((table["verdict_raw"] == "worse").sum())
        adjusted_worse += int((table["verdict"] == "worse").sum())
    assert adjusted_worse < raw_worse and adjusted_worse <= 3
    rng = np.random.default_rng(0)
    ages = rng.integers(17, 80, 600)
    frame = predictions(ages, ages + rng.normal(0, 6, 600), seed=0)
    frame.loc[frame["race"] == "indian", "age_pred"] += 8
    table = gaps(disaggregate(frame, EDGES, Bootstrap(resamples=200), 30, attributes=["all", "race"]))
    assert list(table.columns) == GAP_COLUMNS
    mae = table.set_index("metric").loc["mae"]
    assert mae["worst_group"] == "indian" and mae["verdict"] == "worse" and mae["p_all_equal_adjusted"] < 0.01
    assert mae["significant"] and mae["adjustment"] == "holm"


def test_strongly_clustered_faces_give_a_wider_interval():
    """80 people with 10 photos each, one error per person: a face-level bootstrap treats 800 faces as
    independent; drawing whole clusters sees 80."""
    rng = np.random.default_rng(0)
    people = np.repeat(np.arange(80), 10)
    ages = rng.integers(20, 60, 800)
    predicted = ages + (rng.normal(0, 8, 80)[people] + rng.normal(0, 1, 800))
    frame = predictions(ages, predicted)
    boot = Bootstrap(resamples=400)
    faces = group_metrics(frame, EDGES, boot, 30, attributes=["all"]).iloc[0]
    clustered = group_metrics(frame.assign(cluster=[f"p{p}" for p in people]), EDGES, boot, 30,
                              attributes=["all"]).iloc[0]
    assert faces["mae"] == pytest.approx(clustered["mae"])
    assert (clustered["mae_ci_high"] - clustered["mae_ci_low"]) > 2 * (faces["mae_ci_high"] - faces["mae_ci_low"])




def banded_table():
    """FairFace-like: every age a band (`age` the band's midpoint), with a race gap in band accuracy."""
    rng = np.random.default_rng(2)
    bands = rng.choice(["20-29", "30-39", "50-59"], 900)
    mid = {"20-29": 25, "30-39": 35, "50-59": 55}
    ages = np.array([mid[b] for b in bands])
    frame = predictions(ages, ages + rng.normal(0, 6, 900), age_band_source=bands)
    frame.loc[frame["race"] == "black", "age_pred"] += 9
    return frame


def test_band_age_datasets_never_carry_an_age_error(tmp_path):
    frame = banded_table()
    evaluation = evaluate(frame, EDGES, Bootstrap(resamples=400), 30)   # p of all equal: at least 1 / 401
    assert evaluation.groups[AGE_ERROR_COLUMNS].isna().all().all()
    assert evaluation.groups["age_band_accuracy"].notna().all()
    assert set(evaluation.gaps["metric"]) == {"gender_accuracy", "age_band_accuracy"}
    assert set(evaluation.significance["metric"]) == {"gender_accuracy", "age_band_accuracy"}
    race = evaluation.gaps.set_index(["attribute", "metric"]).loc[("race", "age_band_accuracy")]
    assert race["worst_group"] == "black" and race["verdict"] == "worse"
    write_evaluation(evaluation, tmp_path)
    for name in ("groups.csv", "gaps.csv", "significance.csv", "tables/groups_detail.csv"):
        table = pd.read_csv(tmp_path / name)
        for column in [c for c in AGE_ERROR_COLUMNS if c in table.columns]:
            assert table[column].isna().all(), f"{name} carries {column}"
        if "metric" in table.columns:
            assert not table["metric"].isin(["mae", "rmse", "mean_error"]).any(), name
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert all(metrics.get(key) is None for key in AGE_ERROR_COLUMNS) and metrics["age_band_accuracy"] > 0
    assert not any(k.startswith("mae") for figures in metrics.get("gaps", {}).values() for k in figures)
    assert not (tmp_path / "tables" / "signed_error_by_predicted_band.csv").exists()
    summary, _ = summarise_experiments({"retrained": frame}, "retrained", Bootstrap(resamples=50), 30)
    assert not summary["statistic"].str.contains("mae").any() and len(summary)
    shifted = frame.assign(age_pred=frame["age_pred"] + 1)
    changes = band_changes(shifted, frame, EDGES, Bootstrap(resamples=50), dataset="toy")
    assert "mae" not in changes.columns and "mae_reference" not in changes.columns
    assert set(changes["metric"]) == {"age_band_accuracy"} and list(changes.columns) == columns("age_band_accuracy")


def test_audit_adjusts_tests_gaps_and_writes_band_changes(tmp_path):
    from stages import audit

    reference, experiment = old_improve_middle_aged_pay()
    columns_out = ["id", "age", "age_pred", "gender", "race"]
    experiment.assign(cluster=[f"p{i // 2}" for i in range(len(experiment))])[columns_out + ["cluster"]].to_csv(
        tmp_path / "mine.csv", index=False)
    reference[columns_out].to_csv(tmp_path / "theirs.csv", index=False)
    out = tmp_path / "audit"
    audit.main([str(tmp_path / "mine.csv"), "--out", str(out), "--reference", str(tmp_path / "theirs.csv"),
                "--bootstrap", "200", "--no-figures", "--age-bands", "0,16,31,46,61"])
    significance_table = pd.read_csv(out / "significance.csv")
    assert list(significance_table.columns) == SIGNIFICANCE_COLUMNS
    assert set(significance_table["adjustment"].dropna()) <= {"holm", "bh"}
    assert list(pd.read_csv(out / "gaps.csv").columns) == GAP_COLUMNS
    changes = pd.read_csv(out / "band_changes.csv").set_index("band")
    assert changes.loc["61+", "verdict"] == "improves" and changes.loc["46-60", "verdict"] == "worsens"
    assert "cluster" in (out / "report.md").read_text()        # the input section names the cluster column


def test_audit_refuses_a_reference_of_other_faces(tmp_path, capsys):
    from stages import audit

    reference, experiment = old_improve_middle_aged_pay()
    experiment[["id", "age", "age_pred"]].to_csv(tmp_path / "mine.csv", index=False)
    reference.assign(id="other" + reference["id"])[["id", "age", "age_pred"]].to_csv(tmp_path / "theirs.csv",
                                                                                    index=False)
    assert audit.main([str(tmp_path / "mine.csv"), "--out", str(tmp_path / "out"), "--reference",
                       str(tmp_path / "theirs.csv"), "--bootstrap", "0", "--no-figures"]) == 2
    assert "shares no face" in capsys.readouterr().err


def test_evaluate_stage_writes_band_changes_for_rebalancing_experiments_only(tmp_path, monkeypatch):
    from pathlib import Path

    from stages import evaluate as stage

    import yaml

    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())
    raw["evaluate"]["bootstrap"] = 200
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    reference, experiment = old_improve_middle_aged_pay()
    banded = banded_table().iloc[:300].assign(dataset="fairface", id=lambda f: "ff" + f["id"])
    for name, table in (("retrained", pd.concat([reference, banded])),
                        ("oversample_x2", pd.concat([experiment, banded.assign(age_pred=banded["age_pred"] - 2)]))):
        folder = tmp_path / "reports/experiments" / name
        folder.mkdir(parents=True)
        table.assign(experiment=name).to_parquet(folder / "predictions.parquet")
    stale = tmp_path / "reports/experiments/retrained/evaluation/gone_set"   # a test set of an earlier run
    stale.mkdir(parents=True)
    for name in ("retrained", "oversample_x2"):
        assert stage.main([name]) == 0
    evaluation = tmp_path / "reports/experiments"
    assert not stale.exists() and {f.name for f in (evaluation / "retrained/evaluation").iterdir() if f.is_dir()} == {
        "toy", "fairface"}
    changes = pd.read_csv(evaluation / "oversample_x2/evaluation/toy/band_changes.csv").set_index("band")
    assert changes.loc["61+", "verdict"] == "improves" and changes.loc["46-60", "verdict"] == "worsens"
    assert "mae" not in pd.read_csv(evaluation / "oversample_x2/evaluation/fairface/band_changes.csv").columns
    assert not list((evaluation / "retrained").rglob("band_changes.csv"))
    headline = json.loads((evaluation / "oversample_x2/metrics.json").read_text())
    assert "mae" in headline["toy"] and "mae" not in headline["fairface"]


def test_paired_resamples_draw_a_clusters_faces_of_a_stratum_together():
    from stages.lib.evaluation.worst_groups import stratified_counts

    strata = np.array([0, 0, 0, 0, 1, 1])
    clusters = np.array([0, 0, 1, 2, 0, 3])      # cluster 0 spans both strata: drawn together within each
    counts = stratified_counts(strata, 200, np.random.default_rng(0), clusters)
    assert (counts[:, 0] == counts[:, 1]).all() and (counts[:, 0] != counts[:, 4]).any()
    assert (counts[:, strata == 0].sum(axis=1) % 1 == 0).all() and counts[:, 0].max() >= 2
    alone = stratified_counts(strata, 50, np.random.default_rng(3))
    assert np.array_equal(alone, stratified_counts(strata, 50, np.random.default_rng(3), np.arange(6)))
