"""Experiments side by side on the same test faces: overall and worst-group error, the gap, and the
change of each against a reference experiment (`retrained`), all with paired bootstrap intervals.

The groups are race × gender (rows with both labels). Only groups with at least `min_group_size`
test faces can be named worst or best (all groups when fewer than two are that large, as
`groups.gaps` does), so that a group of five faces does not decide the verdict by chance. The gap is how far the worst group trails the best:
MAE worst − best, gender accuracy best − worst, so that a gap is positive and a negative change
narrows it. Each experiment's worst and best group are named from
its own point estimates and then held fixed in every resample: the gap is a difference between two
named groups, not max − min re-chosen per resample (which is ≥ 0 by construction and cannot say "no
gap").

Pairing: one set of resamples is drawn per test set and shared by every experiment, so the change
of a statistic against the reference is taken resample by resample, over the same faces (what the
faces share cancels out). The resampling is stratified by race × gender group: each resample draws
each group's faces from that group, so every group keeps its size (faces without a race or gender
label form one more stratum); where the faces carry a `cluster` (one person, or look-alikes), a
resample draws a cluster's faces of a stratum together. Experiments evaluated on other test faces
(the naive split's) cannot be paired with the reference and are left out, by name. A dataset whose
ages are bands (FairFace) has no MAE statistics at all, only the accuracies.

Intervals are percentile bootstrap intervals, also for the accuracies (a group that is all right in
the test set gets a zero-width interval; it would be the best group, never the worst).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from stages.lib.core.errors import UserError
from stages.lib.core.schema import BAND_COLUMN, CLUSTER_COLUMN
from stages.lib.evaluation.intervals import (Bootstrap, bootstrap_p_value, cluster_codes, group_rng,
                                             percentile_interval)
from stages.lib.evaluation.multiplicity import adjust_families

REFERENCE = "retrained"   # the experiment every other is measured against
# The same heads from a seeded random start (what the compare and probe stages train on the pipeline's
# own backbone): read from this experiment where it exists, not trained again.
RANDOM_START = "retrained_random"
# Statistic -> (metric, which), in the order the tables show them.
STATISTICS = {
    "mae": ("mae", "overall"), "worst_group_mae": ("mae", "worst"), "mae_gap": ("mae", "gap"),
    "gender_accuracy": ("gender_accuracy", "overall"), "worst_group_accuracy": ("gender_accuracy", "worst"),
    "accuracy_gap": ("gender_accuracy", "gap"),
}
SUMMARY_COLUMNS = ["dataset", "experiment", "statistic", "n", "value", "ci_low", "ci_high", "worst_group",
                   "best_group", "change", "change_ci_low", "change_ci_high", "change_p"]


class PairingError(UserError, ValueError):
    """The reference experiment is missing, so nothing can be paired with it."""


@dataclass(frozen=True)
class PairedFaces:
    """The test faces of one dataset, in one order, with each experiment's per-face outcomes."""

    strata: np.ndarray                 # stratum index per face (race x gender group, or unlabelled)
    groups: list[str]                  # names of the groups that can be named worst / best
    group_of: np.ndarray               # index into `groups` per face, -1 for faces in no eligible group
    errors: dict[str, np.ndarray]      # experiment -> |predicted - true age| (NaN where age is banded)
    correct: dict[str, np.ndarray]     # experiment -> 1.0 / 0.0 gender right (NaN where unknown)
    clusters: np.ndarray | None = None  # resampling cluster code per face (None: every face its own)


def paired_faces(predictions: Mapping[str, pd.DataFrame], dataset: str, reference: str,
               min_group_size: int) -> tuple[PairedFaces, list[str]]:
    """The test set of `dataset`, and the experiments left out because their test faces differ."""
    frames = {name: frame[(frame["split"] == "test") & (frame["dataset"] == dataset)].sort_values("id")
              for name, frame in predictions.items()}
    faces = frames[reference]
    paired = {name: f for name, f in frames.items() if f["id"].tolist() == faces["id"].tolist()}
    labelled = faces["race"].notna() & faces["gender"].notna()
    names = np.where(labelled, faces["race"].astype(str) + "*" + faces["gender"].astype(str), "")
    _, strata = np.unique(names, return_inverse=True)
    sizes = pd.Series(names[labelled.to_numpy()]).value_counts()
    eligible = sorted(sizes[sizes >= min_group_size].index)
    eligible = eligible if len(eligible) >= 2 else sorted(sizes.index)
    group_of = np.array([eligible.index(n) if n in eligible else -1 for n in names], dtype=np.int64)
    banded = BAND_COLUMN in faces.columns and faces[BAND_COLUMN].notna().any()
    errors = {name: (np.full(len(f), np.nan) if banded
                     else (f["age_pred"].astype(float) - f["age"].astype(float)).abs().to_numpy())
              for name, f in paired.items()}
    correct = {name: np.where(f["gender"].notna() & f["gender_pred"].notna(),
                              (f["gender_pred"].astype(object) == f["gender"].astype(object)).astype(float), np.nan)
               for name, f in paired.items()}
    clusters = cluster_codes(faces[CLUSTER_COLUMN], len(faces)) if CLUSTER_COLUMN in faces.columns else None
    return (PairedFaces(strata, eligible, group_of, errors, correct, clusters),
            sorted(set(frames) - set(paired)))


def stratified_counts(strata: np.ndarray, resamples: int, rng: np.random.Generator,
                      clusters: np.ndarray | None = None) -> np.ndarray:
    """(resamples × faces) counts: how often each face is drawn, each stratum resampled within itself,
    a cluster's faces within a stratum drawn together (`clusters`: a code per face; None: faces alone)."""
    strata = np.asarray(strata)
    clusters = np.arange(len(strata)) if clusters is None else np.asarray(clusters)
    counts = np.zeros((resamples, len(strata)), dtype=np.float64)
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        _, first, unit_of = np.unique(clusters[members], return_index=True, return_inverse=True)
        unit_of = np.argsort(np.argsort(first))[unit_of]     # units numbered by their first face
        size = len(first)
        draws = rng.integers(0, size, size=(resamples, size)) + (np.arange(resamples) * size)[:, None]
        drawn = np.bincount(draws.ravel(), minlength=resamples * size).reshape(resamples, size)
        counts[:, members] = drawn[:, unit_of]
    return counts


def _group_means(values: np.ndarray, group_of: np.ndarray, n_groups: int, weights: np.ndarray) -> np.ndarray:
    """Weighted means of `values` per group: (len(weights) × n_groups); NaN values left out."""
    known = ~np.isnan(values)
    onehot = (group_of[:, None] == np.arange(n_groups)[None, :]) & known[:, None]
    sums = weights @ (np.where(known, values, 0.0)[:, None] * onehot)
    totals = weights @ onehot
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / totals


def _overall(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    known = ~np.isnan(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ np.where(known, values, 0.0)) / (weights @ known)


def experiment_statistics(test: PairedFaces, experiment: str, weights: np.ndarray) -> tuple[dict, dict]:
    """({statistic: value per weights row}, {statistic: (worst group, best group)}) for one experiment.

    Row 0 of `weights` must be all ones (the test set itself): the worst and best groups are named
    from it and held fixed in the other rows."""
    values, named = {}, {}
    for metric, outcome, higher_is_worse in (("mae", test.errors[experiment], True),
                                             ("gender_accuracy", test.correct[experiment], False)):
        means = _group_means(outcome, test.group_of, len(test.groups), weights)
        observed = means[0]
        if np.isnan(observed).all():
            nan = np.full(len(weights), np.nan)
            values.update({s: nan for s, (m, _) in STATISTICS.items() if m == metric})
            continue
        worst = int(np.nanargmax(observed) if higher_is_worse else np.nanargmin(observed))
        best = int(np.nanargmin(observed) if higher_is_worse else np.nanargmax(observed))
        trail = means[:, worst] - means[:, best]
        series = {"overall": _overall(outcome, weights), "worst": means[:, worst],
                  "gap": trail if higher_is_worse else -trail}
        for statistic, (m, which) in STATISTICS.items():
            if m == metric:
                values[statistic] = series[which]
                if which != "overall":
                    named[statistic] = (test.groups[worst], test.groups[best] if which == "gap" else "")
    return values, named


def summarise_experiments(predictions: Mapping[str, pd.DataFrame], reference: str, bootstrap: Bootstrap,
                          min_group_size: int) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """One row per test set, experiment and statistic (SUMMARY_COLUMNS), and per test set the
    experiments left out (their test faces differ from the reference's)."""
    if reference not in predictions:
        raise PairingError(f"the reference experiment {reference!r} has no predictions: "
                           f"have {', '.join(sorted(predictions))}")
    rows, left_out = [], {}
    reference_test = predictions[reference][predictions[reference]["split"] == "test"]
    for dataset in dict.fromkeys(reference_test["dataset"]):
        test, left_out[dataset] = paired_faces(predictions, dataset, reference, min_group_size)
        draws = (stratified_counts(test.strata, bootstrap.resamples, group_rng(bootstrap, f"paired:{dataset}"),
                                   test.clusters)
                 if bootstrap.resamples else np.zeros((0, len(test.strata))))
        weights = np.vstack([np.ones(len(test.strata)), draws])
        computed = {name: experiment_statistics(test, name, weights) for name in test.errors}
        base = computed[reference][0]
        banded = np.isnan(test.errors[reference]).all()     # ages are bands: no MAE statistic at all
        for name, (values, named) in computed.items():
            for statistic, series in values.items():
                if banded and STATISTICS[statistic][0] == "mae":
                    continue
                change = series - base[statistic]
                worst, best = named.get(statistic, ("", ""))
                rows.append({"dataset": dataset, "experiment": name, "statistic": statistic, "n": len(test.strata),
                             "value": series[0], **_interval("ci", series[1:], bootstrap.confidence),
                             "worst_group": worst, "best_group": best, "change": change[0],
                             **_interval("change_ci", change[1:], bootstrap.confidence),
                             "change_p": bootstrap_p_value(change[0], change[1:]) if name != reference else np.nan})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS), left_out


def adjust_changes(summary: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """`summary` (rows of several experiments' worst_groups.csv) with each change's adjusted p-value
    (`change_p_adjusted`) and whether it survives (`change_significant`): one family per test set and
    statistic, the experiments compared with the reference in it (Holm, or Benjamini–Hochberg for a
    long list: multiplicity.adjust_families). The reference's own rows and rows without a p-value are
    in no family and never significant. A summary written before p-values were kept comes back as it is
    (its readers then word changes from the raw intervals alone)."""
    if "change_p" not in summary.columns:
        return summary
    out = summary.copy()
    family = out["dataset"].astype(str) + " × " + out["statistic"].astype(str)
    adjusted = adjust_families(out.assign(family=family), alpha, p_column="change_p",
                               adjusted_column="change_p_adjusted", eligible=out["change_p"].notna())
    out["change_p_adjusted"] = adjusted["change_p_adjusted"]
    out["change_significant"] = adjusted["significant"]
    out["change_adjustment"] = adjusted["adjustment"]
    out["change_tests"] = out.groupby([out["dataset"], out["statistic"]])["change_p"].transform("count")
    return out


def _interval(prefix: str, statistics: np.ndarray, confidence: float) -> dict:
    low, high = percentile_interval(statistics, confidence)
    return {f"{prefix}_low": low, f"{prefix}_high": high}


def against_reference(frame: pd.DataFrame, reference_frame: pd.DataFrame | None, experiment: str,
                      bootstrap: Bootstrap, *, min_group_size: int, reference: str = REFERENCE) -> pd.DataFrame:
    """`experiment`'s rows of `summarise_experiments` beside `reference`'s predictions; where the
    reference is absent or was tested on other faces, its own rows with the change columns empty."""
    paired = {experiment: frame} if experiment == reference or reference_frame is None else {
        experiment: frame, reference: reference_frame}
    rows, _ = summarise_experiments(paired, reference if reference in paired else experiment, bootstrap,
                                    min_group_size)
    rows = rows[rows["experiment"] == experiment]
    unpaired = set(frame.loc[frame["split"] == "test", "dataset"]) - set(rows["dataset"])
    if unpaired:
        alone, _ = summarise_experiments({experiment: frame}, experiment, bootstrap, min_group_size)
        alone = alone[alone["dataset"].isin(unpaired)].assign(change=np.nan, change_ci_low=np.nan, change_ci_high=np.nan,
                                                              change_p=np.nan)
        rows = pd.concat([rows, alone], ignore_index=True)
    if reference_frame is None and experiment != reference:
        rows = rows.assign(change=np.nan, change_ci_low=np.nan, change_ci_high=np.nan, change_p=np.nan)
    return rows.reset_index(drop=True)
