"""Disaggregated metrics of age and gender predictions: pure functions over a predictions table.

Groups are the whole set, each race, gender and age band, and the intersections race×gender,
race×age band and gender×age band. Groups smaller than `min_group_size` are flagged `small`, never
hidden. Each group's point values (n, MAE, RMSE, mean signed error, gender accuracy) come from
fairlearn's `MetricFrame`, one per breakdown. Kept by hand, because MetricFrame has no such thing:

- the intervals (`intervals`: bootstrap of the means seeded per group, Wilson for proportions), and
  the intervals of the gap between two named groups and between a group and the rest of its
  breakdown, on which every verdict rests (MetricFrame's difference_ci() is the interval of
  max − min over all groups, ≥ 0 by construction: see `intervals`);
- the MAE at the overall age mix (direct age standardisation);
- age-band accuracy for datasets that give age bands only (FairFace);
- a p-value per difference, adjusted within its family (multiplicity.py), and beside each worst −
  best gap a test of "all groups equal" (`all_equal_p_value`) that re-selects the extremes in each
  resample, so that picking the worst and the best before testing them does not flatter the gap.

The bootstrap draws look-alike clusters, not faces, where the table has a `cluster` column
(intervals.resample_cluster_sums). A dataset whose ages are bands (FairFace) never carries an MAE,
RMSE or signed error, in any table: age-band accuracy instead (`AGE_ERROR_COLUMNS` blanked).

Input: a frame in the predictions contract (`schema.PREDICTION_COLUMNS`); the age band is derived here
from the params' lower edges, never read from the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, count

from stages.lib.core.labels import GENDERS, RACES, LabelError, age_band, band_labels, labelled_band_bounds
from stages.lib.core.schema import BAND_COLUMN, CLUSTER_COLUMN
from stages.lib.evaluation.curves import (error_by_age, predicted_vs_actual, share_by_age_gender,
                                          signed_error_by_predicted_band)
from stages.lib.evaluation.intervals import (Bootstrap, Gap, binomial_interval, bootstrap_p_value, cluster_codes,
                                             direction, group_rng, percentile_interval, proportion_gap,
                                             proportion_gap_p_value, resample_cluster_sums, resampled_gap)
from stages.lib.evaluation.multiplicity import adjust_families

# The contract of groups.csv, in this order.
GROUP_COLUMNS = [
    "attribute", "group", "n", "mae", "mae_ci_low", "mae_ci_high", "rmse", "mean_error",
    "gender_accuracy", "gender_accuracy_ci_low", "gender_accuracy_ci_high",
    "age_band_accuracy", "age_band_accuracy_ci_low", "age_band_accuracy_ci_high", "small",
]
# Also computed (for metrics.json, significance and the experiments comparison), not in groups.csv.
EXTRA_COLUMNS = ["rmse_ci_low", "rmse_ci_high", "mean_error_ci_low", "mean_error_ci_high", "n_gender", "n_age_band"]
# Verdicts: `verdict` holds only after adjustment (multiplicity.py); `verdict_raw` is the raw interval's.
GAP_COLUMNS = ["attribute", "metric", "worst_group", "worst", "worst_n", "best_group", "best", "best_n",
               "difference", "difference_ci_low", "difference_ci_high", "ratio", "ratio_ci_low", "ratio_ci_high",
               "groups_compared", "small_left_out", "p_all_equal", "family", "adjustment", "p_all_equal_adjusted",
               "significant", "verdict_raw", "verdict"]
SIGNIFICANCE_COLUMNS = ["attribute", "group", "n", "small", "metric", "value", "ci_low", "ci_high", "compared_with",
                        "reference", "difference", "difference_ci_low", "difference_ci_high", "family", "p_value",
                        "adjustment", "p_adjusted", "significant", "significant_raw", "verdict_raw", "verdict"]
# An age error: never reported for a dataset whose ages are bands (its `age` is a band's midpoint).
AGE_ERROR_COLUMNS = ["mae", "mae_ci_low", "mae_ci_high", "rmse", "rmse_ci_low", "rmse_ci_high", "mean_error",
                     "mean_error_ci_low", "mean_error_ci_high"]
AGE_ERROR_METRICS = ("mae", "rmse", "mean_error")
ATTRIBUTES = ("race", "gender", "age_band")
INTERSECTIONS = ("race*gender", "race*age_band", "gender*age_band")
# For each metric a gap is judged on: is a higher value worse?
HIGHER_IS_WORSE = {"mae": True, "rmse": True, "gender_accuracy": False, "age_band_accuracy": False}
HEADLINE_GAPS = ("mae", "gender_accuracy", "age_band_accuracy")   # the gaps metrics.json carries, per attribute
# What the bootstrap sums per face, in this column order: a group's statistics are ratios of these sums,
# so that they hold whether a resample draws faces or whole clusters (a varying number of faces).
SUMMED = ["abs_error", "squared_error", "error", "faces", "gender_hit", "gender_scored", "band_hit", "band_scored"]
_FACES = SUMMED.index("faces")
MEANS = {
    "mae": lambda sums: sums[..., 0] / sums[..., _FACES],
    "rmse": lambda sums: np.sqrt(sums[..., 1] / sums[..., _FACES]),
    "mean_error": lambda sums: sums[..., 2] / sums[..., _FACES],
}
# Proportion -> (column of hits, column of faces scored) in SUMMED.
PROPORTIONS = {"gender_accuracy": (SUMMED.index("gender_hit"), SUMMED.index("gender_scored")),
               "age_band_accuracy": (SUMMED.index("band_hit"), SUMMED.index("band_scored"))}


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


@dataclass(frozen=True)
class Disaggregated:
    """The groups table and, per (attribute, group), the exact sums of SUMMED and those of each bootstrap
    resample (resamples × len(SUMMED); none without a bootstrap), kept to give gaps their intervals."""

    table: pd.DataFrame
    resampled: dict[tuple[str, str], np.ndarray]
    confidence: float
    totals: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)


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
        for label, positions in _ordered(group_positions(prepared, attribute), attribute, edges):
            point = points.loc[label]
            key = (attribute, label)
            totals[key] = values[positions].sum(axis=0)
            resampled[key] = _resample(values[positions], codes[positions], bootstrap, f"{attribute}={label}")
            band_hits, banded = (totals[key][column] for column in PROPORTIONS["age_band_accuracy"])
            rows.append({"attribute": attribute, "group": label, **point.to_dict(),
                         "age_band_accuracy": band_hits / banded if banded else np.nan, "n_age_band": int(banded),
                         **_intervals(point, totals[key], resampled[key], bootstrap.confidence)})
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


def _intervals(point: pd.Series, totals: np.ndarray, resampled: np.ndarray, confidence: float) -> dict:
    """The percentile intervals of the means and the Wilson intervals of the proportions."""
    row = {}
    for metric, mean in MEANS.items():
        with np.errstate(invalid="ignore", divide="ignore"):
            row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = percentile_interval(mean(resampled), confidence)
    for metric, (hits, scored) in PROPORTIONS.items():
        row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = binomial_interval(
            round(totals[hits]), int(totals[scored]), confidence)
    return row


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
# Gaps and significance: every verdict from the interval of a difference


@dataclass(frozen=True)
class _Pool:
    """One group, or several pooled: the exact sums of SUMMED and their sums in each resample."""

    sums: np.ndarray
    resampled: np.ndarray

    @property
    def n(self) -> int:
        return int(self.sums[_FACES])


def _pool(disaggregated: Disaggregated, attribute: str, labels: Sequence[str]) -> _Pool:
    keys = [(attribute, label) for label in labels if (attribute, label) in disaggregated.totals]
    return _Pool(sums=sum(disaggregated.totals[key] for key in keys),
                 resampled=sum(disaggregated.resampled[key] for key in keys))


def _statistic(sums: np.ndarray, metric: str) -> np.ndarray:
    """A metric from sums of SUMMED (exact: one value; resampled: one per resample); NaN where undefined."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric in PROPORTIONS:
            hits, scored = PROPORTIONS[metric]
            return sums[..., hits] / sums[..., scored]
        return MEANS[metric](sums)


def _value(pool: _Pool, metric: str) -> float:
    return float(_statistic(pool.sums, metric))


def _counts(pool: _Pool, metric: str) -> tuple[int, int]:
    hits, scored = PROPORTIONS[metric]
    return round(pool.sums[hits]), int(pool.sums[scored])


def _gap(a: _Pool, b: _Pool, metric: str, confidence: float) -> tuple[Gap, float]:
    """Metric of A − metric of B and their ratio with intervals (see `intervals`), and the p-value of
    the difference (consistent with its interval)."""
    if metric in PROPORTIONS:
        return (proportion_gap(*_counts(a, metric), *_counts(b, metric), confidence=confidence),
                proportion_gap_p_value(*_counts(a, metric), *_counts(b, metric)))
    resampled_a, resampled_b = _statistic(a.resampled, metric), _statistic(b.resampled, metric)
    gap = resampled_gap(_value(a, metric), _value(b, metric), resampled_a, resampled_b, confidence=confidence)
    return gap, bootstrap_p_value(gap.difference, resampled_a - resampled_b)


def judged_metrics(groups: pd.DataFrame) -> list[str]:
    """The metrics a table's gaps and verdicts are judged on: the age error where ages are exact (not
    where every face's age is a band), gender accuracy and age-band accuracy where scored."""
    whole = groups[groups["attribute"] == "all"]
    banded = bool(len(whole)) and int(whole["n_age_band"].iloc[0]) == int(whole["n"].iloc[0])
    metrics = [] if banded else ["mae", "rmse"]
    return metrics + [m for m in PROPORTIONS if groups[m].notna().any()]


def all_equal_p_value(disaggregated: Disaggregated, attribute: str, labels: Sequence[str], metric: str) -> float:
    """P-value of "all these groups are equal" on `metric`, for the range (max − min) of their values:
    a bootstrap under the null, each group's resampled statistic centred on its own value (so that every
    group has the same mean), the range taken again in each resample, so the worst and the best are
    re-selected every time (Hall & Wilson 1991). (1 + resamples with a range ≥ the observed) / (1 +
    resamples); NaN without resamples."""
    pools = [_pool(disaggregated, attribute, [label]) for label in labels]
    if not pools or len(pools[0].resampled) == 0:
        return float("nan")
    observed = np.array([_value(pool, metric) for pool in pools])
    centred = np.column_stack([_statistic(pool.resampled, metric) for pool in pools]) - observed
    with np.errstate(invalid="ignore"):
        ranges = np.nanmax(centred, axis=1) - np.nanmin(centred, axis=1)
    ranges = ranges[~np.isnan(ranges)]
    statistic = np.nanmax(observed) - np.nanmin(observed)
    return float((1 + (ranges >= statistic - 1e-12).sum()) / (1 + len(ranges)))


def gaps(disaggregated: Disaggregated, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Worst − best and worst / best per attribute and metric, naming both groups, with the intervals
    of the difference and of the ratio, and the p-value of "all groups equal" (`all_equal_p_value`),
    Holm-adjusted within each metric's gaps (multiplicity.py). `verdict_raw` is the raw interval's
    word (`worse` where the difference's interval excludes zero on the worse side); `verdict` says
    `worse` only where that holds and the adjusted test of all groups equal is significant too.

    Groups flagged `small` are left out of the comparison (and listed) unless fewer than two groups
    would remain. The worst and best are picked by their point values; the test of all groups equal
    re-picks them in every resample, so the verdict does not rest on the most favourable comparison.
    `metrics`: default `judged_metrics` (never an age error where ages are bands).
    """
    groups = disaggregated.table
    rows = []
    for attribute in [a for a in groups["attribute"].unique() if a != "all"]:
        for metric in metrics or judged_metrics(groups):
            candidates = groups[(groups["attribute"] == attribute) & groups[metric].notna()]
            judged = candidates[~candidates["small"]]
            if len(judged) < 2:
                judged = candidates
            if len(judged) < 2:
                continue
            higher_worse = HIGHER_IS_WORSE[metric]
            worst = judged.loc[judged[metric].idxmax() if higher_worse else judged[metric].idxmin()]
            best = judged.loc[judged[metric].idxmin() if higher_worse else judged[metric].idxmax()]
            gap, _ = _gap(_pool(disaggregated, attribute, [worst["group"]]),
                          _pool(disaggregated, attribute, [best["group"]]), metric, disaggregated.confidence)
            rows.append({
                "attribute": attribute, "metric": metric,
                "worst_group": worst["group"], "worst": worst[metric], "worst_n": int(worst["n"]),
                "best_group": best["group"], "best": best[metric], "best_n": int(best["n"]),
                **gap.as_dict(),
                "groups_compared": len(judged),
                "small_left_out": ", ".join(candidates.loc[~candidates.index.isin(judged.index), "group"]),
                "p_all_equal": all_equal_p_value(disaggregated, attribute, list(judged["group"]), metric),
                "family": f"gaps × {metric}", "verdict_raw": _worse_or_not(gap, higher_worse),
            })
    table = pd.DataFrame(rows, columns=[c for c in GAP_COLUMNS if c not in ("adjustment", "p_all_equal_adjusted",
                                                                             "significant", "verdict")])
    table = adjust_families(table, 1 - disaggregated.confidence, p_column="p_all_equal",
                            adjusted_column="p_all_equal_adjusted").drop(columns="significant_raw")
    table["verdict"] = _adjusted_verdict(table["verdict_raw"], table["significant"], ("worse", "better"))
    return table[GAP_COLUMNS]


def _worse_or_not(gap: Gap, higher_is_worse: bool) -> str:
    side = direction(gap.difference_ci_low, gap.difference_ci_high)
    if side in ("above", "below"):
        return "worse" if (side == "above") == higher_is_worse else "better"
    return side


def _adjusted_verdict(raw: pd.Series, significant: pd.Series, claims: Sequence[str]) -> pd.Series:
    """The raw interval's word where the adjusted test is significant too; `n.s.` where it is not."""
    return raw.where(~raw.isin(claims) | significant.astype(bool), "n.s.")


def significance(disaggregated: Disaggregated) -> pd.DataFrame:
    """Per group and metric, the difference that its verdict rests on: MAE, gender accuracy (and age-band
    accuracy where ages are bands) against the rest of the breakdown's faces (the group's value − theirs,
    with its interval); mean signed error against zero (systematic over- or under-estimation). Each
    difference has a raw p-value, adjusted within its family (`<breakdown> × <metric>`, over the groups
    large enough to be judged; multiplicity.py). `verdict_raw`: `above`/`below` where the raw interval
    of the difference excludes zero, `n.s.` where it holds it, `no interval` without one; `verdict`: the
    same word only where the adjusted p-value is significant, else `n.s.`. Where ages are bands, no age
    error is judged."""
    groups = disaggregated.table
    judged = judged_metrics(groups)
    rows = []
    for _, group in groups[groups["attribute"] != "all"].iterrows():
        attribute, label = group["attribute"], group["group"]
        others = [g for g in groups.loc[groups["attribute"] == attribute, "group"] if g != label]
        base = {"attribute": attribute, "group": label, "n": int(group["n"]), "small": bool(group["small"])}
        for metric in [m for m in ("mae", *PROPORTIONS) if m in judged]:
            if not others or pd.isna(group[metric]):
                continue
            rest = _pool(disaggregated, attribute, others)
            reference = _value(rest, metric)
            if pd.isna(reference):
                continue
            gap, p_value = _gap(_pool(disaggregated, attribute, [label]), rest, metric, disaggregated.confidence)
            rows.append({**base, "metric": metric, "value": group[metric], "ci_low": group[f"{metric}_ci_low"],
                         "ci_high": group[f"{metric}_ci_high"], "compared_with": "the rest", "reference": reference,
                         "difference": gap.difference, "difference_ci_low": gap.difference_ci_low,
                         "difference_ci_high": gap.difference_ci_high, "p_value": p_value,
                         "verdict_raw": direction(gap.difference_ci_low, gap.difference_ci_high)})
        if "mae" in judged:
            rows.append(_against_zero(disaggregated, base))
    table = pd.DataFrame(rows, columns=["attribute", "group", "n", "small", "metric", "value", "ci_low", "ci_high",
                                        "compared_with", "reference", "difference", "difference_ci_low",
                                        "difference_ci_high", "p_value", "verdict_raw"])
    table["family"] = table["attribute"] + " × " + table["metric"]
    table = adjust_families(table, 1 - disaggregated.confidence, eligible=_judgeable(table))
    table["verdict"] = _adjusted_verdict(table["verdict_raw"], table["significant"], ("above", "below"))
    return table[SIGNIFICANCE_COLUMNS]


def _against_zero(disaggregated: Disaggregated, base: dict) -> dict:
    """A group's mean signed error against zero, with its interval and p-value."""
    group = disaggregated.table.set_index(["attribute", "group"]).loc[(base["attribute"], base["group"])]
    resampled = _statistic(disaggregated.resampled[(base["attribute"], base["group"])], "mean_error")
    low, high = group["mean_error_ci_low"], group["mean_error_ci_high"]
    return {**base, "metric": "mean_error", "value": group["mean_error"], "ci_low": low, "ci_high": high,
            "compared_with": "zero", "reference": 0.0, "difference": group["mean_error"],
            "difference_ci_low": low, "difference_ci_high": high,
            "p_value": bootstrap_p_value(group["mean_error"], resampled), "verdict_raw": direction(low, high)}


def _judgeable(table: pd.DataFrame) -> pd.Series:
    """The rows counted in their family: groups large enough to be judged (all, in a family with none)."""
    large = ~table["small"].astype(bool)
    any_large = large.groupby(table["family"]).transform("any")
    return large | ~any_large


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


def ages_are_bands(overall: Mapping) -> bool:
    """Is every face's age a labelled band (FairFace: `age` is the band's midpoint)? Then an MAE mixes the
    model's error with the band's width: such a set is judged by age-band accuracy, and never pooled
    with exact ages."""
    return bool(overall.get("n")) and overall.get("n_age_band") == overall.get("n")


def exact_age_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows whose age is exact (no labelled band)."""
    return frame[frame[BAND_COLUMN].isna()] if BAND_COLUMN in frame.columns else frame


def _plain(value):
    """A JSON-friendly Python scalar (NaN -> None)."""
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    value = float(value)
    return None if np.isnan(value) else round(value, 6)


# ---------------------------------------------------------------------------------------------------
# Datasets labelled with age bands only


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


def source_band_accuracy(frame: pd.DataFrame, edges: Sequence[int], confidence: float,
                         attributes: Sequence[str] = ("all", "race", "gender", "race*gender")) -> pd.DataFrame:
    """Age band accuracy with its Wilson interval per group, over the rows that carry an `age_band_source`."""
    banded = frame[frame[BAND_COLUMN].notna()].reset_index(drop=True)
    hits = in_source_band(banded["age_pred"], banded[BAND_COLUMN])
    prepared = prepare(banded, edges)
    rows = []
    for attribute in [a for a in breakdowns(prepared) if a in attributes]:
        for label, positions in _ordered(group_positions(prepared, attribute), attribute, edges):
            judged = hits[positions][~np.isnan(hits[positions])]
            low, high = binomial_interval(int(judged.sum()), len(judged), confidence)
            rows.append({"attribute": attribute, "group": label, "n": len(judged),
                         "age_band_accuracy": float(judged.mean()) if len(judged) else np.nan,
                         "age_band_accuracy_ci_low": low, "age_band_accuracy_ci_high": high})
    return pd.DataFrame(rows, columns=["attribute", "group", "n", "age_band_accuracy", "age_band_accuracy_ci_low",
                                       "age_band_accuracy_ci_high"])


# ---------------------------------------------------------------------------------------------------
# One predictions table, evaluated


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
        overall.update(age_band_accuracy=_plain(whole["age_band_accuracy"]), n_age_band=int(whole["n"]),
                       age_band_accuracy_ci_low=_plain(whole["age_band_accuracy_ci_low"]),
                       age_band_accuracy_ci_high=_plain(whole["age_band_accuracy_ci_high"]))
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
