"""The audit command's report (reporting/audit_report.py): what was read, the settings, the files."""

from pathlib import Path

import numpy as np
import pandas as pd

from stages.lib.evaluation.groups import evaluate
from stages.lib.evaluation.intervals import Bootstrap
from stages.lib.evaluation.predictions import normalise_predictions
from stages.lib.reporting.audit_report import FILES, AuditedTable, AuditSettings, audit_report, gender_codes_line


def table(n=120, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ages = rng.integers(1, 90, n)
    return pd.DataFrame({"age": ages, "age_pred": ages + rng.normal(0, 5, n).round(1),
                         "gender": rng.choice(["male", "female"], n), "race": rng.integers(0, 5, n)})


def test_the_report_states_rows_settings_children_below_the_first_band_and_every_file(tmp_path):
    raw = table()
    normalised = normalise_predictions(raw, dataset="theirs")
    kept = normalised.frame
    settings = AuditSettings(edges=(16, 31, 46, 61), bootstrap=Bootstrap(0, 0.9, 1), min_group_size=10,
                             source="built-in defaults")
    evaluation = evaluate(kept, settings.edges, settings.bootstrap, settings.min_group_size, series="theirs")
    audited = AuditedTable(Path("theirs.csv"), "theirs", len(raw), normalised, kept, None)
    report = audit_report(audited, evaluation, settings, out=tmp_path, figures={}, correction=None)
    assert report.startswith("# Audit of theirs")
    assert f"{len(raw):,} rows; **{len(kept):,} evaluated**" in report
    assert "age bands: 16-30, 31-45, 46-60, 61+" in report and "90% intervals, seed 1" in report
    below = int((kept["age"] < 16).sum())
    assert below and f"{below:,} faces are younger than the first band edge (16)" in report
    assert all(f"| {name} |" in report for name in FILES)


def test_the_gender_codes_line_says_how_numbers_were_read():
    normalised = normalise_predictions(table(10), dataset="theirs")
    assert gender_codes_line(normalised, None) == "gender read as words (no numeric codes)"
    assert gender_codes_line(normalised, "utkface").startswith("--gender-codes utkface given, but no gender column")
