import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stages import audit
from stages.lib.evaluation.disaggregation import GROUP_COLUMNS
from stages.lib.evaluation.predictions import read_table

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
PUBLISHED = SHARED / "reference" / "published-predictions"


# ------------------------------------------------------------------------------------------------
# The command (reading a table into the predictions contract: tests/evaluation/test_predictions.py)


def synthetic_table(n=400, seed=0) -> pd.DataFrame:
    """A table in another study's style: M/F words, race words, file names, an unknown column, bad rows."""
    rng = np.random.default_rng(seed)
    age = rng.integers(16, 95, n)
    sex = rng.choice(["M", "F"], n)
    pred = age + rng.normal(0, 6, n) + np.where(sex == "F", 4, 0)
    frame = pd.DataFrame({"real_age": age, "Sex": sex, "Ethnicity": rng.choice(["White", "Black", "Asian"], n),
                          "predicted_age": pred.round(1), "p_female": np.clip(rng.normal(0.5, 0.3, n), 0, 1),
                          "notes": "ignored"})
    frame.loc[0, "Sex"] = "??"
    frame.loc[1, "predicted_age"] = np.nan
    return frame


def test_audit_command_writes_every_output(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)                 # no params.yaml: built-in defaults
    synthetic_table().to_csv(tmp_path / "theirs.csv", index=False)
    audit.main(["theirs.csv", "--out", "out", "--bootstrap", "50", "--age-bands", "0,20,40,60"])
    out = tmp_path / "out"
    groups = pd.read_csv(out / "groups.csv")
    assert list(groups.columns) == GROUP_COLUMNS
    assert {"all", "race", "gender", "age_band", "race*gender"} <= set(groups["attribute"])
    assert set(groups.loc[groups["attribute"] == "age_band", "group"]) == {"0-19", "20-39", "40-59", "60+"}
    assert groups["gender_accuracy"].notna().all()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 398 and metrics["rows_rejected"] == 2
    rejects = pd.read_csv(out / "rejects.csv")
    assert list(rejects["row"]) == [0, 1] and "'??'" in rejects.loc[0, "reason"]
    report = (out / "report.md").read_text()
    assert "built-in defaults" in report and "398 evaluated" in report and "gender accuracy" in report
    for link in [line.split("](")[1].rstrip(")") for line in report.splitlines() if line.startswith("![")]:
        assert (out / link).exists(), link
    assert (out / "figures" / "gender_accuracy_race_gender.png").exists()
    assert "MAE" in capsys.readouterr().out


def test_audit_says_which_breakdowns_it_skips(tmp_path):
    pd.DataFrame({"age": [20, 30, 40, 50], "pred": [22, 28, 45, 40]}).to_csv(tmp_path / "t.csv", index=False)
    audit.main([str(tmp_path / "t.csv"), "--out", str(tmp_path / "o"), "--pred-col", "pred", "--bootstrap", "0",
                "--no-figures"])
    report = (tmp_path / "o" / "report.md").read_text()
    assert "Breakdowns skipped" in report and "**gender**" in report and "**race**" in report
    assert set(pd.read_csv(tmp_path / "o" / "groups.csv")["attribute"]) == {"all", "age_band"}


def test_audit_refuses_a_column_that_is_not_there(tmp_path, capsys):
    pd.DataFrame({"age": [20], "age_pred": [21]}).to_csv(tmp_path / "t.csv", index=False)
    assert audit.main([str(tmp_path / "t.csv"), "--out", str(tmp_path / "o"), "--race-col", "ethnicity"]) == 2
    assert "--race-col" in capsys.readouterr().err


def test_audit_reads_parquet_and_evaluates_one_split(tmp_path):
    frame = synthetic_table(200).assign(split=["val", "test"] * 100)
    frame.to_parquet(tmp_path / "t.parquet")
    audit.main([str(tmp_path / "t.parquet"), "--out", str(tmp_path / "o"), "--split", "test", "--bootstrap", "0",
                "--correction", "--no-figures"])
    assert not (tmp_path / "o" / "figures").exists()
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["n"] == 99                      # row 1 (a test row) has no prediction
    correction = pd.read_csv(tmp_path / "o" / "correction.csv")
    assert correction.loc[0, "model"] == "none" and correction["n_judged"].iloc[0] == 99
    assert "fitted on the val split" in (tmp_path / "o" / "report.md").read_text().lower()


def test_audit_refuses_numeric_gender_without_a_convention(tmp_path, capsys):
    table = synthetic_table(100).assign(gender_pred=lambda t: (t["Sex"] == "M").astype(int))   # deepface style
    table.to_csv(tmp_path / "t.csv", index=False)
    assert audit.main([str(tmp_path / "t.csv"), "--out", str(tmp_path / "o"), "--bootstrap", "0",
                       "--no-figures"]) == 2
    message = capsys.readouterr().err.rstrip("\n")
    assert message.startswith(f"audit: {tmp_path / 't.csv'}: ") and "--gender-codes" in message
    assert "\n" not in message
    audit.main([str(tmp_path / "t.csv"), "--out", str(tmp_path / "o"), "--bootstrap", "0", "--no-figures",
                "--gender-codes", "deepface"])
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["gender_codes"] == "deepface" and metrics["gender_accuracy"] == 1.0
    assert "numeric gender codes read as deepface: 0 = female, 1 = male" in (tmp_path / "o" / "report.md").read_text()


def test_bad_age_bands_are_refused():
    with pytest.raises(audit.AuditError, match="increasing"):
        audit.parse_bands("0,30,20")


# ------------------------------------------------------------------------------------------------
# The study's own published predictions


def independent_figures(path: Path, pred_column: str) -> tuple[float, float]:
    table = pd.read_csv(path)
    error = table[pred_column].astype(float) - table["age"].astype(float)
    return float(error.abs().mean()), float(np.sqrt((error ** 2).mean()))


@pytest.mark.shared
@pytest.mark.parametrize("file, flags, study", [
    ("utk_uncropped_age_predictions.csv", ["--pred-col", "pre_age"], {"mae": 10.1, "rmse": 14.4}),
    ("error_wiki_test_utk_adam.csv", ["--pred-col", "Weighted_Avg", "--argmax-col", "ArgMax"],
     {"mae": 8.4, "rmse": 11.3, "mae_argmax": 8.7}),
])
def test_audit_reproduces_the_published_numbers(tmp_path, file, flags, study):
    path = PUBLISHED / file
    if not path.exists():
        pytest.skip(f"{path} absent: the study's published predictions live in ../shared beside the repo")
    audit.main([str(path), "--out", str(tmp_path), "--bootstrap", "100", "--gender-codes", "utkface", *flags])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    mae, rmse = independent_figures(path, flags[1])
    assert metrics["rows_rejected"] == 0 and metrics["n"] == len(read_table(path))
    assert metrics["mae"] == pytest.approx(mae, abs=0.01)
    assert metrics["rmse"] == pytest.approx(rmse, abs=0.01)
    for key, printed in study.items():
        assert round(metrics[key], 1) == printed, f"{key}: {metrics[key]:.3f} vs the study's {printed}"
    if "mae_argmax" in study:
        assert metrics["mae_argmax"] > metrics["mae"]               # argmax is worse, as the study found
    groups = pd.read_csv(tmp_path / "groups.csv")
    assert set(groups.loc[groups["attribute"] == "race", "group"]) == {"white", "black", "asian", "indian", "others"}
    assert groups["gender_accuracy"].isna().all()                  # no gender predictions in these tables
    figures = {p.stem for p in (tmp_path / "figures").glob("*.png")}
    assert {"predicted_vs_actual", "error_by_age_gender", "error_by_age_race", "mae_by_race",
            "signed_error_by_predicted_band"} <= figures
