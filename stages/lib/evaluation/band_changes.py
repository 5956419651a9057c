"""Per-age-band paired changes of a rebalancing experiment against the reference (`retrained`): does
oversampling the old help the old, and at whose cost?

For each test set and age band: the faces both experiments were tested on (shared ids), the reference's
and the experiment's MAE on them, the change (experiment − reference), a paired bootstrap interval
of the change (each resample draws faces, or whole look-alike clusters where the table has them, and
takes both models' errors on that one draw, so what the faces share cancels out), its p-value
(intervals.bootstrap_p_value), and the p-value Holm-adjusted across the bands of the test set
(multiplicity.py). `verdict`: `improves` / `worsens` only where the adjusted p-value is significant
and the raw interval lies on that side of zero, else `n.s.`.

Where the test set's ages are bands (FairFace) there is no MAE: the same is done on age-band accuracy
(whether the predicted age lies in the labelled band), in columns named for it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stages.lib.core.labels import age_band
from stages.lib.core.params import Experiment
from stages.lib.core.schema import BAND_COLUMN, CLUSTER_COLUMN
from stages.lib.evaluation.source_bands import in_source_band
from stages.lib.evaluation.intervals import (Bootstrap, bootstrap_p_value, cluster_codes, direction, group_rng,
                                             percentile_interval, resample_cluster_sums)
from stages.lib.evaluation.multiplicity import adjust_families

MAE, BAND_ACCURACY = "mae", "age_band_accuracy"
# Columns of band_changes.csv; `mae_reference`/`mae` read `age_band_accuracy_reference`/
# `age_band_accuracy` where ages are bands (`metric` says which).
def columns(metric: str) -> list[str]:
    return ["dataset", "band", "metric", "n", f"{metric}_reference", metric, "delta", "ci_low", "ci_high",
            "p_value", "adjustment", "p_adjusted", "significant", "verdict"]


def is_rebalancing(experiment: Experiment) -> bool:
    """Does the experiment change what the heads train on or how they weigh it (oversampling, reweighting,
    a mitigation)? Those get per-band changes against the reference."""
    return bool(experiment.oversample) or experiment.reweight != "none" or experiment.mitigation is not None


def _outcomes(frame: pd.DataFrame, banded: bool) -> np.ndarray:
    """Per face: |predicted − true age|, or 1.0 / 0.0 predicted age in the labelled band where ages are bands."""
    if banded:
        return in_source_band(frame["age_pred"], frame[BAND_COLUMN].to_numpy())
    return (frame["age_pred"].astype(float) - frame["age"].astype(float)).abs().to_numpy()


def band_changes(frame: pd.DataFrame, reference: pd.DataFrame, edges, bootstrap: Bootstrap, *,
                 dataset: str) -> pd.DataFrame:
    """One row per age band of the faces (by `id`) in both `frame` and `reference`, the test faces of
    one test set, `dataset` (see module doc)."""
    mine, theirs = frame.drop_duplicates("id").set_index("id"), reference.drop_duplicates("id").set_index("id")
    shared = mine.index.intersection(theirs.index, sort=False)
    mine, theirs = mine.loc[shared], theirs.loc[shared]
    banded = BAND_COLUMN in mine.columns and len(mine) > 0 and mine[BAND_COLUMN].notna().all()
    metric = BAND_ACCURACY if banded else MAE
    ours, base = _outcomes(mine, banded), _outcomes(theirs, banded)
    clusters = cluster_codes(theirs[CLUSTER_COLUMN] if CLUSTER_COLUMN in theirs.columns else None, len(theirs))
    bands = pd.Series(age_band(theirs["age"], edges), index=theirs.index)
    rows = []
    for band in bands.cat.categories:
        positions = np.flatnonzero((bands == band).to_numpy() & ~np.isnan(ours) & ~np.isnan(base))
        if len(positions) == 0:
            continue
        rows.append(_band_row(ours[positions], base[positions], clusters[positions], bootstrap,
                              key=f"band_changes:{dataset}:{band}") | {"band": str(band), "metric": metric})
    table = pd.DataFrame(rows, columns=["band", "metric", "n", "reference", "value", "delta", "ci_low", "ci_high",
                                        "p_value"]).assign(dataset=dataset, family=f"{dataset} band changes × {metric}")
    table = adjust_families(table, 1 - bootstrap.confidence)
    better = "below" if metric == MAE else "above"
    sides = [direction(low, high) for low, high in zip(table["ci_low"], table["ci_high"])]
    table["verdict"] = [("improves" if side == better else "worsens") if significant and side in ("above", "below")
                        else "n.s." for side, significant in zip(sides, table["significant"])]
    table = table.rename(columns={"reference": f"{metric}_reference", "value": metric})
    return table[columns(metric)]


def _band_row(ours: np.ndarray, base: np.ndarray, clusters: np.ndarray, bootstrap: Bootstrap, *, key: str) -> dict:
    """n, both means, the paired change with its bootstrap interval and p-value, over one band's faces."""
    change = ours - base
    row = {"n": len(change), "reference": float(base.mean()), "value": float(ours.mean()),
           "delta": float(change.mean()), "ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan}
    if bootstrap.resamples:
        sums = resample_cluster_sums(np.column_stack([change, np.ones(len(change))]), clusters,
                                     bootstrap.resamples, group_rng(bootstrap, key))
        resampled = sums[:, 0] / sums[:, 1]
        row["ci_low"], row["ci_high"] = percentile_interval(resampled, bootstrap.confidence)
        row["p_value"] = bootstrap_p_value(row["delta"], resampled)
    return row
