"""Confidence intervals: the bootstrap machinery, binomial intervals of proportions, and intervals of
the difference and the ratio of two groups (or of two models on the same faces).

What is drawn how, and why not with fairlearn's `MetricFrame(n_boot=..., ci_quantiles=...)`:

- A mean (MAE, RMSE, mean signed error, a paired change in error) gets a percentile bootstrap. The
  resampling is vectorised (counts of each row per resample, times the row values, one matrix product
  per chunk) and seeded per group, so that a group's interval does not depend on which other groups
  exist. MetricFrame instead re-runs a pandas groupby per resample: seconds per breakdown at 1,000
  resamples of 20,000 faces, and one generator for the whole table.
- A proportion (gender accuracy, age-band accuracy) gets a binomial interval (Wilson by default,
  Clopper–Pearson on request). A percentile bootstrap of a group that happens to be all right
  resamples nothing but ones and reports `100% [100%, 100%]`; Wilson gives 20/20 right [83.9%, 100%].
- The gap between two groups gets its own interval of the difference and of the ratio, and every
  "worse"/"better" rests on the sign of the difference's interval (`direction`), never on whether two
  intervals overlap. MetricFrame's difference_ci()/ratio_ci() are intervals of max − min (min / max)
  over all groups, re-chosen in every resample: ≥ 0 by construction, they can never say "no
  difference" and they cannot leave small groups out. Here the two groups are named: means by the
  bootstrap (`resampled_gap`; `paired_mean_gap` for two models on the same faces), proportions by
  Newcombe's hybrid score interval of the difference and the MOVER interval of the ratio, both built
  from the two Wilson intervals (so that a group that is all right does not shrink the gap's interval
  to nothing, as its bootstrap would).
- Faces are not independent where one person (or a look-alike) appears several times: where the
  table carries a `cluster` per face, the bootstrap draws clusters, not faces (`resample_cluster_sums`;
  a face without a cluster is a cluster of one, so a table without clusters resamples exactly as
  before). The means are then ratios (sum over the drawn clusters / faces drawn).
- Each difference also gets a p-value consistent with its interval (`bootstrap_p_value`: Wald on the
  bootstrap standard error, so that a p-value is not floored at 1 / resamples; `proportion_gap_p_value`:
  the level at which Newcombe's interval just reaches zero), for the multiplicity adjustment
  (multiplicity.py).
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.stats import binomtest, norm

_CELLS_PER_CHUNK = 1_000_000   # rows x resamples drawn at once: bounds memory at ~8 MB per chunk
BINOMIAL_METHODS = {"wilson": "wilson", "clopper_pearson": "exact"}   # our name -> scipy's
NAN = float("nan")


@dataclass(frozen=True)
class Bootstrap:
    """How confidence intervals are drawn: `resamples` (0 = no bootstrap intervals), `confidence`, `seed`."""

    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 42


@dataclass(frozen=True)
class Gap:
    """A − B and A / B, each with its interval (NaN where there is none)."""

    difference: float
    difference_ci_low: float
    difference_ci_high: float
    ratio: float
    ratio_ci_low: float
    ratio_ci_high: float

    def as_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------
# The bootstrap


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


def cluster_codes(clusters, n: int) -> np.ndarray:
    """An integer cluster per row, numbered in order of first appearance; a row without a cluster (None,
    NaN, blank) is a cluster of its own. `clusters` None: every row is its own cluster (0..n-1)."""
    if clusters is None:
        return np.arange(n)
    labels = pd.Series(np.asarray(clusters, dtype=object)).astype(object)
    blank = labels.isna() | (labels.astype(str).str.strip() == "")
    labels = labels.where(~blank, pd.Series([f"\0row{i}" for i in range(n)], dtype=object))
    codes, _ = pd.factorize(labels.astype(str), sort=False)
    return codes.astype(np.int64)


def cluster_totals(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Column sums of `values` (n × k) per cluster (codes renumbered by first appearance) -> (clusters × k)."""
    values = np.asarray(values, dtype=float)
    values = values[:, None] if values.ndim == 1 else values
    order, renumbered = np.unique(np.asarray(codes), return_index=True, return_inverse=True)[1:]
    first = np.argsort(np.argsort(order))          # rank of each cluster by its first row
    totals = np.zeros((len(order), values.shape[1]))
    np.add.at(totals, first[renumbered], values)
    return totals


def resample_cluster_sums(values: np.ndarray, codes: np.ndarray | None, resamples: int,
                          rng: np.random.Generator) -> np.ndarray:
    """`resample_sums` drawing whole clusters: each resample draws as many clusters as there are, with
    replacement, and sums their rows. With one face per cluster it is `resample_sums` itself (same draws)."""
    if codes is None:
        return resample_sums(values, resamples, rng)
    return resample_sums(cluster_totals(values, codes), resamples, rng)


def wald_p_value(estimate: float, standard_error: float) -> float:
    """Two-sided p-value of `estimate` = 0 given its standard error (0 error: 1 at 0, else 0)."""
    if standard_error == 0:
        return 1.0 if estimate == 0 else 0.0
    return float(2 * norm.sf(abs(estimate) / standard_error))


def bootstrap_p_value(difference: float, resampled_differences) -> float:
    """Two-sided p-value of `difference` = 0 from its bootstrap distribution: Wald, with the bootstrap's
    standard error (the percentile count would floor every p at 1 / resamples, too coarse for Holm over
    tens of tests). NaN without resamples."""
    resampled = np.asarray(resampled_differences, dtype=float)
    resampled = resampled[~np.isnan(resampled)]
    if len(resampled) < 2 or np.isnan(difference):
        return NAN
    return wald_p_value(difference, float(resampled.std(ddof=1)))


def paired_p_value(differences) -> float:
    """Two-sided p-value of a mean paired difference of 0: Wald, with the differences' own standard
    error of the mean. NaN for fewer than two pairs."""
    differences = np.asarray(differences, dtype=float)
    if len(differences) < 2:
        return NAN
    return wald_p_value(float(differences.mean()), float(differences.std(ddof=1)) / np.sqrt(len(differences)))


def _wilson(successes: float, n: float, z: float) -> tuple[float, float]:
    p = successes / n
    denominator = 1 + z ** 2 / n
    centre = (p + z ** 2 / (2 * n)) / denominator
    half = z / denominator * np.sqrt(p * (1 - p) / n + z ** 2 / (4 * n ** 2))
    return centre - half, centre + half


def proportion_gap_p_value(successes_a: int, n_a: int, successes_b: int, n_b: int) -> float:
    """Two-sided p-value of pA = pB that agrees with `proportion_gap`'s interval: 1 − the confidence at
    which Newcombe's interval of pA − pB just reaches zero (found by bisection on z)."""
    if n_a <= 0 or n_b <= 0:
        return NAN
    p1, p2 = successes_a / n_a, successes_b / n_b
    if p1 == p2:
        return 1.0

    def excludes_zero(z: float) -> bool:
        l1, u1 = _wilson(successes_a, n_a, z)
        l2, u2 = _wilson(successes_b, n_b, z)
        if p1 > p2:
            return p1 - p2 - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2) > 0
        return p1 - p2 + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2) < 0

    low, high = 0.0, 40.0
    if excludes_zero(high):
        return 0.0
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if excludes_zero(middle) else (low, middle)
    return float(2 * norm.sf(low))


def percentile_interval(statistics: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central `confidence` interval of bootstrap statistics (NaN-tolerant; (nan, nan) if none)."""
    statistics = np.asarray(statistics, dtype=float)
    if statistics.size == 0 or np.isnan(statistics).all():
        return NAN, NAN
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
        return NAN, NAN
    sums = resample_sums(values, bootstrap.resamples, group_rng(bootstrap, key))[:, 0]
    return percentile_interval(sums / len(values), bootstrap.confidence)


def direction(low: float, high: float) -> str:
    """Where an interval of a difference lies: `above` zero, `below` zero, `n.s.` (it holds zero), or
    `no interval`."""
    if low is None or high is None or np.isnan(low) or np.isnan(high):
        return "no interval"
    if low > 0:
        return "above"
    if high < 0:
        return "below"
    return "n.s."


# ---------------------------------------------------------------------------------------------------
# Proportions


def binomial_interval(successes: int, n: int, confidence: float, method: str = "wilson") -> tuple[float, float]:
    """Interval of the proportion successes / n: `wilson` (score) or `clopper_pearson` (exact); NaNs for n = 0."""
    if method not in BINOMIAL_METHODS:
        raise ValueError(f"unknown binomial interval {method!r}; allowed: {', '.join(BINOMIAL_METHODS)}")
    if n <= 0:
        return NAN, NAN
    interval = binomtest(int(successes), int(n)).proportion_ci(confidence, method=BINOMIAL_METHODS[method])
    return float(interval.low), float(interval.high)


def proportion_gap(successes_a: int, n_a: int, successes_b: int, n_b: int, *, confidence: float) -> Gap:
    """pA − pB (Newcombe's hybrid score interval) and pA / pB (MOVER-R), from the two Wilson intervals.

    Newcombe (1998), method 10; Donner & Zou (2012) for the ratio. Both recover the variance of each
    proportion from the ends of its own Wilson interval, so that a group with no errors still carries
    its uncertainty into the gap.
    """
    if n_a <= 0 or n_b <= 0:
        return Gap(NAN, NAN, NAN, NAN, NAN, NAN)
    p1, p2 = successes_a / n_a, successes_b / n_b
    l1, u1 = binomial_interval(successes_a, n_a, confidence)
    l2, u2 = binomial_interval(successes_b, n_b, confidence)
    difference = p1 - p2
    low = difference - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = difference + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    ratio, ratio_low, ratio_high = _mover_ratio((p1, l1, u1), (p2, l2, u2))
    return Gap(float(difference), float(low), float(high), ratio, ratio_low, ratio_high)


def _mover_ratio(first: tuple[float, float, float], second: tuple[float, float, float]) -> tuple[float, float, float]:
    """p1 / p2 and its MOVER-R interval from each proportion's (estimate, low, high); the upper end is
    infinite where p2's interval reaches zero."""
    (p1, l1, u1), (p2, l2, u2) = first, second
    if p2 == 0:
        return NAN, NAN, NAN
    product = p1 * p2
    low = (product - np.sqrt(max(product ** 2 - l1 * u2 * (2 * p1 - l1) * (2 * p2 - u2), 0.0))) / (u2 * (2 * p2 - u2))
    high_denominator = l2 * (2 * p2 - l2)
    if high_denominator <= 0:
        return float(p1 / p2), float(max(low, 0.0)), float("inf")
    high = (product + np.sqrt(max(product ** 2 - u1 * l2 * (2 * p1 - u1) * (2 * p2 - l2), 0.0))) / high_denominator
    return float(p1 / p2), float(max(low, 0.0)), float(high)


# ---------------------------------------------------------------------------------------------------
# Gaps of means


def resampled_gap(value_a: float, value_b: float, resampled_a: np.ndarray, resampled_b: np.ndarray,
                  *, confidence: float) -> Gap:
    """A − B and A / B with percentile intervals from the statistics of each resample.

    `resampled_a[i]` and `resampled_b[i]` belong together: drawn from the same resample of the same
    faces (two models: paired), or from independent resamples of two disjoint groups.
    """
    resampled_a, resampled_b = np.asarray(resampled_a, dtype=float), np.asarray(resampled_b, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(resampled_b != 0, resampled_a / resampled_b, np.nan)
        ratio = value_a / value_b if value_b else NAN
    return Gap(float(value_a - value_b), *percentile_interval(resampled_a - resampled_b, confidence),
               float(ratio), *percentile_interval(ratios, confidence))


def paired_mean_gap(a, b, bootstrap: Bootstrap, key: str) -> Gap:
    """mean(a) − mean(b) and mean(a) / mean(b) over the same faces (e.g. two models' absolute errors on
    one test set), with paired bootstrap intervals: each resample draws faces, and both means are taken
    over that one draw, so that what the faces share cancels out."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) != len(b):
        raise ValueError(f"a paired gap needs the same faces on both sides; got {len(a)} and {len(b)} values")
    if len(a) == 0:
        return Gap(NAN, NAN, NAN, NAN, NAN, NAN)
    if bootstrap.resamples == 0:
        return resampled_gap(a.mean(), b.mean(), np.empty(0), np.empty(0), confidence=bootstrap.confidence)
    sums = resample_sums(np.column_stack([a, b]), bootstrap.resamples, group_rng(bootstrap, key)) / len(a)
    return resampled_gap(a.mean(), b.mean(), sums[:, 0], sums[:, 1], confidence=bootstrap.confidence)
