"""The audit CLI's skin-colour part (reporting/skin_audit.py), through the command itself."""

import numpy as np
import pandas as pd

from stages import audit
from tests.evaluation.skin_frames import planted


def _their_table(n: int = 500) -> pd.DataFrame:
    predictions, measurements = planted(n=n, skin_effect=1.5, seed=4)
    table = predictions.drop(columns=["cluster"]).merge(measurements, on="id")
    table = table.rename(columns={"skin_lightness": "Skin_Lightness"})      # names matched case-insensitively
    table.loc[0, "age_pred"] = np.nan                                        # a rejected row: alignment kept
    return table


def test_a_table_with_skin_columns_gets_the_skin_breakdown_slopes_and_adjusted_gaps(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    table = _their_table()
    table.to_csv("theirs.csv", index=False)
    audit.main(["theirs.csv", "--out", "out", "--bootstrap", "30", "--no-figures"])
    skin = tmp_path / "out" / "skin"
    groups = pd.read_csv(skin / "skin_groups.csv")
    paper = groups[groups["attribute"] == "lightness_paper"].set_index("group")["n"]
    kept = table.iloc[1:]
    assert paper["< 60"] == (kept["Skin_Lightness"] < 60).sum() and paper["≥ 60"] == (kept["Skin_Lightness"] >= 60).sum()
    assert {"slopes.csv", "adjusted_gaps.csv", "gender_auc.csv"} <= {p.name for p in skin.iterdir()}
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Skin colour" in report and "lightness_quintile*gender" in report
    assert "move with skin L* within" in report and "not \"the real\" gap" in report
    assert "no skin_lightness" not in capsys.readouterr().out


def test_without_skin_columns_one_line_says_so_and_the_audit_goes_on(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _their_table(80).drop(columns=["Skin_Lightness", "skin_hue"]).to_csv("theirs.csv", index=False)
    audit.main(["theirs.csv", "--out", "out", "--bootstrap", "0", "--no-figures"])
    out = capsys.readouterr().out
    assert out.count("no skin_lightness / skin_hue column") == 1
    assert (tmp_path / "out" / "groups.csv").exists() and not (tmp_path / "out" / "skin").exists()
    assert "## Skin colour" not in (tmp_path / "out" / "report.md").read_text()
