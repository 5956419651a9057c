"""Evaluating a model that predicts age bands, not years (Levi & Hassner's eight Adience bands).

Such a model is judged by band accuracy (its band is the face's band) and one-off band accuracy (its
band is the face's or a neighbour: Levi & Hassner's "1-off"), never by an MAE: a band has no year to
subtract. Gender is judged as for any model. Each is a proportion per group (the breakdowns of
`groups.breakdowns`: all, race, gender, age band, and their intersections) with its Wilson interval;
the worst − best gap per attribute gets Newcombe's interval of the difference, as `groups.gaps` does
for gender accuracy, and `verdict` says `worse` only where that interval excludes zero.

True ages onto the model's bands: Adience's bands leave gaps (3, 7, 13-14, 21-24, 33-37, 44-47,
54-59). `true_band` takes an age inside a band to that band, and an age in a gap to the nearest band,
the distance measured to the band's nearer end, a tie going to the older band (3 -> 4-6, 13 -> 8-12,
14 -> 15-20, 35 -> 38-43). A dataset labelled with age bands only (FairFace) stores the band's
midpoint as the age (`20-29` -> 24): that midpoint is mapped by the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from stages.lib.evaluation.disaggregation import breakdowns, group_positions, prepare
from stages.lib.evaluation.intervals import binomial_interval, direction, proportion_gap

Bands = Sequence[tuple[int, int]]
# metric -> the per-face outcome column it is the mean of
PROPORTIONS = {"band_accuracy": "band_correct", "one_off_accuracy": "band_one_off", "gender_accuracy": "gender_correct"}
BAND_GROUP_COLUMNS = ["attribute", "group", "n", *(c for m in PROPORTIONS for c in (
    f"n_{m}", m, f"{m}_ci_low", f"{m}_ci_high")), "small"]
BAND_GAP_COLUMNS = ["attribute", "metric", "worst_group", "worst", "worst_n", "best_group", "best", "best_n",
                    "difference", "difference_ci_low", "difference_ci_high", "groups_compared", "small_left_out",
                    "verdict"]


def band_label(band: tuple[int, int]) -> str:
    """(25, 32) -> '25-32'."""
    return f"{band[0]}-{band[1]}"


def true_band(ages, bands: Bands) -> np.ndarray:
    """The index of each age's band (see the module docstring: nearest band, a tie to the older one);
    -1 where the age is unknown."""
    ages = np.asarray(ages, dtype=float)
    lows = np.array([low for low, _ in bands], dtype=float)
    highs = np.array([high for _, high in bands], dtype=float)
    distance = np.maximum(lows[None, :] - ages[:, None], 0) + np.maximum(ages[:, None] - highs[None, :], 0)
    # argmin takes the first (youngest) of equal distances: search the bands oldest first instead
    oldest_first = distance[:, ::-1].argmin(axis=1)
    return np.where(np.isnan(ages), -1, len(bands) - 1 - oldest_first)


def band_outcomes(true_index, predicted_index) -> tuple[np.ndarray, np.ndarray]:
    """(right band, band within one of the right one) per face as 1.0 / 0.0; NaN where either is
    unknown (-1)."""
    true_index, predicted_index = np.asarray(true_index), np.asarray(predicted_index)
    known = (true_index >= 0) & (predicted_index >= 0)
    exact = np.where(known, (true_index == predicted_index).astype(float), np.nan)
    one_off = np.where(known, (np.abs(true_index - predicted_index) <= 1).astype(float), np.nan)
    return exact, one_off


@dataclass(frozen=True)
class BandEvaluation:
    """A band model's evaluation of one test set: per group (BAND_GROUP_COLUMNS), the gaps
    (BAND_GAP_COLUMNS) and the overall figures."""

    groups: pd.DataFrame
    gaps: pd.DataFrame
    overall: dict


def band_groups(prepared: pd.DataFrame, confidence: float, min_group_size: int) -> pd.DataFrame:
    """Each proportion of PROPORTIONS with its Wilson interval per group of every breakdown."""
    rows = []
    for attribute in breakdowns(prepared):
        for label, positions in group_positions(prepared, attribute):
            row = {"attribute": attribute, "group": label, "n": len(positions)}
            for metric, column in PROPORTIONS.items():
                outcomes = prepared[column].to_numpy(dtype=float)[positions]
                judged = outcomes[~np.isnan(outcomes)]
                low, high = binomial_interval(int(judged.sum()), len(judged), confidence)
                row.update({f"n_{metric}": len(judged), metric: judged.mean() if len(judged) else np.nan,
                            f"{metric}_ci_low": low, f"{metric}_ci_high": high})
            rows.append(row)
    table = pd.DataFrame(rows)
    table["small"] = table["n"] < min_group_size
    return table[BAND_GROUP_COLUMNS]


def band_gaps(groups: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """Worst − best group per attribute and proportion, with Newcombe's interval of the difference;
    groups flagged small are left out unless fewer than two would remain (as `groups.gaps`)."""
    rows = []
    for attribute in [a for a in dict.fromkeys(groups["attribute"]) if a != "all"]:
        for metric in PROPORTIONS:
            candidates = groups[(groups["attribute"] == attribute) & groups[metric].notna()]
            judged = candidates[~candidates["small"]] if (~candidates["small"]).sum() >= 2 else candidates
            if len(judged) < 2:
                continue
            worst, best = judged.loc[judged[metric].idxmin()], judged.loc[judged[metric].idxmax()]
            gap = proportion_gap(round(worst[metric] * worst[f"n_{metric}"]), int(worst[f"n_{metric}"]),
                                 round(best[metric] * best[f"n_{metric}"]), int(best[f"n_{metric}"]), confidence=confidence)
            side = direction(gap.difference_ci_low, gap.difference_ci_high)
            rows.append({"attribute": attribute, "metric": metric, "worst_group": worst["group"], "worst": worst[metric],
                         "worst_n": int(worst["n"]), "best_group": best["group"], "best": best[metric],
                         "best_n": int(best["n"]), "difference": gap.difference,
                         "difference_ci_low": gap.difference_ci_low, "difference_ci_high": gap.difference_ci_high,
                         "groups_compared": len(judged),
                         "small_left_out": ", ".join(candidates.loc[~candidates.index.isin(judged.index), "group"]),
                         "verdict": {"below": "worse", "above": "better"}.get(side, side)})
    return pd.DataFrame(rows, columns=BAND_GAP_COLUMNS)


def evaluate_bands(frame: pd.DataFrame, bands: Bands, edges: Sequence[int], *, confidence: float,
                   min_group_size: int) -> BandEvaluation:
    """The evaluation of a band model's predictions: `frame` in the predictions contract plus
    `band_pred` (the predicted band's index into `bands`, -1 where the model gave none)."""
    prepared = prepare(frame, edges)
    exact, one_off = band_outcomes(true_band(prepared["age"], bands), prepared["band_pred"].to_numpy())
    prepared["band_correct"], prepared["band_one_off"] = exact, one_off
    groups = band_groups(prepared, confidence, min_group_size)
    gaps = band_gaps(groups, confidence)
    whole = groups.iloc[0]
    overall = {"n": int(whole["n"]), **{key: _plain(whole[key]) for key in BAND_GROUP_COLUMNS[3:-1]}}
    overall["gaps"] = {f"{row.attribute}.{row.metric}_difference": _plain(row.difference)
                       for row in gaps.itertuples() if row.attribute in ("race", "gender", "age_band")}
    return BandEvaluation(groups=groups, gaps=gaps, overall=overall)


def _plain(value):
    """A JSON-friendly scalar: counts as int, NaN as None."""
    if isinstance(value, (int, np.integer)):
        return int(value)
    value = float(value)
    return None if np.isnan(value) else round(value, 6)
