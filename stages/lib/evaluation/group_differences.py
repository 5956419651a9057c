"""The difference between two groups (or pools of groups) of one breakdown, with its interval and p-value.

A group's statistics are ratios of the sums of `disaggregation.SUMMED`, exact and per bootstrap
resample; pooling groups adds their sums. Means get their interval from the resamples, proportions
Newcombe's (see `intervals`), and each difference a p-value consistent with its interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from stages.lib.evaluation.disaggregation import FACES, MEANS, PROPORTIONS, Disaggregated
from stages.lib.evaluation.intervals import (Gap, bootstrap_p_value, proportion_gap, proportion_gap_p_value,
                                             resampled_gap)


@dataclass(frozen=True)
class Pool:
    """One group, or several pooled: the exact sums of SUMMED and their sums in each resample."""

    sums: np.ndarray
    resampled: np.ndarray

    @property
    def n(self) -> int:
        return int(self.sums[FACES])


def pool(disaggregated: Disaggregated, attribute: str, labels: Sequence[str]) -> Pool:
    """The groups `labels` of one breakdown pooled (their sums added)."""
    keys = [(attribute, label) for label in labels if (attribute, label) in disaggregated.totals]
    return Pool(sums=sum(disaggregated.totals[key] for key in keys),
                resampled=sum(disaggregated.resampled[key] for key in keys))


def statistic(sums: np.ndarray, metric: str) -> np.ndarray:
    """A metric from sums of SUMMED (exact: one value; resampled: one per resample); NaN where undefined."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric in PROPORTIONS:
            hits, scored = PROPORTIONS[metric]
            return sums[..., hits] / sums[..., scored]
        return MEANS[metric](sums)


def value(pooled: Pool, metric: str) -> float:
    return float(statistic(pooled.sums, metric))


def counts(pooled: Pool, metric: str) -> tuple[int, int]:
    hits, scored = PROPORTIONS[metric]
    return round(pooled.sums[hits]), int(pooled.sums[scored])


def difference(a: Pool, b: Pool, metric: str, confidence: float) -> tuple[Gap, float]:
    """Metric of A − metric of B and their ratio with intervals (see `intervals`), and the p-value of
    the difference (consistent with its interval)."""
    if metric in PROPORTIONS:
        return (proportion_gap(*counts(a, metric), *counts(b, metric), confidence=confidence),
                proportion_gap_p_value(*counts(a, metric), *counts(b, metric)))
    resampled_a, resampled_b = statistic(a.resampled, metric), statistic(b.resampled, metric)
    gap = resampled_gap(value(a, metric), value(b, metric), resampled_a, resampled_b, confidence=confidence)
    return gap, bootstrap_p_value(gap.difference, resampled_a - resampled_b)


def judged_metrics(groups: pd.DataFrame) -> list[str]:
    """The metrics a table's gaps and verdicts are judged on: the age error where ages are exact (not
    where every face's age is a band), gender accuracy and age-band accuracy where scored."""
    whole = groups[groups["attribute"] == "all"]
    banded = bool(len(whole)) and int(whole["n_age_band"].iloc[0]) == int(whole["n"].iloc[0])
    metrics = [] if banded else ["mae", "rmse"]
    return metrics + [m for m in PROPORTIONS if groups[m].notna().any()]

