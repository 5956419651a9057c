"""Worst − best per breakdown and metric: each gap judged on its own multiplicity-adjusted interval, and
beside it an omnibus test of "all groups of the breakdown equal".

- The gap: the worst and the best group (picked by point value, small groups left out) with the raw
  interval of their difference and ratio, and the difference's interval at the Bonferroni-adjusted
  confidence 1 − α / m, m = k (k − 1) / 2 the pairs of the k groups compared. Worst − best is the
  largest of those pairwise differences, so the family it is drawn from is every pair: covering all
  of them at once covers the pair picked after looking (picking the extremes does not flatter the
  gap). The verdict `worse` rests on the adjusted interval alone: a gap is `n.s.` only where its own
  adjusted interval holds 0 (a low-power test of all groups never hides a gap its interval shows).
- The omnibus test: a Wald test of heterogeneity (Cochran's Q with each group's variance from the
  cluster bootstrap, so that look-alike clusters count as the intervals count them; for a proportion
  the variance is at least the Agresti–Coull binomial one, so that a group that is all right does not
  weigh infinitely): Q = Σ w_g (v_g − v̄_w)², w_g = 1 / var_g, against χ² with k − 1 degrees of
  freedom. Its p-values are adjusted over the breakdowns of one metric (family `gaps × <metric>`,
  multiplicity.py: Holm).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import chi2

from stages.lib.evaluation.disaggregation import PROPORTIONS, Disaggregated
from stages.lib.evaluation.group_differences import Pool, counts, difference, judged_metrics, pool, statistic, value
from stages.lib.evaluation.intervals import Gap, direction
from stages.lib.evaluation.multiplicity import adjust_families

# For each metric a gap is judged on: is a higher value worse?
HIGHER_IS_WORSE = {"mae": True, "rmse": True, "gender_accuracy": False, "age_band_accuracy": False}
# `verdict` rests on the adjusted interval (difference_adjusted_ci_*); `verdict_raw` on the raw one.
GAP_COLUMNS = ["attribute", "metric", "worst_group", "worst", "worst_n", "best_group", "best", "best_n",
               "difference", "difference_ci_low", "difference_ci_high", "ratio", "ratio_ci_low", "ratio_ci_high",
               "groups_compared", "small_left_out", "family", "tests", "adjusted_confidence",
               "difference_adjusted_ci_low", "difference_adjusted_ci_high", "significant",
               "omnibus_statistic", "omnibus_df", "p_all_equal", "adjustment", "p_all_equal_adjusted",
               "omnibus_significant", "verdict_raw", "verdict"]
NAN = float("nan")


def group_variance(pooled: Pool, metric: str) -> float:
    """The variance of a group's statistic: its cluster-bootstrap variance, at least the Agresti–Coull
    binomial variance for a proportion; NaN for a mean without resamples."""
    resampled = statistic(pooled.resampled, metric) if len(pooled.resampled) else np.empty(0)
    resampled = resampled[np.isfinite(resampled)]
    bootstrap = float(resampled.var(ddof=1)) if len(resampled) > 1 else NAN
    if metric not in PROPORTIONS:
        return bootstrap
    hits, scored = counts(pooled, metric)
    shrunk = (hits + 2) / (scored + 4)
    floor = shrunk * (1 - shrunk) / (scored + 4)
    return floor if np.isnan(bootstrap) else max(bootstrap, floor)


def omnibus_test(disaggregated: Disaggregated, attribute: str, labels: Sequence[str],
                 metric: str) -> tuple[float, int, float]:
    """(Q, degrees of freedom, p-value) of "these groups share one value of `metric`" (see the module);
    (NaN, 0, NaN) where fewer than two groups have a value and a variance."""
    pools = [pool(disaggregated, attribute, [label]) for label in labels]
    values = np.array([value(p, metric) for p in pools])
    variances = np.array([group_variance(p, metric) for p in pools])
    usable = np.isfinite(values) & np.isfinite(variances) & (variances > 0)
    if usable.sum() < 2:
        return NAN, 0, NAN
    weights, values = 1 / variances[usable], values[usable]
    centre = float((weights * values).sum() / weights.sum())
    q = float((weights * (values - centre) ** 2).sum())
    degrees = int(usable.sum()) - 1
    return q, degrees, float(chi2.sf(q, degrees))


def gaps(disaggregated: Disaggregated, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Worst − best and worst / best per attribute and metric, naming both groups, with the raw and the
    Bonferroni-adjusted interval of the difference, the raw interval of the ratio, and the omnibus test
    (see the module). `verdict_raw` is the raw interval's word, `verdict` the adjusted one's.

    Groups flagged `small` are left out of the comparison (and listed) unless fewer than two groups
    would remain. `metrics`: default `judged_metrics` (never an age error where ages are bands)."""
    picked = [pick for attribute in disaggregated.table["attribute"].unique() if attribute != "all"
              for metric in metrics or judged_metrics(disaggregated.table)
              for pick in [_worst_and_best(disaggregated, attribute, metric)] if pick is not None]
    alpha = 1 - disaggregated.confidence
    rows = [_gap_row(disaggregated, pick) for pick in picked]
    table = pd.DataFrame(rows, columns=[c for c in GAP_COLUMNS if c not in (
        "tests", "adjusted_confidence", "difference_adjusted_ci_low", "difference_adjusted_ci_high", "significant",
        "adjustment", "p_all_equal_adjusted", "omnibus_significant", "verdict")])
    table["tests"] = (table["groups_compared"] * (table["groups_compared"] - 1) // 2).astype(int)
    table["adjusted_confidence"] = 1 - alpha / table["tests"].clip(lower=1)
    adjusted = [difference(*pick[2:4], pick[1], confidence)[0]
                for pick, confidence in zip(picked, table["adjusted_confidence"])]
    table["difference_adjusted_ci_low"] = [g.difference_ci_low for g in adjusted]
    table["difference_adjusted_ci_high"] = [g.difference_ci_high for g in adjusted]
    table["verdict"] = [_worse_or_not(g, HIGHER_IS_WORSE[metric]) for g, metric in zip(adjusted, table["metric"])]
    table["significant"] = table["verdict"].isin(["worse", "better"])
    omnibus = adjust_families(table.drop(columns="significant"), alpha, p_column="p_all_equal",
                              adjusted_column="p_all_equal_adjusted")
    table["adjustment"], table["p_all_equal_adjusted"] = omnibus["adjustment"], omnibus["p_all_equal_adjusted"]
    table["omnibus_significant"] = omnibus["significant"]
    return table[GAP_COLUMNS]


def _worst_and_best(disaggregated: Disaggregated, attribute: str, metric: str) -> tuple | None:
    """(attribute, metric, worst pool, best pool, worst row, best row, groups judged, groups left out)."""
    groups = disaggregated.table
    candidates = groups[(groups["attribute"] == attribute) & groups[metric].notna()]
    judged = candidates[~candidates["small"]]
    if len(judged) < 2:
        judged = candidates
    if len(judged) < 2:
        return None
    higher_worse = HIGHER_IS_WORSE[metric]
    worst = judged.loc[judged[metric].idxmax() if higher_worse else judged[metric].idxmin()]
    best = judged.loc[judged[metric].idxmin() if higher_worse else judged[metric].idxmax()]
    left_out = candidates.loc[~candidates.index.isin(judged.index), "group"]
    return (attribute, metric, pool(disaggregated, attribute, [worst["group"]]),
            pool(disaggregated, attribute, [best["group"]]), worst, best, list(judged["group"]), list(left_out))


def _gap_row(disaggregated: Disaggregated, pick: tuple) -> dict:
    attribute, metric, worst_pool, best_pool, worst, best, judged, left_out = pick
    gap, _ = difference(worst_pool, best_pool, metric, disaggregated.confidence)
    q, degrees, p_value = omnibus_test(disaggregated, attribute, judged, metric)
    return {"attribute": attribute, "metric": metric,
            "worst_group": worst["group"], "worst": worst[metric], "worst_n": int(worst["n"]),
            "best_group": best["group"], "best": best[metric], "best_n": int(best["n"]),
            **gap.as_dict(), "groups_compared": len(judged), "small_left_out": ", ".join(left_out),
            "family": f"gaps × {metric}", "omnibus_statistic": q, "omnibus_df": degrees, "p_all_equal": p_value,
            "verdict_raw": _worse_or_not(gap, HIGHER_IS_WORSE[metric])}


def _worse_or_not(gap: Gap, higher_is_worse: bool) -> str:
    side = direction(gap.difference_ci_low, gap.difference_ci_high)
    if side in ("above", "below"):
        return "worse" if (side == "above") == higher_is_worse else "better"
    return side
