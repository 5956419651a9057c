"""Disaggregated metrics of age and gender predictions: one row per group, with its intervals.

Groups are the whole set, each race, gender and age band, and the intersections race×gender,
race×age band and gender×age band. Groups smaller than `min_group_size` are flagged `small`, never
hidden. Each group's point values (n, MAE, RMSE, mean signed error, gender accuracy) come from
fairlearn's `MetricFrame`, one per breakdown. Kept by hand, because MetricFrame has no such thing:
the intervals (bootstrap of the means seeded per group, Wilson for proportions: see `intervals`),
the age-band accuracy of datasets that give age bands only (FairFace), and the MAE at the overall age
mix (direct age standardisation).

The bootstrap draws look-alike clusters, not faces, where the table has a `cluster` column
(intervals.resample_cluster_sums); each group's resampled sums are kept (`Disaggregated`) so that
gaps (group_gaps.py) and significance (significance.py) get their intervals from the same draws.

Input: a frame in the predictions contract (`schema.PREDICTION_COLUMNS`); the age band is derived here
from the params' lower edges, never read from the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, count

from stages.lib.core.labels import GENDERS, RACES, age_band, band_labels
from stages.lib.core.schema import BAND_COLUMN, CLUSTER_COLUMN
from stages.lib.evaluation.intervals import (Bootstrap, binomial_interval, cluster_codes, group_rng,
                                             percentile_interval, resample_cluster_sums)
from stages.lib.evaluation.source_bands import in_source_band

# The contract of groups.csv, in this order.
GROUP_COLUMNS = [
    "attribute", "group", "n", "mae", "mae_ci_low", "mae_ci_high", "rmse", "mean_error",
    "gender_accuracy", "gender_accuracy_ci_low", "gender_accuracy_ci_high",
    "age_band_accuracy", "age_band_accuracy_ci_low", "age_band_accuracy_ci_high", "small",
]
# Also computed (for metrics.json, significance and the experiments comparison), not in groups.csv.
EXTRA_COLUMNS = ["rmse_ci_low", "rmse_ci_high", "mean_error_ci_low", "mean_error_ci_high", "n_gender", "n_age_band"]
# An age error: never reported for a dataset whose ages are bands (its `age` is a band's midpoint).
AGE_ERROR_COLUMNS = ["mae", "mae_ci_low", "mae_ci_high", "rmse", "rmse_ci_low", "rmse_ci_high", "mean_error",
                     "mean_error_ci_low", "mean_error_ci_high"]
AGE_ERROR_METRICS = ("mae", "rmse", "mean_error")
ATTRIBUTES = ("race", "gender", "age_band")
INTERSECTIONS = ("race*gender", "race*age_band", "gender*age_band")
# What the bootstrap sums per face, in this column order: a group's statistics are ratios of these sums,
# so that they hold whether a resample draws faces or whole clusters (a varying number of faces).
SUMMED = ["abs_error", "squared_error", "error", "faces", "gender_hit", "gender_scored", "band_hit", "band_scored"]
FACES = SUMMED.index("faces")
MEANS = {
    "mae": lambda sums: sums[..., 0] / sums[..., FACES],
    "rmse": lambda sums: np.sqrt(sums[..., 1] / sums[..., FACES]),
    "mean_error": lambda sums: sums[..., 2] / sums[..., FACES],
}
# Proportion -> (column of hits, column of faces scored) in SUMMED.
PROPORTIONS = {"gender_accuracy": (SUMMED.index("gender_hit"), SUMMED.index("gender_scored")),
               "age_band_accuracy": (SUMMED.index("band_hit"), SUMMED.index("band_scored"))}


@dataclass(frozen=True)
class Disaggregated:
    """The groups table and, per (attribute, group), the exact sums of SUMMED and those of each bootstrap
    resample (resamples × len(SUMMED); none without a bootstrap), kept to give gaps their intervals."""

    table: pd.DataFrame
    resampled: dict[tuple[str, str], np.ndarray]
    confidence: float
    totals: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)


def prepare(frame: pd.DataFrame, edges: Sequence[int]) -> pd.DataFrame:
    """The table with ordered categorical race/gender, the age band, the signed error and gender hits."""
    out = frame.reset_index(drop=True).copy()
    out["race"] = pd.Categorical(out["race"], categories=RACES, ordered=True)
    out["gender"] = pd.Categorical(out["gender"], categories=GENDERS, ordered=True)
    out["age_band"] = age_band(out["age"], edges)
    out["error"] = out["age_pred"].astype(float) - out["age"].astype(float)
    predicted = out["gender_pred"] if "gender_pred" in out else pd.Series(None, index=out.index, dtype=object)
    has = out["gender"].notna() & predicted.notna()
    hits = predicted.astype(object).to_numpy() == out["gender"].astype(object).to_numpy()
    out["gender_correct"] = np.where(has, hits.astype(float), np.nan)
    bands = out[BAND_COLUMN] if BAND_COLUMN in out.columns else pd.Series(None, index=out.index, dtype=object)
    out["band_correct"] = in_source_band(out["age_pred"], bands.to_numpy())
    out["cluster_code"] = cluster_codes(out[CLUSTER_COLUMN] if CLUSTER_COLUMN in out.columns else None, len(out))
    return out


def summed_values(prepared: pd.DataFrame) -> np.ndarray:
    """The SUMMED columns per face (n × len(SUMMED)); an unknown hit counts 0 and is not scored."""
    errors = prepared["error"].to_numpy(dtype=float)
    gender = prepared["gender_correct"].to_numpy(dtype=float)
    band = prepared["band_correct"].to_numpy(dtype=float)
    return np.column_stack([np.abs(errors), errors ** 2, errors, np.ones(len(errors)),
                            np.nan_to_num(gender), ~np.isnan(gender), np.nan_to_num(band), ~np.isnan(band)])


def breakdowns(prepared: pd.DataFrame) -> list[str]:
    """`all`, then each attribute and intersection the table has labels for."""
    present = [a for a in ATTRIBUTES if prepared[a].notna().any()]
    crossed = [i for i in INTERSECTIONS if all(part in present for part in i.split("*"))]
    return ["all", *present, *crossed]


def group_positions(prepared: pd.DataFrame, attribute: str) -> list[tuple[str, np.ndarray]]:
    """(lower-case group label, row positions) of each non-empty group, in category order."""
    if attribute == "all":
        return [("all", np.arange(len(prepared)))]
    columns = attribute.split("*")
    grouped = prepared.groupby(columns if len(columns) > 1 else columns[0], observed=True, sort=True, dropna=True)
    return [(_label(key), rows.to_numpy()) for key, rows in grouped.groups.items()]


def _label(key) -> str:
    return "*".join(str(k) for k in (key if isinstance(key, tuple) else (key,))).lower()


def _scored_accuracy(y_true, y_pred, correct) -> float:
    scored = correct[~np.isnan(correct)]
    return float(scored.mean()) if len(scored) else float("nan")


def _scored(y_true, y_pred, correct) -> int:
    return int((~np.isnan(correct)).sum())


def point_metrics(prepared: pd.DataFrame, attribute: str) -> pd.DataFrame:
    """n, MAE, RMSE, mean signed error, gender accuracy and n_gender (faces with a gender prediction)
    per group of one breakdown, by fairlearn's MetricFrame; indexed by the lower-case group label."""
    columns = attribute.split("*")
    rows = prepared if attribute == "all" else prepared.dropna(subset=columns)
    if attribute == "all":
        features = pd.Series("all", index=rows.index, name="all")
    else:
        features = rows[columns].astype(str)
    correct = {"correct": rows["gender_correct"].to_numpy(dtype=float)}
    frame = MetricFrame(
        metrics={"n": count,
                 "mae": lambda t, p: float(np.mean(np.abs(p - t))),
                 "rmse": lambda t, p: float(np.sqrt(np.mean((p - t) ** 2))),
                 "mean_error": lambda t, p: float(np.mean(p - t)),
                 "gender_accuracy": _scored_accuracy, "n_gender": _scored},
        y_true=rows["age"].to_numpy(dtype=float), y_pred=rows["age_pred"].to_numpy(dtype=float),
        sensitive_features=features, sample_params={"gender_accuracy": correct, "n_gender": correct})
    table = frame.by_group.dropna(subset=["n"])
    table.index = [_label(key) for key in table.index]
    return table.astype({"n": int, "n_gender": int})


def disaggregate(frame: pd.DataFrame, edges: Sequence[int], bootstrap: Bootstrap = Bootstrap(),
                 min_group_size: int = 30, *, attributes: Sequence[str] | None = None) -> Disaggregated:
    """One row per group (GROUP_COLUMNS + EXTRA_COLUMNS) and each group's resamples; `attributes`
    restricts the breakdowns."""
    prepared = prepare(frame, edges)
    values, codes = summed_values(prepared), prepared["cluster_code"].to_numpy()
    rows, resampled, totals = [], {}, {}
    for attribute in breakdowns(prepared):
        if attributes is not None and attribute not in attributes:
            continue
        points = point_metrics(prepared, attribute)
        for label, positions in ordered(group_positions(prepared, attribute), attribute, edges):
            point = points.loc[label]
            key = (attribute, label)
            totals[key] = values[positions].sum(axis=0)
            resampled[key] = _resample(values[positions], codes[positions], bootstrap, f"{attribute}={label}")
            band_hits, banded = (totals[key][column] for column in PROPORTIONS["age_band_accuracy"])
            rows.append({"attribute": attribute, "group": label, **point.to_dict(),
                         "age_band_accuracy": band_hits / banded if banded else np.nan, "n_age_band": int(banded),
                         **group_intervals(totals[key], resampled[key], bootstrap.confidence)})
    table = pd.DataFrame(rows, columns=["attribute", "group", *GROUP_COLUMNS[2:-1], *EXTRA_COLUMNS])
    table["small"] = table["n"] < min_group_size
    table = table[GROUP_COLUMNS + EXTRA_COLUMNS].reset_index(drop=True)
    return Disaggregated(table=table.astype({"n": int, "n_gender": int, "n_age_band": int}), resampled=resampled,
                         confidence=bootstrap.confidence, totals=totals)


def group_metrics(frame: pd.DataFrame, edges: Sequence[int], bootstrap: Bootstrap = Bootstrap(),
                  min_group_size: int = 30, *, attributes: Sequence[str] | None = None) -> pd.DataFrame:
    """The groups table alone (see `disaggregate`)."""
    return disaggregate(frame, edges, bootstrap, min_group_size, attributes=attributes).table


def _resample(values: np.ndarray, codes: np.ndarray, bootstrap: Bootstrap, key: str) -> np.ndarray:
    """Sums of SUMMED in each of the bootstrap's resamples of one group's clusters (resamples × len(SUMMED))."""
    if bootstrap.resamples == 0:
        return np.empty((0, len(SUMMED)))
    return resample_cluster_sums(values, codes, bootstrap.resamples, group_rng(bootstrap, key))


def group_intervals(totals: np.ndarray, resampled: np.ndarray, confidence: float) -> dict:
    """The percentile intervals of the means and the Wilson intervals of the proportions."""
    row = {}
    for metric, mean in MEANS.items():
        with np.errstate(invalid="ignore", divide="ignore"):
            row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = percentile_interval(mean(resampled), confidence)
    for metric, (hits, scored) in PROPORTIONS.items():
        row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = binomial_interval(
            round(totals[hits]), int(totals[scored]), confidence)
    return row


def ordered(groups: list[tuple[str, np.ndarray]], attribute: str, edges) -> list[tuple[str, np.ndarray]]:
    """Groups in the vocabulary's order (races, genders, bands), whatever order groupby gave."""
    order = {"race": list(RACES), "gender": list(GENDERS), "age_band": band_labels(edges), "all": ["all"]}
    parts = attribute.split("*")

    def rank(item):
        labels = item[0].split("*")
        return tuple(order[p].index(v) if v in order[p] else len(order[p]) for p, v in zip(parts, labels))

    return sorted(groups, key=rank)


def contract_groups(groups: pd.DataFrame) -> pd.DataFrame:
    """The groups table restricted to the groups.csv contract columns, in contract order."""
    return groups[GROUP_COLUMNS].copy()


def age_standardised_mae(groups: pd.DataFrame, attribute: str) -> pd.Series:
    """Each group's MAE re-weighted to the age-band mix of all faces (direct standardisation).

    A group's plain MAE mixes its error at each age with its own age mix: a group with more old faces
    looks worse even where it is served no worse at any age. NaN for a group missing a band.
    """
    bands = groups[groups["attribute"] == "age_band"].set_index("group")["n"]
    weights = bands / bands.sum()
    crossed = groups[groups["attribute"] == f"{attribute}*age_band"]
    if crossed.empty or weights.empty:
        return pd.Series(dtype=float)
    parts = crossed["group"].str.split("*", n=1, expand=True)
    table = pd.DataFrame({"group": parts[0], "band": parts[1], "mae": crossed["mae"].to_numpy()})
    wide = table.pivot(index="group", columns="band", values="mae").reindex(columns=weights.index)
    standardised = (wide * weights).sum(axis=1, min_count=len(weights))
    return standardised.where(wide.notna().all(axis=1))


def source_band_accuracy(frame: pd.DataFrame, edges: Sequence[int], confidence: float,
                         attributes: Sequence[str] = ("all", "race", "gender", "race*gender")) -> pd.DataFrame:
    """Age band accuracy with its Wilson interval per group, over the rows that carry an `age_band_source`."""
    banded = frame[frame[BAND_COLUMN].notna()].reset_index(drop=True)
    hits = in_source_band(banded["age_pred"], banded[BAND_COLUMN])
    prepared = prepare(banded, edges)
    rows = []
    for attribute in [a for a in breakdowns(prepared) if a in attributes]:
        for label, positions in ordered(group_positions(prepared, attribute), attribute, edges):
            judged = hits[positions][~np.isnan(hits[positions])]
            low, high = binomial_interval(int(judged.sum()), len(judged), confidence)
            rows.append({"attribute": attribute, "group": label, "n": len(judged),
                         "age_band_accuracy": float(judged.mean()) if len(judged) else np.nan,
                         "age_band_accuracy_ci_low": low, "age_band_accuracy_ci_high": high})
    return pd.DataFrame(rows, columns=["attribute", "group", "n", "age_band_accuracy", "age_band_accuracy_ci_low",
                                       "age_band_accuracy_ci_high"])

