"""audit_results.py: a published model's evaluation per test set, a year model's like an experiment's, a band
model's by band accuracies and never by an MAE."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from stages.lib.core.params import validate
from stages.lib.evaluation.audit_results import AUDIT_COLUMNS, evaluate_band_model, evaluate_years
from stages.lib.evaluation.band_models import true_band
from tests.evaluation.frames import ADIENCE

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def params():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["evaluate"] = {"bootstrap": 30, "confidence": 0.95, "min_group_size": 5}
    return validate(raw)


def audit_table(bands: bool) -> pd.DataFrame:
    """AUDIT_COLUMNS of 60 utkface faces (exact ages) and 20 fairface faces (ages as bands), and one photo
    that could not be read. Black faces: 6 years more error, or one band off for a band model; black
    women: every gender wrong. A band model's table still carries an age prediction (99) that must never
    become an MAE."""
    ages = np.concatenate([np.arange(20, 80), np.full(20, 24), [30]])
    n = len(ages)
    races = np.resize(["white", "black"], n)
    genders = np.resize(["male", "male", "female", "female"], n)
    black = races == "black"
    flipped = np.where(genders == "male", "female", "male")
    truth = true_band(ages, ADIENCE)
    read = np.arange(n) < n - 1
    return pd.DataFrame({
        "id": [f"f{i}" for i in range(n)], "dataset": ["utkface"] * 60 + ["fairface"] * 20 + ["utkface"],
        "split": "test", "age": ages,
        "age_pred": np.where(read, 99.0 if bands else ages + 2.0 + 6.0 * black, np.nan),
        "age_pred_argmax": np.nan, "gender": genders, "gender_prob_female": np.nan,
        "gender_pred": np.where(black & (genders == "female"), flipped, genders), "race": races, "experiment": "model",
        "age_band_source": [None] * 60 + ["20-29"] * 20 + [None],
        "band_pred": np.where(read, truth + black, -1) if bands else -1,
        "age_band_pred": None, "in_sample": "unknown", "problem": np.where(read, None, "photo unreadable"),
    })[AUDIT_COLUMNS]


def test_a_year_model_is_evaluated_like_an_experiment_per_test_set(params, tmp_path):
    headlines = evaluate_years(audit_table(bands=False), "model", params, tmp_path)
    assert list(headlines) == ["utkface", "fairface"]
    utk = headlines["utkface"]
    assert set(utk) == {"n", "mae", "gender_accuracy", "mae_gap_race", "mae_gap_gender", "mae_gap_race_x_gender",
                        "worst_group_mae", "worst_group_accuracy"}          # no change against a reference
    assert utk["n"] == 60 and utk["mae"] == pytest.approx(5.0) and utk["mae_gap_race"] == pytest.approx(6.0)
    assert utk["worst_group_accuracy"] == 0.0
    assert not [key for key in headlines["fairface"] if "mae" in key]      # ages as bands: no MAE
    for name in ("groups.csv", "gaps.csv", "significance.csv", "metrics.json", "worst_groups.csv"):
        assert (tmp_path / "utkface" / name).is_file(), name
    worst = pd.read_csv(tmp_path / "utkface" / "worst_groups.csv").set_index("statistic")
    assert worst.loc["worst_group_accuracy", "worst_group"] == "black*female"
    rejects = pd.read_csv(tmp_path / "rejects.csv")
    assert len(rejects) == 1 and "age prediction is missing" in rejects.loc[0, "reason"]


def test_a_band_model_gets_band_accuracies_per_test_set_and_never_an_mae(params, tmp_path):
    headlines = evaluate_band_model(audit_table(bands=True), "model", params, tmp_path, bands=ADIENCE)
    assert list(headlines) == ["utkface", "fairface"]
    utk = headlines["utkface"]
    assert set(utk) == {"n", "band_accuracy", "one_off_accuracy", "gender_accuracy", "worst_group_accuracy"}
    assert (utk["n"], utk["band_accuracy"], utk["one_off_accuracy"]) == (60, 0.5, 1.0)   # black faces one band off
    assert not (tmp_path / "utkface" / "groups.csv").exists()
    gaps = pd.read_csv(tmp_path / "utkface" / "band_gaps.csv").set_index(["attribute", "metric"])
    assert gaps.loc[("race", "band_accuracy"), "worst_group"] == "black"
    metrics = json.loads((tmp_path / "utkface" / "metrics.json").read_text())
    written = [pd.read_csv(tmp_path / d / f) for d in ("utkface", "fairface")
               for f in ("band_groups.csv", "band_gaps.csv", "worst_groups.csv")]
    assert not [c for table in written for c in table.columns if "mae" in c]
    assert not any(table.isin(["mae", "worst_group_mae", "mae_gap"]).any().any() for table in written)
    assert "mae" not in json.dumps(metrics) and "mae" not in json.dumps(headlines)
    rejects = pd.read_csv(tmp_path / "rejects.csv")
    assert list(rejects["reason"]) == ["photo unreadable"] and list(rejects["id"]) == ["f80"]
