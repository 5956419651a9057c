"""A published model's audit on disk (params.paths.audit/<model>/), and its evaluation: written by the
audit_models stage (stages/lib/evaluation/published_audit.py predicts), read back by the report.

    card.json             the model card, and the in-sample flag of each test set
    predictions.parquet   one row per face: AUDIT_COLUMNS, the predictions contract first
    evaluation/<dataset>/ a year model: an experiment's evaluation folder, file for file (results.py:
                          groups.csv, gaps.csv, significance.csv, metrics.json, tables/, worst_groups.csv);
                          a band model: band_groups.csv, band_gaps.csv, metrics.json (band_models.py) and
                          worst_groups.csv (its gender rows): never an MAE
    evaluation/<dataset>/skin/  the skin-colour and photo-quality analysis (results.write_skin_analyses),
                          where the measure stage's table has a face of the test set
    evaluation/rejects.csv  rows the evaluation could not read (with the reason)
    metrics.json          the headline figures per test set, each with its in-sample flag

No model is loaded here (the report reads these files without TensorFlow or the registry).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from stages.lib.core.params import Params
from stages.lib.core.schema import BAND_COLUMN, PREDICTION_COLUMNS
from stages.lib.evaluation.band_models import evaluate_bands
from stages.lib.evaluation.groups import evaluate
from stages.lib.evaluation.predictions import normalise_predictions
from stages.lib.core.files import write_json
from stages.lib.evaluation.results import WORST_GROUPS, bootstrap_from, headline, worst_group_headline, write_evaluation
from stages.lib.evaluation.worst_groups import REFERENCE, STATISTICS, against_reference

CARD_FILE = "card.json"
PREDICTIONS_FILE = "predictions.parquet"
METRICS_FILE = "metrics.json"
UNKNOWN = "unknown"   # the in-sample flag of a dataset the model card does not name
FROM_PASS = "features pass"  # card.json `read_from` of the model whose rows are read from the features pass
AUDIT_COLUMNS = [*PREDICTION_COLUMNS, BAND_COLUMN, "band_pred", "age_band_pred", "in_sample", "problem"]
Bands = Sequence[tuple[int, int]]



def evaluate_years(table: pd.DataFrame, name: str, params: Params, out: Path) -> dict:
    """An experiment's evaluation of a model that predicts years, per test set; returns the headlines."""
    requested = {field: field for field in PREDICTION_COLUMNS}
    normalised = normalise_predictions(table.drop(columns=["in_sample", "problem"]), requested, experiment=name)
    normalised.rejects.to_csv(out / "rejects.csv", index=False)
    bootstrap, headlines = bootstrap_from(params), {}
    for dataset, rows in normalised.frame.groupby("dataset", sort=False):
        folder = out / str(dataset)
        evaluation = evaluate(rows, params.age_bands, bootstrap, params.evaluate.min_group_size,
                              series=f"{name} on {dataset}")
        write_evaluation(evaluation, folder)
        headlines[dataset] = {**headline(evaluation), **_worst_groups(rows, name, params, folder, bands=None)}
    return headlines


def evaluate_band_model(table: pd.DataFrame, name: str, params: Params, out: Path, *, bands: Bands) -> dict:
    """Band accuracy, one-off band accuracy and gender accuracy by group, per test set; no MAE."""
    unreadable = table["problem"].notna()
    table[unreadable].assign(reason=table.loc[unreadable, "problem"]).to_csv(out / "rejects.csv", index=False)
    headlines = {}
    for dataset, rows in table[~unreadable].groupby("dataset", sort=False):
        folder = out / str(dataset)
        folder.mkdir(parents=True, exist_ok=True)
        evaluation = evaluate_bands(rows, bands, params.age_bands, confidence=params.evaluate.confidence,
                                    min_group_size=params.evaluate.min_group_size)
        evaluation.groups.to_csv(folder / "band_groups.csv", index=False)
        evaluation.gaps.to_csv(folder / "band_gaps.csv", index=False)
        write_json(evaluation.overall, folder / METRICS_FILE)
        figures = {key: evaluation.overall[key] for key in ("n", "band_accuracy", "one_off_accuracy", "gender_accuracy")}
        headlines[dataset] = {**figures, **_worst_groups(rows, name, params, folder, bands=bands)}
    return headlines


def _worst_groups(rows: pd.DataFrame, name: str, params: Params, folder: Path, *, bands: Bands | None) -> dict:
    """worst_groups.csv of one test set (the model alone: no reference to change against; a band
    model's MAE rows left out) and its headline figures."""
    summary = against_reference(rows.drop(columns=[c for c in rows.columns if c not in AUDIT_COLUMNS]), None,
                                name, bootstrap_from(params), min_group_size=params.evaluate.min_group_size)
    if bands is not None:
        summary = summary[summary["statistic"].map(STATISTICS).str[0] != "mae"]
    summary.to_csv(folder / f"{WORST_GROUPS}.csv", index=False)
    figures = worst_group_headline(summary)
    return {key: value for key, value in figures.items() if not key.endswith(f"_vs_{REFERENCE}")}
