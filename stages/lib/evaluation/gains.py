"""What each training change buys (R14): two models compared on the same test faces.

The study credits its best model with a 24% cut in MAE over the published one. Two changes sit between
them: retraining the heads on the fine-tuning set, and rebalancing that set (oversampling old faces,
reweighting age bands). Each change is credited separately, published → retrained, then retrained →
each rebalanced variant, as the paired change in MAE on the faces both models predicted, with a paired
bootstrap interval of the change and of the ratio (`intervals.paired_mean_gap`): a rebalancing that
adds nothing to retraining is not handed retraining's gain.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from stages.lib.core.params import Experiment
from stages.lib.evaluation.intervals import Bootstrap, direction, paired_mean_gap, paired_p_value
from stages.lib.evaluation.multiplicity import holm
from stages.lib.evaluation.worst_groups import REFERENCE

GAIN_COLUMNS = ["step", "before", "after", "n", "mae_before", "mae_after", "change", "change_ci_low",
                "change_ci_high", "cut_share", "cut_share_ci_low", "cut_share_ci_high", "p_value", "p_adjusted",
                "verdict"]
VERDICTS = {"below": "better", "above": "worse", "n.s.": "no clear difference", "no interval": "no interval"}


def training_steps(experiments: Mapping[str, Experiment]) -> list[tuple[str, str, str]]:
    """(step, before, after) for R14: `retraining` from the published model to the plain retrained one
    (same split, no rebalancing, our protocol), then `rebalancing` from that to each oversampled or
    reweighted variant trained the same way. Steps whose ends are missing are left out."""
    published = next((name for name, e in experiments.items() if e.is_baseline), None)
    plains = [name for name, e in experiments.items()
              if e.method == "plain" and not _rebalanced(e) and e.split == "grouped"]
    if not plains:
        return []
    plain = REFERENCE if REFERENCE in plains else plains[0]   # the study's reference, where it is one
    steps = [("retraining", published, plain)] if published else []
    base = experiments[plain]
    steps += [("rebalancing", plain, name) for name, e in experiments.items()
              if _rebalanced(e) and e.init == base.init and e.split == base.split and e.method == base.method]
    return steps


def _rebalanced(experiment: Experiment) -> bool:
    return bool(experiment.oversample) or experiment.reweight != "none"


def paired_absolute_errors(before: pd.DataFrame, after: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """|predicted − true age| of each model on the faces both predicted, matched by `id`; ValueError when
    a matched face has two different true ages (then the tables are not of the same faces)."""
    merged = before[["id", "age", "age_pred"]].merge(after[["id", "age", "age_pred"]], on="id",
                                                     suffixes=("", "_after"))
    differing = int((merged["age"] != merged["age_after"]).sum())
    if differing:
        raise ValueError(f"{differing:,} of {len(merged):,} faces matched by id have different true ages in the "
                         "two predictions tables: they are not predictions on the same faces")
    truth = merged["age"].to_numpy(dtype=float)
    return (np.abs(merged["age_pred"].to_numpy(dtype=float) - truth),
            np.abs(merged["age_pred_after"].to_numpy(dtype=float) - truth))


def training_gains(predictions: Mapping[str, pd.DataFrame], steps: Sequence[tuple[str, str, str]],
                   bootstrap: Bootstrap = Bootstrap()) -> pd.DataFrame:
    """One row per step: MAE before and after on the shared faces, the change (after − before) and the
    share of MAE cut (1 − after / before), each with its paired interval, and the verdict on the change.

    `predictions` maps experiment names to their test predictions on one dataset (ids unique)."""
    rows = []
    for step, before, after in steps:
        if before not in predictions or after not in predictions:
            continue
        errors_before, errors_after = paired_absolute_errors(predictions[before], predictions[after])
        if len(errors_before) == 0:
            continue
        gap = paired_mean_gap(errors_after, errors_before, bootstrap, f"gain:{before}->{after}")
        rows.append({"step": step, "before": before, "after": after, "n": len(errors_before),
                     "mae_before": float(errors_before.mean()), "mae_after": float(errors_after.mean()),
                     "change": gap.difference, "change_ci_low": gap.difference_ci_low,
                     "change_ci_high": gap.difference_ci_high, "cut_share": 1 - gap.ratio,
                     "cut_share_ci_low": 1 - gap.ratio_ci_high, "cut_share_ci_high": 1 - gap.ratio_ci_low,
                     "p_value": paired_p_value(errors_after - errors_before),
                     "side": direction(gap.difference_ci_low, gap.difference_ci_high)})
    return adjusted_verdicts(pd.DataFrame(rows), 1 - bootstrap.confidence)


def adjusted_verdicts(rows: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """The steps' p-values adjusted together (Holm: the changes credited on one test set are one family)
    and each verdict: better or worse only where the interval lies on one side of 0 and the adjusted
    p-value is under `alpha`."""
    if rows.empty:
        return pd.DataFrame(columns=GAIN_COLUMNS)
    rows = rows.assign(p_adjusted=holm(rows["p_value"].to_numpy(dtype=float)))
    survives = rows["p_adjusted"] < alpha
    rows["verdict"] = [VERDICTS[side] if side in ("no interval", "n.s.") or kept else VERDICTS["n.s."]
                       for side, kept in zip(rows["side"], survives)]
    return rows[GAIN_COLUMNS]
