"""Rebalancing the training set as index and weight operations on cached features (never image copies).

- Oversampling (the study): rows whose age falls in a rule's range appear `factor` times in the
  training index, i.e. factor 2 appends them once more, factor 3 twice more.
- Re-weighting (ours, for comparison): each row's loss weight is inversely proportional to how many
  training rows share its age band, scaled so the weights average 1 over the rows they weigh.
- Group balancing (mitigation `balanced`): every group (race x gender by default) gets the same
  number of rows; and the group-balanced held-out set of mitigation `last_layer`.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from stages.lib.core.errors import UserError
from stages.lib.core.labels import age_band


class SamplingError(UserError, ValueError):
    """An oversampling rule or age band that cannot be applied."""


def _rule(rule: Mapping[str, Any] | Any) -> tuple[int, int | None, int]:
    """(min_age, max_age, factor) from a params `Oversample` or a plain dict."""
    get = rule.get if isinstance(rule, Mapping) else lambda key, default=None: getattr(rule, key, default)
    min_age, max_age, factor = get("min_age"), get("max_age", None), get("factor")
    if min_age is None or factor is None or int(factor) < 1:
        raise SamplingError(f"oversample rule {rule!r} needs min_age and an integer factor >= 1")
    if max_age is not None and max_age < min_age:
        raise SamplingError(f"oversample rule {rule!r}: max_age is below min_age")
    return int(min_age), (None if max_age is None else int(max_age)), int(factor)


def _check_disjoint(rules: list[tuple[int, int | None, int]]) -> None:
    ordered = sorted(rules, key=lambda r: r[0])
    for (low_a, high_a, _), (low_b, high_b, _) in zip(ordered, ordered[1:]):
        if high_a is None or high_a >= low_b:
            raise SamplingError(
                f"oversample rules overlap: ages {low_a}-{'' if high_a is None else high_a} and "
                f"{low_b}-{'' if high_b is None else high_b}; give each age at most one factor")


def oversample_indices(ages: Sequence[int] | np.ndarray, rules: Sequence[Any]) -> np.ndarray:
    """Row indices into `ages` with every row matching a rule repeated to `factor` copies in total.

    A rule is {min_age, max_age (inclusive; None = no upper limit), factor}; rules must not overlap.
    The result lists every row once, in order, then the extra copies appended as the study did
    (factor 2: the matching rows once more; factor 3: twice more). Training shuffles it anyway.
    """
    ages = np.asarray(ages)
    parsed = [_rule(rule) for rule in rules]
    _check_disjoint(parsed)
    copies = np.ones(len(ages), dtype=np.int64)
    for min_age, max_age, factor in parsed:
        matches = (ages >= min_age) & (ages <= (np.inf if max_age is None else max_age))
        copies[matches] = factor
    base = np.arange(len(ages), dtype=np.int64)
    extra = [base[copies > round_] for round_ in range(1, int(copies.max(initial=1)))]
    return np.concatenate([base, *extra])


def inverse_band_weights(ages: Sequence[int] | np.ndarray, edges: Sequence[int]) -> np.ndarray:
    """Loss weight per row ∝ 1 / (rows in that row's age band), with mean 1 over the rows.

    `edges` are the bands' lower edges (params.age_bands). With n rows in B non-empty bands, a row in
    a band of n_b rows weighs n / (B · n_b): every band then carries the same total weight n / B.
    """
    ages = np.asarray(ages, dtype=float)
    if ages.size == 0:
        return np.ones(0)
    band = np.searchsorted(np.asarray(edges, dtype=float), ages, side="right") - 1
    if (band < 0).any():
        raise SamplingError(f"ages {sorted(set(ages[band < 0].tolist()))} lie below the first age band "
                            f"edge {edges[0]} (params.age_bands)")
    counts = np.bincount(band)
    present = np.count_nonzero(counts)
    return len(ages) / (present * counts[band])


def training_plan(ages: Sequence[int] | np.ndarray, oversample: Sequence[Any], reweight: str,
                  edges: Sequence[int]) -> tuple[np.ndarray, np.ndarray | None]:
    """(indices into `ages`, loss weights per index or None) for one experiment's training set.

    Oversampling comes first; re-weighting then weighs the oversampled rows, so the two compose.
    """
    indices = oversample_indices(ages, oversample)
    if reweight == "none":
        return indices, None
    if reweight == "inverse_band_frequency":
        return indices, inverse_band_weights(np.asarray(ages)[indices], edges)
    raise SamplingError(f"reweight {reweight!r} is not one of none, inverse_band_frequency")


UNKNOWN = "unknown"   # the group value of a row whose race (or other group column) is not labelled


def group_codes(frame: pd.DataFrame, columns: Sequence[str], edges: Sequence[int]) -> tuple[np.ndarray, list[str]]:
    """(group index of each row, group names): a group is the `*`-joined values of `columns`
    (`race`, `gender`, `age_band`, the band from `edges`), e.g. `black*female`; names are sorted.

    A row without a value in a column is in that column's `unknown` group; a column no row has a
    value in cannot group anything and is refused.
    """
    parts = []
    for column in columns:
        values = (pd.Series(age_band(frame["age"], edges), index=frame.index) if column == "age_band"
                  else frame[column])
        if values.isna().all():
            raise SamplingError(f"no training row has a {column} label, so groups by {column} cannot be formed: "
                                "drop it from the mitigation's groups or fine-tune on a dataset that has it")
        parts.append(values.astype(object).where(values.notna(), UNKNOWN).astype(str))
    names = parts[0].str.cat(parts[1:], sep="*") if len(parts) > 1 else parts[0]
    groups = sorted(names.unique())
    return pd.Categorical(names, categories=groups).codes.astype(np.int64), groups


def balanced_indices(codes: np.ndarray, target: Literal["smallest", "mean", "largest"], seed: int) -> np.ndarray:
    """Row indices (sorted) with the same count for every group of `codes`: that of the smallest group,
    the mean group (rounded) or the largest. A group above the count gives a seeded sample of its rows
    without repeats; a group below it gives every row ⌊count/n⌋ times and a seeded sample of the
    remainder once more, so that no row is repeated more than any other of its group by more than one.
    """
    codes = np.asarray(codes)
    present = np.unique(codes)
    sizes = np.array([np.count_nonzero(codes == g) for g in present])
    count = {"smallest": sizes.min(), "mean": round(sizes.mean()), "largest": sizes.max()}[target] if len(sizes) else 0
    rng = np.random.default_rng(seed)
    chosen = []
    for group in present:
        rows = np.flatnonzero(codes == group)
        whole, remainder = divmod(int(count), len(rows))
        chosen += [np.tile(rows, whole), rng.choice(rows, remainder, replace=False)]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def balanced_holdout(codes: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) row indices, sorted: every group gives the same number of rows to the held-out
    set, `share` of the smallest group's rows (at least one), drawn with `seed`."""
    if not 0 < share < 1:
        raise SamplingError(f"the held-out share must lie strictly between 0 and 1, got {share}")
    codes = np.asarray(codes)
    present = np.unique(codes)
    if not len(present):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    per_group = max(1, round(share * min(np.count_nonzero(codes == g) for g in present)))
    rng = np.random.default_rng(seed)
    held = np.concatenate([rng.choice(np.flatnonzero(codes == g), per_group, replace=False) for g in present])
    return np.setdiff1d(np.arange(len(codes)), held), np.sort(held)
