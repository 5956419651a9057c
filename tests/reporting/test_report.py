import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from stages import evaluate as evaluate_stage
from stages import report as report_stage
from stages.lib.evaluation import results
from stages.lib.evaluation.plot_data import dvc_tables
from stages.lib.core.labels import RACES
from stages.lib.evaluation.disaggregation import GROUP_COLUMNS
from stages.lib.core.schema import PREDICTION_COLUMNS

ROOT = Path(__file__).resolve().parents[2]


def write_params(folder: Path, bootstrap: int = 40) -> None:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["evaluate"]["bootstrap"] = bootstrap
    raw["roles"] = {"pretrain": "wiki", "finetune": "utkface", "evaluate": ["wiki", "utkface"]}  # the predictions' sets
    (folder / "params.yaml").write_text(yaml.safe_dump(raw))


def write_predictions(folder: Path, experiment: str, noise: float, seed: int, splits=("train", "val", "test"),
                      fairface: bool = False):
    """utkface rows with race, wiki rows without (as the real manifests), fairface rows with age bands
    only if asked: the predictions contract. Every experiment predicts the same faces; `seed` draws its
    errors."""
    faces, rng = np.random.default_rng(0), np.random.default_rng(seed)
    parts = []
    for dataset, n, has_race in (("utkface", 500, True), ("wiki", 300, False), ("fairface", 200, True)):
        if dataset == "fairface" and not fairface:
            continue
        age = faces.integers(16, 90, n)
        gender = faces.choice(["male", "female"], n)
        race, split = faces.choice(RACES, n), faces.choice(splits, n)
        pred = age + rng.normal(0, noise, n) - 0.2 * (age - 40)
        prob = np.clip(rng.normal(np.where(gender == "female", 0.7, 0.3), 0.2), 0, 1)
        part = pd.DataFrame({
            "id": [f"{dataset}/{i}" for i in range(n)], "dataset": dataset, "split": split,
            "age": age, "age_pred": pred, "age_pred_argmax": pred.round(), "gender": gender,
            "gender_prob_female": prob, "gender_pred": np.where(prob >= 0.5, "female", "male"),
            "race": race if has_race else None, "experiment": experiment})
        if dataset == "fairface":     # a band's midpoint as the age, the band beside it
            low = (age // 10) * 10
            part = part.assign(age=low + 5, age_band_source=[f"{a}-{a + 9}" for a in low])
        parts.append(part)
    path = folder / "reports" / "experiments" / experiment / "predictions.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pd.concat(parts)
    table[PREDICTION_COLUMNS + (["age_band_source"] if fairface else [])].to_parquet(path)


@pytest.fixture()
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path)
    write_predictions(tmp_path, "published", noise=9, seed=0)
    write_predictions(tmp_path, "retrained", noise=5, seed=1)
    return tmp_path


def test_data_tables_count_what_each_stage_kept_and_lost():
    from stages.lib.reporting.report import crop_rejection_by_race, pipeline_counts

    prepared = {"utkface": {"rows_in": 5002, "kept": 5000, "rejected_by_reason": {"name_unparsed": 2}}}
    crops = {"datasets": {"utkface": {"kept": 4990, "rejected_by_reason": {"no_face": 10},
                                      "routes": {"yunet": 5000},
                                      "rejection_rate_by": {"race": {"white": 0.0, "black": 0.004}}}}}
    split = {"datasets": {"utkface": {"rows": {"train": 2994, "val": 499, "test": 1497}}}}
    row = pipeline_counts(prepared, crops, split).iloc[0]
    assert (row["read"], row["kept by prepare"], row["cropped"]) == (5002, 5000, 4990)
    assert row["rejected by prepare"] == "name_unparsed 2" and row["rejected by crop"] == "no_face 10"
    assert row["crops made by"] == "yunet 5,000" and row["train / val / test"] == "2,994 / 499 / 1,497"
    lost = crop_rejection_by_race(crops)
    assert lost.iloc[0].to_dict() == {"dataset": "utkface", "white": "0.0%", "black": "0.4%"}
    assert crop_rejection_by_race({"datasets": {"d": {"rejection_rate_by": {"race": {"white": 0.0}}}}}).empty


def test_evaluate_stage_writes_contract_outputs_per_dataset(project):
    evaluate_stage.main(["retrained"])
    folder = project / "reports" / "experiments" / "retrained"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics) == {"utkface", "wiki", "all", "rejected_rows"} and metrics["rejected_rows"] == 0
    test = pd.read_parquet(folder / "predictions.parquet").query("split == 'test'")
    assert metrics["utkface"]["n"] == (test["dataset"] == "utkface").sum()
    error = (test["age_pred"] - test["age"]).abs()
    assert metrics["all"]["mae"] == pytest.approx(error.mean(), abs=1e-3)
    for dataset in ("utkface", "wiki", "all"):
        groups = pd.read_csv(folder / "evaluation" / dataset / "groups.csv")
        assert list(groups.columns) == GROUP_COLUMNS
    wiki = pd.read_csv(folder / "evaluation" / "wiki" / "groups.csv")
    assert not wiki["attribute"].str.contains("race").any()
    for kind in dvc_tables(results.load_evaluation(folder / "evaluation" / "utkface", [0, 16, 31, 46, 61])):
        assert (project / "reports" / "plots" / kind / "retrained" / "utkface.csv").exists()
    race = pd.read_csv(project / "reports" / "plots" / "error_by_age_race" / "retrained" / "wiki.csv")
    assert list(race.columns) == ["age", *RACES] and race.empty


def test_evaluate_stage_refuses_what_it_cannot_use(project, capsys):
    write_predictions(project, "oversample_x2", noise=5, seed=2, splits=("train",))
    for experiment, said in (("nonexistent", "known"), ("reweight", "train stage"), ("oversample_x2", "no test rows")):
        assert evaluate_stage.main([experiment]) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"evaluate@{experiment}: ") and said in error and "Traceback" not in error


def test_headline_metrics_stay_few(project):
    evaluate_stage.main(["retrained"])
    metrics = json.loads((project / "reports" / "experiments" / "retrained" / "metrics.json").read_text())
    worst = {"worst_group_mae", "worst_group_accuracy", "worst_group_mae_vs_retrained",
             "worst_group_accuracy_vs_retrained"}
    assert set(metrics["utkface"]) == {"n", "mae", "gender_accuracy", "mae_gap_race", "mae_gap_gender",
                                       "mae_gap_race_x_gender"} | worst
    assert set(metrics["wiki"]) == {"n", "mae", "gender_accuracy", "mae_gap_gender"}  # no race labels
    full = json.loads((project / "reports" / "experiments" / "retrained" / "evaluation" / "utkface" / "metrics.json").read_text())
    assert full["mae_ci_low"] < metrics["utkface"]["mae"] < full["mae_ci_high"]


def test_report_reads_every_experiment_and_says_what_is_missing(project):
    for experiment in ("published", "retrained"):
        evaluate_stage.main([experiment])
    history = project / "models" / "retrained" / "history.csv"
    history.parent.mkdir(parents=True)
    pd.DataFrame({"epoch": [1, 2, 3], "loss": [2.0, 1.5, 1.2], "val_loss": [2.1, 1.7, 1.8]}).to_csv(history, index=False)
    quality = project / "data" / "interim" / "utkface" / "quality.json"
    quality.parent.mkdir(parents=True)
    quality.write_text(json.dumps({"rows_in": 804, "kept": 800, "rejected": 4,
                                   "rejected_by_reason": {"age out of range": 4}}))
    report_stage.main([])
    text = (project / "reports" / "report.md").read_text()
    for expected in ("R1–R3", "Training (R4)", "R5", "Experiments compared (R6)", "best retrained model, retrained",
                     "R10", "R11", "R12", "(R9)", "**R14**", "not evaluated yet: ",
                     "age out of range", "Not available", "data/crops/quality.json",
                     "What is significant and what is not", "Mitigation side by side",
                     "tested on other faces than retrained", "The probe stage has not run"):
        assert expected in text, expected
    absent = text.split("not evaluated yet: ")[1].split(".")[0]
    assert set(absent.split(", ")) == {"oversample_x2", "oversample_x3", "reweight", "retrained_random", "naive_split", "study_protocol",
                                       "plain", "balanced", "group_dro", "adversarial", "last_layer"}
    links = [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert len(links) > 10
    for link in links:
        assert (project / "reports" / link).exists(), link
    assert (project / "reports" / "figures" / "loss_curves.png").exists()
    correction = pd.read_csv(project / "reports" / "correction.csv")
    assert correction["model"].iloc[0] == "none" and correction["n_fit"].iloc[1] > 0
    experiments = pd.read_csv(project / "reports" / "plots" / "experiments" / "utkface.csv")
    assert list(experiments["experiment"]) == ["published", "retrained"]


def test_r14_credits_retraining_and_rebalancing_each_with_its_own_cut(project):
    write_predictions(project, "oversample_x2", noise=5, seed=1)       # the retrained model's very predictions
    for experiment in ("published", "retrained", "oversample_x2"):
        evaluate_stage.main([experiment])
    report_stage.main([])
    text = (project / "reports" / "report.md").read_text()
    r14 = text.split("**R14**")[1].split("\n## ")[0]
    rows = {line.split(" | ")[0].lstrip("| "): line for line in r14.splitlines() if line.startswith("| ")}
    assert "published → retrained" in rows["retraining"] and rows["retraining"].endswith("| better |")
    assert "retrained → oversample_x2" in rows["rebalancing"]
    assert "+0.00 [+0.00, +0.00]" in rows["rebalancing"] and rows["rebalancing"].endswith("| no clear difference |")


def test_band_only_ages_show_band_accuracy_and_are_never_pooled(project):
    write_predictions(project, "retrained", noise=5, seed=1, fairface=True)
    evaluate_stage.main(["retrained"])
    folder = project / "reports" / "experiments" / "retrained" / "evaluation"
    pooled = pd.read_csv(folder / "all" / "groups.csv").query("attribute == 'all'")["n"].iloc[0]
    per_set = {name: pd.read_csv(folder / name / "groups.csv").query("attribute == 'all'")["n"].iloc[0]
               for name in ("utkface", "wiki", "fairface")}
    assert pooled == per_set["utkface"] + per_set["wiki"]                 # FairFace's midpoints stay out
    headline = json.loads((folder.parent / "metrics.json").read_text())
    assert "mae" not in headline["fairface"] and 0 <= headline["fairface"]["age_band_accuracy"] <= 1
    report_stage.main([])
    text = (project / "reports" / "report.md").read_text()
    table = text.split("## Every experiment\n\n")[1].split("\n\n")[1]   # the main table
    row = next(line for line in table.splitlines() if "| fairface |" in line).split(" | ")
    header = table.splitlines()[0].split(" | ")
    mae = next(i for i, name in enumerate(header) if name.startswith("MAE"))
    assert row[mae] == "" and row[-1].rstrip(" |").endswith("%")


def test_report_without_any_evaluation_says_so(project):
    report_stage.main([])
    text = (project / "reports" / "report.md").read_text()
    assert "No experiment has been evaluated yet" in text and "## Data" in text
