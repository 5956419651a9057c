"""The overall figures of one evaluation, for metrics.json (`dvc metrics show`): the whole set, the
argmax prediction, and the headline gaps."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stages.lib.evaluation.disaggregation import ATTRIBUTES

HEADLINE_GAPS = ("mae", "gender_accuracy", "age_band_accuracy")   # the gaps metrics.json carries, per attribute


def argmax_metrics(frame: pd.DataFrame) -> dict:
    """MAE/RMSE of the argmax prediction where the table has one (the study: always worse than EV)."""
    if "age_pred_argmax" not in frame or frame["age_pred_argmax"].isna().all():
        return {}
    rows = frame[frame["age_pred_argmax"].notna()]
    errors = rows["age_pred_argmax"].astype(float) - rows["age"].astype(float)
    return {"n_argmax": int(len(rows)), "mae_argmax": float(errors.abs().mean()),
            "rmse_argmax": float(np.sqrt((errors ** 2).mean()))}


def overall_metrics(groups: pd.DataFrame, gap_table: pd.DataFrame, frame: pd.DataFrame) -> dict:
    """The figures for metrics.json (`dvc metrics show`): the whole set, argmax, and the headline gaps
    (MAE and gender accuracy, worst − best and worst / best, per race, gender and age band)."""
    row = groups[groups["attribute"] == "all"].iloc[0]
    keys = ["n", "mae", "mae_ci_low", "mae_ci_high", "rmse", "rmse_ci_low", "rmse_ci_high", "mean_error",
            "mean_error_ci_low", "mean_error_ci_high"]
    if row["n_gender"]:
        keys += ["n_gender", "gender_accuracy", "gender_accuracy_ci_low", "gender_accuracy_ci_high"]
    result = {key: plain(row[key]) for key in keys}
    result.update(argmax_metrics(frame))
    gap_figures = {}
    headline = gap_table[gap_table["attribute"].isin(ATTRIBUTES) & gap_table["metric"].isin(HEADLINE_GAPS)]
    for _, gap in headline.iterrows():   # the rest is in gaps.csv; metrics.json stays readable in `dvc exp show`
        gap_figures.setdefault(gap["attribute"], {}).update({
            f"{gap['metric']}_difference": plain(gap["difference"]),
            f"{gap['metric']}_ratio": plain(gap["ratio"]),
        })
    if gap_figures:
        result["gaps"] = gap_figures
    return result


def plain(value):
    """A JSON-friendly Python scalar (NaN -> None)."""
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    value = float(value)
    return None if np.isnan(value) else round(value, 6)

