"""Per group and metric, the difference its verdict rests on: against the rest of its breakdown's faces
(MAE, gender accuracy, age-band accuracy), or against zero (mean signed error), each with its raw
interval and a p-value adjusted within its family (`<breakdown> × <metric>`, multiplicity.py)."""

from __future__ import annotations

import pandas as pd

from stages.lib.evaluation.disaggregation import PROPORTIONS, Disaggregated
from stages.lib.evaluation.group_differences import difference, judged_metrics, pool, statistic, value
from stages.lib.evaluation.intervals import bootstrap_p_value, direction
from stages.lib.evaluation.multiplicity import adjust_families, adjusted_verdict

SIGNIFICANCE_COLUMNS = ["attribute", "group", "n", "small", "metric", "value", "ci_low", "ci_high", "compared_with",
                        "reference", "difference", "difference_ci_low", "difference_ci_high", "family", "p_value",
                        "adjustment", "p_adjusted", "significant", "significant_raw", "verdict_raw", "verdict"]


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
            rest = pool(disaggregated, attribute, others)
            reference = value(rest, metric)
            if pd.isna(reference):
                continue
            gap, p_value = difference(pool(disaggregated, attribute, [label]), rest, metric, disaggregated.confidence)
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
    table["verdict"] = adjusted_verdict(table["verdict_raw"], table["significant"], ("above", "below"))
    return table[SIGNIFICANCE_COLUMNS]


def _against_zero(disaggregated: Disaggregated, base: dict) -> dict:
    """A group's mean signed error against zero, with its interval and p-value."""
    group = disaggregated.table.set_index(["attribute", "group"]).loc[(base["attribute"], base["group"])]
    resampled = statistic(disaggregated.resampled[(base["attribute"], base["group"])], "mean_error")
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

