"""Disaggregated metrics of age and gender predictions: pure functions over a predictions table.

Every number comes with its group size and, for the judged metrics, a percentile-bootstrap confidence
interval. Groups are the whole set, each race, gender and age band, and the intersections
race×gender, race×age band and gender×age band. Groups smaller than `min_group_size` are flagged
`small`, never hidden. The resampling is vectorised (counts of each row per resample, times the row
values), seeded per group so that a group's interval does not depend on which other groups exist.

Input: a frame in the predictions contract (`schema.PREDICTION_COLUMNS`); the age band is derived here
from the params' lower edges, never read from the table.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from stages.lib.core.labels import GENDERS, RACES, LabelError, age_band, band_labels, labelled_band_bounds
from stages.lib.core.schema import BAND_COLUMN

# The contract of groups.csv, in this order.
GROUP_COLUMNS = [
    "attribute", "group", "n", "mae", "mae_ci_low", "mae_ci_high", "rmse", "mean_error",
    "gender_accuracy", "gender_accuracy_ci_low", "gender_accuracy_ci_high", "small",
]
# Also computed (for metrics.json, significance and the experiments comparison), not in groups.csv.
EXTRA_COLUMNS = ["rmse_ci_low", "rmse_ci_high", "mean_error_ci_low", "mean_error_ci_high", "n_gender"]
ATTRIBUTES = ("race", "gender", "age_band")
INTERSECTIONS = ("race*gender", "race*age_band", "gender*age_band")
# For each metric a gap is judged on: is a higher value worse?
HIGHER_IS_WORSE = {"mae": True, "rmse": True, "gender_accuracy": False}
HEADLINE_GAPS = ("mae", "gender_accuracy")    # the gaps metrics.json carries, per single attribute
_CELLS_PER_CHUNK = 1_000_000   # rows x resamples drawn at once: bounds memory at ~8 MB per chunk


@dataclass(frozen=True)
class Bootstrap:
    """How confidence intervals are drawn: `resamples` (0 = no intervals), `confidence`, `seed`."""

    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 42


@dataclass(frozen=True)
class Evaluation:
    """Everything the evaluation of one predictions table yields (all tidy frames)."""

    groups: pd.DataFrame
    gaps: pd.DataFrame
    significance: pd.DataFrame
    overall: dict
    edges: tuple[int, ...]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    confidence: float = 0.95


# ---------------------------------------------------------------------------------------------------
# Bootstrap


def resample_sums(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Column sums of `resamples` bootstrap resamples of the rows of `values` (n × k) -> (resamples × k).

    Each resample draws n row indices with replacement; their counts per row times `values` give the
    sums in one matrix product, a chunk of resamples at a time.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        values = values[:, None]
    n = len(values)
    sums = np.empty((resamples, values.shape[1]))
    per_chunk = max(1, _CELLS_PER_CHUNK // max(n, 1))
    for start in range(0, resamples, per_chunk):
        size = min(per_chunk, resamples - start)
        draws = rng.integers(0, n, size=(size, n)) + (np.arange(size) * n)[:, None]
        counts = np.bincount(draws.ravel(), minlength=size * n).reshape(size, n)
        sums[start:start + size] = counts @ values
    return sums


def percentile_interval(statistics: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central `confidence` interval of bootstrap statistics (NaN-tolerant; (nan, nan) if none)."""
    statistics = np.asarray(statistics, dtype=float)
    if statistics.size == 0 or np.isnan(statistics).all():
        return float("nan"), float("nan")
    tail = (1.0 - confidence) / 2.0
    low, high = np.nanquantile(statistics, [tail, 1.0 - tail])
    return float(low), float(high)


def group_rng(bootstrap: Bootstrap, key: str) -> np.random.Generator:
    """A generator seeded by the run's seed and the group's name, independent of group order."""
    return np.random.default_rng([bootstrap.seed, zlib.crc32(key.encode())])


def mean_interval(values, bootstrap: Bootstrap, key: str) -> tuple[float, float]:
    """Bootstrap interval of the mean of `values` (e.g. paired differences)."""
    values = np.asarray(values, dtype=float)
    if bootstrap.resamples == 0 or len(values) == 0:
        return float("nan"), float("nan")
    sums = resample_sums(values, bootstrap.resamples, group_rng(bootstrap, key))[:, 0]
    return percentile_interval(sums / len(values), bootstrap.confidence)


def summarise_group(errors: np.ndarray, correct: np.ndarray, bootstrap: Bootstrap, key: str) -> dict:
    """n, MAE, RMSE, mean signed error and gender accuracy of one group, each judged one with its CI.

    `errors` are predicted − true ages; `correct` is 1/0 where a gender prediction exists, NaN elsewhere.
    """
    n = len(errors)
    has_gender = ~np.isnan(correct)
    n_gender = int(has_gender.sum())
    row = {
        "n": n,
        "mae": float(np.mean(np.abs(errors))),
        "rmse": float(np.sqrt(np.mean(errors ** 2))),
        "mean_error": float(np.mean(errors)),
        "gender_accuracy": float(np.mean(correct[has_gender])) if n_gender else float("nan"),
        "n_gender": n_gender,
    }
    intervals = dict.fromkeys(["mae", "rmse", "mean_error", "gender_accuracy"], (float("nan"), float("nan")))
    if bootstrap.resamples > 0:
        values = np.column_stack([np.abs(errors), errors ** 2, errors, np.where(has_gender, correct, 0.0),
                                  has_gender.astype(float)])
        sums = resample_sums(values, bootstrap.resamples, group_rng(bootstrap, key))
        intervals["mae"] = percentile_interval(sums[:, 0] / n, bootstrap.confidence)
        intervals["rmse"] = percentile_interval(np.sqrt(sums[:, 1] / n), bootstrap.confidence)
        intervals["mean_error"] = percentile_interval(sums[:, 2] / n, bootstrap.confidence)
        if n_gender:
            with np.errstate(invalid="ignore", divide="ignore"):
                accuracy = np.where(sums[:, 4] > 0, sums[:, 3] / sums[:, 4], np.nan)
            intervals["gender_accuracy"] = percentile_interval(accuracy, bootstrap.confidence)
    for metric, (low, high) in intervals.items():
        row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = low, high
    return row


# ---------------------------------------------------------------------------------------------------
# Groups


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
    return out


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
    return [("*".join(str(k) for k in (key if isinstance(key, tuple) else (key,))).lower(), rows.to_numpy())
            for key, rows in grouped.groups.items()]


def group_metrics(frame: pd.DataFrame, edges: Sequence[int], bootstrap: Bootstrap = Bootstrap(),
                  min_group_size: int = 30, attributes: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per group (GROUP_COLUMNS + EXTRA_COLUMNS); `attributes` restricts the breakdowns."""
    prepared = prepare(frame, edges)
    errors = prepared["error"].to_numpy(dtype=float)
    correct = prepared["gender_correct"].to_numpy(dtype=float)
    rows = []
    for attribute in breakdowns(prepared):
        if attributes is not None and attribute not in attributes:
            continue
        for label, positions in _ordered(group_positions(prepared, attribute), attribute, edges):
            summary = summarise_group(errors[positions], correct[positions], bootstrap, f"{attribute}={label}")
            rows.append({"attribute": attribute, "group": label, **summary})
    table = pd.DataFrame(rows, columns=["attribute", "group", *GROUP_COLUMNS[2:-1], *EXTRA_COLUMNS])
    table["small"] = table["n"] < min_group_size
    return table[GROUP_COLUMNS + EXTRA_COLUMNS].reset_index(drop=True)


def _ordered(groups: list[tuple[str, np.ndarray]], attribute: str, edges) -> list[tuple[str, np.ndarray]]:
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


# ---------------------------------------------------------------------------------------------------
# Gaps and significance


def gaps(groups: pd.DataFrame, metrics: Sequence[str] = ("mae", "rmse", "gender_accuracy")) -> pd.DataFrame:
    """Worst − best and worst / best per attribute and metric, naming both groups.

    Groups flagged `small` are left out of the comparison (and listed) unless fewer than two groups
    would remain. `cis_overlap` tells whether the two groups' intervals overlap (where both exist).
    """
    rows = []
    for attribute in [a for a in groups["attribute"].unique() if a != "all"]:
        for metric in metrics:
            candidates = groups[(groups["attribute"] == attribute) & groups[metric].notna()]
            judged = candidates[~candidates["small"]]
            if len(judged) < 2:
                judged = candidates
            if len(judged) < 2:
                continue
            higher_worse = HIGHER_IS_WORSE[metric]
            worst = judged.loc[judged[metric].idxmax() if higher_worse else judged[metric].idxmin()]
            best = judged.loc[judged[metric].idxmin() if higher_worse else judged[metric].idxmax()]
            low, high = f"{metric}_ci_low", f"{metric}_ci_high"
            overlap = (np.nan if pd.isna(worst[low]) or pd.isna(best[low])
                       else bool(worst[low] <= best[high] and best[low] <= worst[high]))
            rows.append({
                "attribute": attribute, "metric": metric,
                "worst_group": worst["group"], "worst": worst[metric], "worst_n": int(worst["n"]),
                "best_group": best["group"], "best": best[metric], "best_n": int(best["n"]),
                "difference": worst[metric] - best[metric],
                "ratio": worst[metric] / best[metric] if best[metric] else np.nan,
                "groups_compared": len(judged),
                "small_left_out": ", ".join(candidates.loc[~candidates.index.isin(judged.index), "group"]),
                "cis_overlap": overlap,
            })
    columns = ["attribute", "metric", "worst_group", "worst", "worst_n", "best_group", "best", "best_n",
               "difference", "ratio", "groups_compared", "small_left_out", "cis_overlap"]
    return pd.DataFrame(rows, columns=columns)


def significance(groups: pd.DataFrame) -> pd.DataFrame:
    """Per group and metric: does its interval exclude the reference? (MAE, accuracy: the overall value;
    mean signed error: zero, i.e. systematic over- or under-estimation)."""
    overall = groups[groups["attribute"] == "all"]
    if overall.empty:
        raise ValueError("the groups table has no `all` row to compare groups with")
    overall = overall.iloc[0]
    references = {"mae": overall["mae"], "gender_accuracy": overall["gender_accuracy"], "mean_error": 0.0}
    rows = []
    for _, group in groups[groups["attribute"] != "all"].iterrows():
        for metric, reference in references.items():
            low, high, value = group[f"{metric}_ci_low"], group[f"{metric}_ci_high"], group[metric]
            if pd.isna(value) or pd.isna(reference):
                continue
            if pd.isna(low):
                verdict = "no interval"
            elif low > reference:
                verdict = "above"
            elif high < reference:
                verdict = "below"
            else:
                verdict = "n.s."
            rows.append({"attribute": group["attribute"], "group": group["group"], "n": int(group["n"]),
                         "small": bool(group["small"]), "metric": metric, "value": value, "ci_low": low,
                         "ci_high": high, "reference": reference, "verdict": verdict})
    columns = ["attribute", "group", "n", "small", "metric", "value", "ci_low", "ci_high", "reference", "verdict"]
    return pd.DataFrame(rows, columns=columns)


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


# ---------------------------------------------------------------------------------------------------
# Overall figures


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
    result = {key: _plain(row[key]) for key in keys}
    result.update(argmax_metrics(frame))
    gap_figures = {}
    headline = gap_table[gap_table["attribute"].isin(ATTRIBUTES) & gap_table["metric"].isin(HEADLINE_GAPS)]
    for _, gap in headline.iterrows():   # the rest is in gaps.csv; metrics.json stays readable in `dvc exp show`
        gap_figures.setdefault(gap["attribute"], {}).update({
            f"{gap['metric']}_difference": _plain(gap["difference"]),
            f"{gap['metric']}_ratio": _plain(gap["ratio"]),
        })
    if gap_figures:
        result["gaps"] = gap_figures
    return result


def _plain(value):
    """A JSON-friendly Python scalar (NaN -> None)."""
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    value = float(value)
    return None if np.isnan(value) else round(value, 6)


# ---------------------------------------------------------------------------------------------------
# The study's tables and the data behind its figures


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
          index_order: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
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


def in_source_band(age_pred, bands) -> np.ndarray:
    """1.0 where the predicted age (whole years) lies in the row's labelled band (`20-29`, `more than 70`),
    0.0 where it does not, NaN where the row has no band (exact-age datasets).

    For datasets labelled with age bands only (FairFace), whose `age` is a band's midpoint: an MAE
    against a midpoint mixes the model's error with the band's width, band accuracy does not.
    """
    years = np.floor(np.asarray(age_pred, dtype=float))
    result = np.full(len(years), np.nan)
    for position, band in enumerate(bands):
        try:
            low, high = labelled_band_bounds(band)
        except LabelError:
            continue
        result[position] = float(low <= years[position] <= high)
    return result


def source_band_accuracy(frame: pd.DataFrame, edges: Sequence[int], bootstrap: Bootstrap,
                         attributes: Sequence[str] = ("all", "race", "gender", "race*gender")) -> pd.DataFrame:
    """Age band accuracy with its CI per group, over the rows that carry an `age_band_source`."""
    banded = frame[frame[BAND_COLUMN].notna()].reset_index(drop=True)
    hits = in_source_band(banded["age_pred"], banded[BAND_COLUMN])
    prepared = prepare(banded, edges)
    rows = []
    for attribute in [a for a in breakdowns(prepared) if a in attributes]:
        for label, positions in _ordered(group_positions(prepared, attribute), attribute, edges):
            low, high = mean_interval(hits[positions], bootstrap, f"band:{attribute}={label}")
            rows.append({"attribute": attribute, "group": label, "n": len(positions),
                         "age_band_accuracy": float(np.mean(hits[positions])),
                         "age_band_accuracy_ci_low": low, "age_band_accuracy_ci_high": high})
    return pd.DataFrame(rows, columns=["attribute", "group", "n", "age_band_accuracy", "age_band_accuracy_ci_low",
                                       "age_band_accuracy_ci_high"])


def evaluate(frame: pd.DataFrame, edges: Sequence[int], bootstrap: Bootstrap = Bootstrap(),
             min_group_size: int = 30, age_bin_width: int = 5, series: str = "predictions") -> Evaluation:
    """Groups, gaps, significance, overall figures and the study's tables for one predictions table."""
    if frame.empty:
        raise ValueError("no predictions to evaluate: every row was rejected or the table is empty")
    groups = group_metrics(frame, edges, bootstrap, min_group_size)
    gap_table = gaps(groups)
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
        tables["age_band_accuracy"] = source_band_accuracy(frame, edges, bootstrap)
        whole = tables["age_band_accuracy"].iloc[0]
        overall.update(age_band_accuracy=_plain(whole["age_band_accuracy"]), n_age_band=int(whole["n"]))
    return Evaluation(groups=groups, gaps=gap_table, significance=significance(groups),
                      overall=overall, edges=tuple(edges), tables=tables, confidence=bootstrap.confidence)
