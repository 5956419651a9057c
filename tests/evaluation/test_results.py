"""results.py: an experiment's evaluation on disk, written and read back."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from stages.lib.core.params import load_params, validate
from stages.lib.core.schema import PREDICTION_COLUMNS, SchemaError
from stages.lib.evaluation import results
from stages.lib.evaluation.disaggregation import GROUP_COLUMNS
from stages.lib.evaluation.groups import evaluate
from stages.lib.evaluation.intervals import Bootstrap
from tests.evaluation.frames import EDGES, predictions
from stages.lib.evaluation.worst_groups import REFERENCE
from stages.lib.reporting.roles import outsider_kinds, published_model
from tests.reporting.test_report import write_predictions
from tests.reporting.test_skin_section import toy_project

ROOT = Path(__file__).resolve().parents[2]


def test_evaluation_round_trips_through_its_files(tmp_path):
    write_predictions(tmp_path, "e", noise=5, seed=3)
    frame = pd.read_parquet(tmp_path / "reports" / "experiments" / "e" / "predictions.parquet").query("dataset == 'utkface'")
    evaluation = evaluate(frame, [0, 16, 31, 46, 61], Bootstrap(30), 30)
    results.write_evaluation(evaluation, tmp_path / "out")
    loaded = results.load_evaluation(tmp_path / "out", [0, 16, 31, 46, 61])
    pd.testing.assert_frame_equal(loaded.groups, evaluation.groups, check_dtype=False)
    assert loaded.overall == json.loads(json.dumps(evaluation.overall))
    assert set(loaded.tables) == set(evaluation.tables)


def small_evaluation(banded: bool = False):
    """An evaluation of 120 faces (two races, a planted gap), 20 resamples; ages as bands if asked."""
    rng = np.random.default_rng(0)
    ages = rng.integers(18, 70, 120)
    races = np.repeat(["white", "others"], 60)
    frame = predictions(ages, ages + rng.normal(0, 3, 120) + np.where(races == "others", 6, 0), races=races)
    if banded:
        frame = frame.assign(age_band_source=[f"{a // 10 * 10}-{a // 10 * 10 + 9}" for a in ages])
    return evaluate(frame, EDGES, Bootstrap(resamples=20), 10)


def test_every_file_written_reads_back_as_it_was(tmp_path):
    evaluation = small_evaluation()
    results.write_evaluation(evaluation, tmp_path / "utkface")
    loaded = results.load_evaluation(tmp_path / "utkface", EDGES, confidence=0.9)
    assert loaded.edges == tuple(EDGES) and loaded.confidence == 0.9
    # an empty text cell (no small group left out) reads back as missing, which the report shows empty too
    pd.testing.assert_frame_equal(loaded.gaps, evaluation.gaps.replace("", np.nan), check_dtype=False)
    pd.testing.assert_frame_equal(loaded.significance, evaluation.significance.replace("", np.nan), check_dtype=False)
    for name, table in evaluation.tables.items():
        pd.testing.assert_frame_equal(loaded.tables[name], table.reset_index(drop=True), check_dtype=False,
                                      check_categorical=False, obj=name)
    assert loaded.overall == json.loads(json.dumps(evaluation.overall))
    assert "others" in set(loaded.groups["group"])                   # a label is never read as missing
    assert list(pd.read_csv(tmp_path / "utkface" / "groups.csv").columns) == GROUP_COLUMNS


def test_loading_finds_each_test_set_and_says_what_is_missing(tmp_path):
    assert results.load_evaluations(tmp_path / "absent", EDGES) == {}
    evaluation = small_evaluation()
    for name in ("wiki", "utkface"):
        results.write_evaluation(evaluation, tmp_path / name)
    (tmp_path / "half_written").mkdir()
    assert list(results.load_evaluations(tmp_path, EDGES)) == ["utkface", "wiki"]
    with pytest.raises(FileNotFoundError, match="metrics.json not found: run the evaluate stage first"):
        results.load_evaluation(tmp_path / "half_written", EDGES)


def test_headline_keeps_few_figures_and_no_mae_where_ages_are_bands():
    evaluation = small_evaluation()
    figures = results.headline(evaluation)
    assert set(figures) == {"n", "mae", "gender_accuracy", "mae_gap_race", "mae_gap_gender", "mae_gap_race_x_gender"}
    race_gap = evaluation.gaps.query("attribute == 'race' and metric == 'mae'")["difference"].iloc[0]
    assert figures["mae_gap_race"] == round(race_gap, 3) and figures["mae_gap_race"] > 3
    assert figures["mae"] == round(evaluation.overall["mae"], 3)
    assert results.headline_line(evaluation.overall).startswith(f"MAE {evaluation.overall['mae']:.2f} RMSE ")
    banded = small_evaluation(banded=True)
    figures = results.headline(banded)
    assert set(figures) == {"n", "gender_accuracy", "age_band_accuracy"}
    assert results.headline_line(banded.overall) == f"age-band accuracy {banded.overall['age_band_accuracy']:.1%}"


def test_worst_group_headline_takes_the_worst_groups_and_their_change():
    summary = pd.DataFrame({"statistic": ["mae", "worst_group_mae", "worst_group_accuracy"],
                            "value": [5.0, 8.123456, 0.81234], "change": [0.1, -1.23456, np.nan]})
    assert results.worst_group_headline(summary) == {"worst_group_mae": 8.1235, "worst_group_mae_vs_retrained": -1.2346,
                                                     "worst_group_accuracy": 0.8123}


def test_worst_groups_of_every_test_set_are_stacked(tmp_path):
    assert results.load_worst_groups(tmp_path).empty
    for dataset, value in (("utkface", 1.0), ("wiki", 2.0)):
        (tmp_path / dataset).mkdir()
        pd.DataFrame({"dataset": [dataset], "statistic": ["mae"], "value": [value]}).to_csv(
            tmp_path / dataset / "worst_groups.csv", index=False)
    stacked = results.load_worst_groups(tmp_path)
    assert list(stacked["dataset"]) == ["utkface", "wiki"] and list(stacked["value"]) == [1.0, 2.0]


def test_read_predictions_refuses_a_missing_file_or_column(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"run the train stage for this experiment first"):
        results.read_predictions(tmp_path / "predictions.parquet")
    table = predictions([30, 40], [31.0, 39.0])
    table.drop(columns="gender_pred").to_parquet(tmp_path / "predictions.parquet")
    with pytest.raises(SchemaError, match=r"lacks columns \['gender_pred'\].*must write schema.PREDICTION_COLUMNS"):
        results.read_predictions(tmp_path / "predictions.parquet")
    table.to_parquet(tmp_path / "predictions.parquet")
    assert list(results.read_predictions(tmp_path / "predictions.parquet").columns) == PREDICTION_COLUMNS


def test_bootstrap_from_params_reads_the_evaluate_section():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["evaluate"] = {"bootstrap": 123, "confidence": 0.9, "min_group_size": 5}
    raw["seed"] = 7
    assert results.bootstrap_from(validate(raw)) == Bootstrap(resamples=123, confidence=0.9, seed=7)


def test_a_set_cut_to_a_maximum_age_and_band_only_sets_are_never_pooled():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["datasets"] = {**raw["datasets"],
                       "adults": {"adapter": "utkface", "sources": [{"path": "x"}], "options": {"min_age": 17}},
                       "children": {"adapter": "utkface", "sources": [{"path": "x"}], "options": {"max_age": 16}},
                       "others": {"adapter": "utkface", "sources": [{"path": "x"}], "options": {"max_age": 100}}}
    params = validate(raw)
    test = pd.DataFrame({"dataset": ["adults", "children", "others", "banded"], "age": [30, 8, 40, 25],
                         "age_band_source": [None, None, None, "20-29"]})
    assert results.pooled_rows(test, params)["dataset"].tolist() == ["adults", "others"]
    assert results.pooled_rows(test[test["dataset"] != "others"], params)["dataset"].nunique() == 1   # nothing to pool


def test_only_the_models_the_report_can_discuss_get_the_costly_skin_analyses():
    params = validate(yaml.safe_load((ROOT / "params.yaml").read_text()))
    only = {name for name, spec in params.experiments.items() if results.skin_breakdown_only(name, spec)}
    assert only == set(outsider_kinds(params.experiments)) - {REFERENCE}
    assert only and REFERENCE in params.experiments and published_model(params.experiments) not in only


def test_each_test_set_gets_its_skin_analysis_and_none_is_left_without_measurements(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    toy_project(tmp_path, n=200)
    params = load_params()
    test = pd.read_parquet(params.paths.experiments / "retrained" / "predictions.parquet")
    out = params.paths.experiments / "retrained" / "evaluation"
    assert results.write_skin_analyses(test, params, out, breakdown_only=False) == ["utkface"]
    assert {"skin_groups.csv", "slopes.csv"} <= {path.name for path in (out / "utkface" / "skin").iterdir()}
    (params.paths.measurements / "measurements.parquet").unlink()
    assert results.write_skin_analyses(test, params, out, breakdown_only=False) == []
    assert not (out / "utkface" / "skin").exists()


def test_a_mitigations_band_changes_are_against_its_twin_not_retrained(tmp_path, monkeypatch):
    """balanced names `plain` as its twin: its per-band changes compare it with plain's predictions on the
    same faces (a head of its own shape and start), never with retrained's."""
    monkeypatch.chdir(tmp_path)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["evaluate"]["bootstrap"] = 30
    raw["roles"] = {"pretrain": "wiki", "finetune": "utkface", "evaluate": ["utkface"]}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    params = load_params()
    assert params.reference_of("balanced") == "plain"
    folder = params.paths.experiments
    for experiment, noise, seed in (("retrained", 1.0, 1), ("plain", 6.0, 2), ("balanced", 3.0, 3)):
        write_predictions(tmp_path, experiment, noise, seed)
    results.evaluate_experiment("balanced", params)
    changes = pd.read_csv(folder / "balanced" / "evaluation" / "utkface" / "band_changes.csv")
    assert set(changes["reference"]) == {"plain"}
    test = lambda name: pd.read_parquet(folder / name / "predictions.parquet").query(  # noqa: E731
        "split == 'test' and dataset == 'utkface'")
    plain, retrained = test("plain"), test("retrained")
    oldest = changes.set_index("band").loc["61+"]
    in_band = lambda frame: (frame["age_pred"] - frame["age"]).abs()[frame["age"] >= 61].mean()  # noqa: E731
    assert oldest["mae_reference"] == pytest.approx(in_band(plain))
    assert oldest["mae_reference"] != pytest.approx(in_band(retrained))
