"""The data behind the study's curves and heatmaps: pure functions over a predictions table.

Predicted against true age (R1–R3, R6), error across age by group (R7, R8), who is in the data by age
and gender (R5), signed error by band of the *predicted* age (R10), and `pivot` to lay any of them out
for a heatmap or a report table. No intervals here: the figures show n beside each cell or point.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from stages.lib.core.labels import GENDERS, RACES, age_band


def predicted_vs_actual(frame: pd.DataFrame, series: str) -> pd.DataFrame:
    """Per true age: n, mean prediction and its interquartile range (R1–R3), labelled `series`."""
    grouped = frame.groupby("age")["age_pred"]
    table = pd.DataFrame({
        "n": grouped.size(),
        "mean_pred": grouped.mean(),
        "q25": grouped.quantile(0.25),
        "q75": grouped.quantile(0.75),
    }).reset_index()
    table.insert(0, "series", series)
    return table


def age_bins(ages, width: int) -> np.ndarray:
    """The lower edge of each age's `width`-year bin."""
    return (np.asarray(ages, dtype=int) // width) * width


def error_by_age(frame: pd.DataFrame, attribute: str, width: int = 5) -> pd.DataFrame:
    """Per `width`-year bin of true age and group of `attribute`: n, MAE, mean signed error (R7, R8)."""
    rows = frame[frame[attribute].notna()].copy()
    rows["age_bin"] = age_bins(rows["age"], width)
    rows["error"] = rows["age_pred"].astype(float) - rows["age"].astype(float)
    rows["abs_error"] = rows["error"].abs()
    grouped = rows.groupby([attribute, "age_bin"], observed=True)
    table = grouped.agg(n=("error", "size"), mae=("abs_error", "mean"), mean_error=("error", "mean")).reset_index()
    table = table.rename(columns={attribute: "group"})
    table.insert(0, "attribute", attribute)
    table["group"] = table["group"].astype(str)
    return table


def share_by_age_gender(frame: pd.DataFrame, width: int = 5) -> pd.DataFrame:
    """Per `width`-year bin and gender: the number of faces and their share of all faces (R5)."""
    rows = frame[frame["gender"].notna()].copy()
    rows["age_bin"] = age_bins(rows["age"], width)
    table = rows.groupby(["age_bin", "gender"], observed=True).size().rename("n").reset_index()
    table["gender"] = table["gender"].astype(str)
    table["share"] = table["n"] / table["n"].sum()
    return table


def signed_error_by_predicted_band(frame: pd.DataFrame, edges: Sequence[int]) -> pd.DataFrame:
    """Mean (predicted − true) by band of the *predicted* age × race × gender (R10), with n."""
    rows = frame.copy()
    rows["predicted_band"] = age_band(rows["age_pred"], edges)
    rows["error"] = rows["age_pred"].astype(float) - rows["age"].astype(float)
    keys = ["predicted_band"] + [c for c in ("race", "gender") if rows[c].notna().any()]
    table = rows.dropna(subset=keys).groupby(keys, observed=True)["error"].agg(n="size", mean_error="mean")
    table = table.reset_index()
    for key in keys:
        table[key] = table[key].astype(str)
    return table


def pivot(table: pd.DataFrame, index: str, columns: list[str], value: str,
          *, index_order: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(values, counts) pivoted for a heatmap or a report table; column labels joined with ' × '."""
    frame = table.copy()
    frame["_column"] = frame[columns].astype(str).agg(" × ".join, axis=1)
    values = frame.pivot_table(index=index, columns="_column", values=value, aggfunc="first", observed=True)
    counts = frame.pivot_table(index=index, columns="_column", values="n", aggfunc="first", observed=True)
    order = _column_order(list(values.columns))
    rows = [i for i in (index_order or list(values.index)) if i in values.index]
    values, counts = values.reindex(index=rows, columns=order), counts.reindex(index=rows, columns=order)
    values.columns.name = counts.columns.name = " × ".join(columns)
    values.index.name = counts.index.name = index
    return values, counts


def _column_order(labels: list[str]) -> list[str]:
    vocabulary = list(RACES) + list(GENDERS)

    def key(label):
        return tuple(vocabulary.index(p) if p in vocabulary else 99 for p in label.split(" × "))

    return sorted(labels, key=key)
