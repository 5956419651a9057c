"""Train/val/test splits: seeded, stratified by age band, identity-disjoint where identity is known.

Each dataset is split on its own (`split_manifest`), with a seed derived from params' seed and the
dataset's name, so adding or changing one dataset leaves the others' splits as they were.

`assign_splits` works on groups: the rows of one identity form a group (IMDB-Wiki's celebrities),
a row without identity is a group of one. A group's stratum is its most common age band. In each
stratum the groups are shuffled and laid end to end on a circle of circumference 1 (each group's arc
proportional to its rows), the circle is turned by a random offset, and a group goes to the split
whose share of the circle ([0, train), [train, train + val), [train + val, 1)) holds its arc's
midpoint. Large strata thus get the target fractions to within a group's size, and a stratum of a
single group lands in train, val or test with probabilities equal to the fractions (no bias
towards train from rounding).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from stages.lib.core.labels import age_band, band_labels

SPLITS = ("train", "val", "test")
NO_BAND = "below bands"


@dataclass(frozen=True)
class SplitPlan:
    """How to split: the share of each split ({train, val, test} summing to 1; val may be 0), the
    age-band edges each split is stratified by, and the seed (an int, or a seed sequence)."""

    fractions: Mapping[str, float]
    edges: Sequence[int]
    seed: int | Sequence[int]


def dataset_seed(seed: int, dataset: str) -> list[int]:
    """A seed sequence for one dataset: params' seed and a stable hash of the dataset's name."""
    return [int(seed), zlib.crc32(dataset.encode("utf-8"))]


def group_keys(frame: pd.DataFrame) -> np.ndarray:
    """An integer group per row: rows sharing an identity share a group; a row without one is alone."""
    if "identity" not in frame.columns:
        return np.arange(len(frame))
    identity = frame["identity"].astype(object)
    known = identity.notna().to_numpy()
    keys = np.empty(len(frame), dtype=np.int64)
    codes, _ = pd.factorize(identity[known].astype(str))
    keys[known] = codes
    keys[~known] = codes.max(initial=-1) + 1 + np.arange(int((~known).sum()))
    return keys


def group_strata(bands: np.ndarray, groups: np.ndarray) -> pd.Series:
    """Each group's stratum: its most common band code (the lowest band wins a tie)."""
    table = pd.DataFrame({"group": groups, "band": bands})
    counts = table.groupby(["group", "band"], sort=True).size().reset_index(name="n")
    counts = counts.sort_values(["group", "n", "band"], ascending=[True, False, True], kind="stable")
    return counts.drop_duplicates("group").set_index("group")["band"]


def assign_splits(frame: pd.DataFrame, plan: SplitPlan) -> pd.Series:
    """`train`/`val`/`test` for every row of `frame` (index kept), stratified by the age band of
    `frame['age']` (bands from the plan's edges) and never splitting an `identity` (when the column exists).
    """
    shares = np.array([float(plan.fractions[name]) for name in SPLITS])
    if (shares < 0).any() or abs(shares.sum() - 1) > 1e-6:
        raise ValueError(f"split fractions must be non-negative and sum to 1, got {dict(plan.fractions)}")
    if frame.empty:
        return pd.Series([], index=frame.index, dtype=object, name="split")
    bands = np.asarray(age_band(frame["age"], plan.edges).codes)  # -1: below the first edge
    groups = group_keys(frame)
    sizes = np.bincount(groups)
    strata = group_strata(bands, groups)
    rng = np.random.default_rng(plan.seed)
    bounds = np.cumsum(shares)[:-1]
    group_split = np.empty(len(sizes), dtype=np.int64)
    for stratum in np.sort(strata.unique()):
        members = rng.permutation(strata.index[strata == stratum].to_numpy())
        arcs = sizes[members] / sizes[members].sum()
        midpoints = (np.cumsum(arcs) - arcs / 2 + rng.random()) % 1.0
        group_split[members] = np.searchsorted(bounds, midpoints, side="right")
    return pd.Series(np.asarray(SPLITS, dtype=object)[group_split[groups]], index=frame.index, name="split")


def split_manifest(manifest: pd.DataFrame, plan: SplitPlan) -> pd.Series:
    """The split of every row, each dataset split independently (see `dataset_seed`; the plan's seed
    is params' int)."""
    parts = [
        assign_splits(rows, replace(plan, seed=dataset_seed(plan.seed, str(dataset))))
        for dataset, rows in manifest.groupby("dataset", sort=True)
    ]
    if not parts:
        return pd.Series([], index=manifest.index, dtype=object, name="split")
    return pd.concat(parts).reindex(manifest.index)


def evaluated_whole(pretrain: str, finetune: str, evaluate: Sequence[str], *, pretrain_trains: bool) -> list[str]:
    """The datasets of roles.evaluate that no model trains on: neither the finetune dataset nor the
    pretrain one where the pretrain stage trains heads on it (`pretrain_trains`). Such a dataset is an
    external test set, so every row of it is tested (`all_to_test`), not a 30% test split."""
    trained = {finetune} | ({pretrain} if pretrain_trains else set())
    return [name for name in dict.fromkeys(evaluate) if name not in trained]


def all_to_test(manifest: pd.DataFrame, split: pd.Series, datasets: Sequence[str]) -> pd.Series:
    """`split` with every row of `datasets` in `test` (see `evaluated_whole`)."""
    return split.where(~manifest["dataset"].isin(list(datasets)), "test").rename(split.name)


def split_summary(manifest: pd.DataFrame, edges: Sequence[int]) -> dict:
    """Per dataset: rows per split and per split x age band, distinct identities per split, the
    identities found in more than one split (always 0 unless the split was edited by hand), and, with
    a `split_naive` column, whether the naive split came out identical to the grouped one (a dataset
    without identities or look-alike clusters: then an experiment on the naive split repeats one on
    the grouped split, and there is no leakage to compare)."""
    summary = {}
    for dataset, rows in manifest.groupby("dataset", sort=True):
        bands = pd.Series(age_band(rows["age"], edges), index=rows.index).astype(object).fillna(NO_BAND)
        order = [band for band in [NO_BAND, *band_labels(edges)] if (bands == band).any()]
        identity = rows["identity"].astype(object) if "identity" in rows.columns else pd.Series(None, index=rows.index)
        known = identity.notna()
        splits_per_identity = rows.loc[known].groupby(identity[known].astype(str))["split"].nunique()
        summary[str(dataset)] = {
            "rows": {s: int((rows["split"] == s).sum()) for s in SPLITS},
            "fractions": {s: round(float((rows["split"] == s).mean()), 4) for s in SPLITS},
            "by_age_band": {s: {band: int(((rows["split"] == s) & (bands == band)).sum()) for band in order} for s in SPLITS},
            "identities": {s: int(identity[known & (rows["split"] == s)].nunique()) for s in SPLITS},
            "rows_without_identity": int((~known).sum()),
            "identities_in_several_splits": int((splits_per_identity > 1).sum()),
        }
        if "split_naive" in rows.columns:
            summary[str(dataset)]["naive_equals_grouped"] = bool((rows["split"] == rows["split_naive"]).all())
    return summary


def with_cluster_identities(frame: pd.DataFrame, clusters: np.ndarray) -> pd.Series:
    """`identity`, where a row has none, replaced by its look-alike cluster (`cluster:<label>`).

    `clusters` holds one cluster label per row of `frame` (from `leakage.identity_clusters` on its
    faces' features). Known identities are kept as they are: a label beats a distance.
    """
    clusters = np.asarray(clusters)
    if len(clusters) != len(frame):
        raise ValueError(f"{len(clusters)} cluster labels for {len(frame)} rows")
    identity = frame["identity"].astype(object) if "identity" in frame.columns else pd.Series(None, index=frame.index)
    fill = pd.Series([f"cluster:{c}" for c in clusters], index=frame.index, dtype=object)
    return identity.where(identity.notna(), fill).rename("identity")


def follow_shared_photos(manifest: pd.DataFrame, split: pd.Series, order: Sequence[str]) -> pd.Series:
    """`split` with every photo found in several datasets (same `photo` key: UTKFace's aligned and
    in-the-wild releases are the same photos, framed two ways) given its split in the first of those
    datasets in `order` (the finetune set comes before the evaluate-only ones), so that heads trained
    on one dataset are never tested on one of its photos in another. Rows without a `photo`, or whose
    photo is in one dataset only, keep their split."""
    if "photo" not in manifest.columns:
        return split
    rank = {name: position for position, name in enumerate(order)}
    keyed = pd.DataFrame({"photo": manifest["photo"], "split": split,
                          "rank": manifest["dataset"].map(rank).fillna(len(rank))}).dropna(subset=["photo"])
    first = keyed.sort_values("rank", kind="stable").drop_duplicates("photo").set_index("photo")["split"]
    return keyed["photo"].map(first).reindex(split.index).fillna(split).rename(split.name)


def naive_split_manifest(manifest: pd.DataFrame, plan: SplitPlan) -> pd.Series:
    """The study's split: every face on its own (identities ignored), otherwise as `split_manifest`.

    Kept beside the grouped split so that an experiment can train on it (`split: naive`) and the
    report can show how much a split that lets a person into both train and test flatters the metrics.
    """
    return split_manifest(manifest.drop(columns=["identity"], errors="ignore"), plan)
