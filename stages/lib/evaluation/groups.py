"""One predictions table, evaluated: its groups (disaggregation.py), gaps (group_gaps.py), verdicts
against the rest (significance.py), overall figures (overall.py) and the study's tables (curves.py).

Where every age is a band (FairFace), no table or figure holds an age error (`without_age_error`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from stages.lib.core.schema import BAND_COLUMN
from stages.lib.evaluation.curves import (error_by_age, predicted_vs_actual, share_by_age_gender,
                                          signed_error_by_predicted_band)
from stages.lib.evaluation.disaggregation import (AGE_ERROR_COLUMNS, AGE_ERROR_METRICS, disaggregate, group_metrics,
                                                  source_band_accuracy)
from stages.lib.evaluation.group_gaps import gaps
from stages.lib.evaluation.intervals import Bootstrap
from stages.lib.evaluation.overall import overall_metrics, plain
from stages.lib.evaluation.significance import significance
from stages.lib.evaluation.source_bands import ages_are_bands


@dataclass(frozen=True)
class Evaluation:
    """Everything the evaluation of one predictions table yields (all tidy frames). Where ages are bands
    (`ages_are_bands(overall)`), no table holds an age error."""

    groups: pd.DataFrame
    gaps: pd.DataFrame
    significance: pd.DataFrame
    overall: dict
    edges: tuple[int, ...]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    confidence: float = 0.95


def evaluate(frame: pd.DataFrame, edges: Sequence[int], bootstrap: Bootstrap = Bootstrap(),
             min_group_size: int = 30, *, age_bin_width: int = 5, series: str = "predictions") -> Evaluation:
    """Groups, gaps, significance, overall figures and the study's tables for one predictions table.
    Where every age is a band (FairFace), no table or figure holds an age error (`without_age_error`)."""
    if frame.empty:
        raise ValueError("no predictions to evaluate: every row was rejected or the table is empty")
    disaggregated = disaggregate(frame, edges, bootstrap, min_group_size)
    groups, gap_table = disaggregated.table, gaps(disaggregated)
    tables = {
        "predicted_vs_actual": predicted_vs_actual(frame, series),
        "signed_error_by_predicted_band": signed_error_by_predicted_band(frame, edges),
    }
    if frame["gender"].notna().any():
        tables["share_by_age_gender"] = share_by_age_gender(frame, age_bin_width)
    for attribute in ("gender", "race"):
        if frame[attribute].notna().any():
            tables[f"error_by_age_{attribute}"] = error_by_age(frame, attribute, age_bin_width)
    women = frame[(frame["gender"] == "female") & frame["gender_pred"].notna()]
    if not women.empty:
        tables["women_gender_accuracy"] = group_metrics(
            women, edges, bootstrap, min_group_size, attributes=["age_band", "race", "race*age_band"])
    overall = overall_metrics(groups, gap_table, frame)
    if BAND_COLUMN in frame.columns and frame[BAND_COLUMN].notna().any():
        tables["age_band_accuracy"] = source_band_accuracy(frame, edges, bootstrap.confidence)
        whole = tables["age_band_accuracy"].iloc[0]
        overall.update(age_band_accuracy=plain(whole["age_band_accuracy"]), n_age_band=int(whole["n"]),
                       age_band_accuracy_ci_low=plain(whole["age_band_accuracy_ci_low"]),
                       age_band_accuracy_ci_high=plain(whole["age_band_accuracy_ci_high"]))
    evaluation = Evaluation(groups=groups, gaps=gap_table, significance=significance(disaggregated),
                            overall=overall, edges=tuple(edges), tables=tables, confidence=bootstrap.confidence)
    return without_age_error(evaluation) if ages_are_bands(overall) else evaluation


# Tables of an age error alone: dropped where ages are bands.
AGE_ERROR_TABLES = ("signed_error_by_predicted_band", "error_by_age_gender", "error_by_age_race")


def without_age_error(evaluation: Evaluation) -> Evaluation:
    """The evaluation of a dataset whose ages are bands, with every age error gone: MAE, RMSE and signed
    error blank in the groups tables, null in the overall figures (their argmax ones dropped), the
    tables of signed error dropped; gaps and verdicts are judged on accuracies only already."""
    def blank(table: pd.DataFrame) -> pd.DataFrame:
        return table.assign(**{c: np.nan for c in AGE_ERROR_COLUMNS if c in table.columns})

    tables = {name: (blank(table) if name == "women_gender_accuracy" else table)
              for name, table in evaluation.tables.items() if name not in AGE_ERROR_TABLES}
    overall = {key: (None if key in AGE_ERROR_COLUMNS else value) for key, value in evaluation.overall.items()
               if not key.endswith("_argmax")}
    overall["gaps"] = {attribute: {k: v for k, v in figures.items() if not k.startswith(AGE_ERROR_METRICS)}
                       for attribute, figures in evaluation.overall.get("gaps", {}).items()}
    return Evaluation(groups=blank(evaluation.groups), gaps=evaluation.gaps,
                      significance=evaluation.significance, overall=overall, edges=evaluation.edges,
                      tables=tables, confidence=evaluation.confidence)
