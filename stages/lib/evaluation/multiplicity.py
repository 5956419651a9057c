"""Verdicts that survive multiplicity: p-values adjusted within each family of tests.

A family is one breakdown × one metric (`race × mae`: every race against the rest of the faces on
MAE), the gap tests of one metric across breakdowns (`gaps × mae`), or the age bands of one
experiment's paired change against the reference (`band_changes × mae`). Only the adjusted p-value
makes a result `significant`; the raw p-value and the raw (unadjusted 95%) intervals stay beside it,
labelled raw.

Which adjustment where, and why:
- Holm (step-down Bonferroni) for families of at most `HOLM_MAX_TESTS` tests (single attributes:
  5 races, 2 genders, 5 age bands; race × gender; gender × age band; the 5 age bands of a paired
  change; the gap tests). It controls the family-wise error rate (the chance of even one false
  "worse" in the family), the right promise where each verdict is read on its own, and it is
  affordable when the family is short.
- Benjamini–Hochberg for longer lists (race × age band: 25 cells). There the family-wise promise
  leaves almost no power; BH controls the false discovery rate instead: of the cells called
  significant, at most a share `alpha` are expected to be false.
Both are valid under the dependence these tests have (Holm under any; BH under the positive
dependence of group-against-rest tests on one test set, Benjamini & Yekutieli 2001).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

HOLM_MAX_TESTS = 10   # a family longer than this is adjusted by Benjamini–Hochberg
HOLM, BH = "holm", "bh"


def _over_known(p_values, adjust) -> np.ndarray:
    """`adjust(sorted p-values)` -> their adjusted values, applied to the known p-values in ascending
    order (NaN kept as NaN and left out of the count), capped at 1."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(len(p), np.nan)
    known = np.flatnonzero(~np.isnan(p))
    if len(known):
        order = known[np.argsort(p[known], kind="stable")]
        adjusted[order] = np.minimum(adjust(p[order]), 1.0)
    return adjusted


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN kept as NaN, left out of the count)."""
    return _over_known(p_values, lambda p: np.maximum.accumulate((len(p) - np.arange(len(p))) * p))


def benjamini_hochberg(p_values) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values; NaN kept as NaN, left out of the count)."""
    return _over_known(p_values, lambda p: np.minimum.accumulate((p * len(p) / np.arange(1, len(p) + 1))[::-1])[::-1])


def adjustment_for(tests: int) -> str:
    """`holm` for a family of up to HOLM_MAX_TESTS tests, `bh` for a longer one."""
    return HOLM if tests <= HOLM_MAX_TESTS else BH


ADJUSTERS = {HOLM: holm, BH: benjamini_hochberg}


def adjust_families(table: pd.DataFrame, alpha: float, *, p_column: str = "p_value",
                    adjusted_column: str = "p_adjusted", eligible: pd.Series | None = None) -> pd.DataFrame:
    """`table` with `adjustment`, `adjusted_column`, `significant` (adjusted p < alpha) and
    `significant_raw` (raw p < alpha), each family (the `family` column) adjusted on its own.

    Rows outside `eligible` (e.g. groups too small to be judged) are left out of their family's count:
    no adjusted p-value, never significant; their raw p-value stays."""
    out = table.copy()
    eligible = pd.Series(True, index=out.index) if eligible is None else eligible.reindex(out.index).fillna(False)
    out["adjustment"], out[adjusted_column] = "", np.nan
    for _, rows in out[eligible.astype(bool)].groupby("family", sort=False):
        tests = int(rows[p_column].notna().sum())
        method = adjustment_for(tests)
        out.loc[rows.index, "adjustment"] = method
        out.loc[rows.index, adjusted_column] = ADJUSTERS[method](rows[p_column].to_numpy(dtype=float))
    out["significant"] = (out[adjusted_column] < alpha).fillna(False).astype(bool)
    out["significant_raw"] = (out[p_column] < alpha).fillna(False).astype(bool)
    return out


def adjusted_verdict(raw: pd.Series, significant: pd.Series, claims) -> pd.Series:
    """The raw interval's word where the adjusted test is significant too; `n.s.` where it is not."""
    return raw.where(~raw.isin(claims) | significant.astype(bool), "n.s.")
