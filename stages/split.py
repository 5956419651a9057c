"""DVC stage `split`: train/val/test for every cropped face, per dataset, identity-disjoint.

    python -m stages.split

Reads data/crops/manifest.parquet and writes data/processed/manifest.parquet with two split columns
(fractions from params split.*, seeded by params seed, stratified by params age_bands; see
stages/lib/splitting/split.py):
- `split`: grouped. Faces of one identity stay on one side; with `split.clusters` set, faces without
  an identity label (UTKFace, FairFace, folders) are grouped into look-alike clusters first (faces
  within `threshold` of each other, single linkage; a cluster over `max_size` faces is a crowded
  region, not a person, and is re-split tighter), so one person's photos cannot sit in train and test
  at once. `cluster` holds each row's cluster. The distances are measured in dlib's face descriptor
  (data/identity, the identity stage's cached pass) or, with `embedding: features`, in the heads'
  own cached features (data/features); nothing is computed here.
- `split_naive`: the study's split, every face on its own; experiments with `split: naive` use it.
In both, a dataset that no model trains on (in roles.evaluate, neither the finetune dataset nor a
pretrain dataset the pretrain stage trains on: splitting.split.evaluated_whole) is all `test`: an
external test set is evaluated on every row. And a photo found in two datasets (UTKFace aligned and in the wild) takes its split in the
first of them in params' order (pretrain, finetune, evaluate): heads trained on the in-the-wild photos
are never tested on the same photos' aligned chips.
And data/processed/split.json: rows per split x dataset x age band, identities per split, whether the
naive split came out identical to the grouped one (`naive_equals_grouped`), why asked-for clusters
were not used (`clusters_skipped`: the dlib extra is not installed), and with clusters on, the
leakage of each split: how many test faces have a training face within threshold.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from stages.lib.backbones.store import open_features
from stages.lib.splitting.identity import needs_identity_pass, read_status
from stages.lib.splitting.leakage import bounded_clusters, leakage_summary
from stages.lib.core.files import write_json
from stages.lib.core.params import Clusters, load_params
from stages.lib.core.cli import run_stage
from stages.lib.core.schema import read_manifest, write_manifest
from stages.lib.backbones.registry import pretrain_trains_heads
from stages.lib.splitting.split import (SplitPlan, all_to_test, evaluated_whole, follow_shared_photos, naive_split_manifest,
                                        split_manifest, split_summary, with_cluster_identities)


def dataset_features(manifest: pd.DataFrame, features_dir: Path) -> dict[str, np.ndarray]:
    """Each dataset's feature rows (float32, in manifest order), from the features stage's cache."""
    features = open_features(features_dir)
    return {str(dataset): np.asarray(features.array[features.rows_for(rows["id"])], dtype=np.float32)
            for dataset, rows in manifest.groupby("dataset", sort=True)}


def usable_clusters(clusters: Clusters | None, features_dir: Path, identity_dir: Path
                    ) -> tuple[Clusters | None, Path | None, str | None]:
    """The clusters to form, the folder of the embedding they are measured in, and why clusters that
    params ask for cannot be formed (the identity stage made no pass: the dlib extra is missing)."""
    if clusters is None:
        return None, None, None
    if not needs_identity_pass(clusters):
        return clusters, features_dir, None
    status = read_status(identity_dir)
    if not status["computed"]:
        return None, None, f"split.clusters asks for dlib_resnet, but the identity stage made no pass: {status['reason']}"
    return clusters, identity_dir, None


def cluster_labels(manifest: pd.DataFrame, embeddings: dict[str, np.ndarray], clusters) -> tuple[pd.Series, dict]:
    """Each row's look-alike cluster, `<dataset>:<n>`, clustered within its dataset, and per dataset
    how many over-large clusters were re-split at a tighter threshold."""
    parts, resplit = [], {}
    for dataset, rows in manifest.groupby("dataset", sort=True):
        labels, resplit[str(dataset)] = bounded_clusters(embeddings[str(dataset)], clusters.threshold,
                                                         clusters.max_size, clusters.metric)
        parts.append(pd.Series([f"{dataset}:{label}" for label in labels], index=rows.index, dtype=object))
    return pd.concat(parts).reindex(manifest.index).rename("cluster"), resplit


def leakage(manifest: pd.DataFrame, embeddings: dict[str, np.ndarray], clusters, resplit: dict) -> dict:
    """Per dataset and split column: test faces with a training face within the cluster threshold."""
    report = {}
    for dataset, rows in manifest.groupby("dataset", sort=True):
        report[str(dataset)] = {
            name: leakage_summary(embeddings[str(dataset)], rows[column].to_numpy(), rows["age"].to_numpy(),
                                  clusters.threshold, metric=clusters.metric)
            for name, column in (("naive", "split_naive"), ("grouped", "split"))
        }
        report[str(dataset)]["clusters"] = int(rows["cluster"].nunique())
        report[str(dataset)]["faces_in_shared_clusters"] = int(rows["cluster"].duplicated(keep=False).sum())
        report[str(dataset)]["largest_cluster"] = int(rows["cluster"].value_counts().max())
        report[str(dataset)]["crowded_clusters_resplit"] = resplit[str(dataset)]
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stages.split", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    return run_stage("split", _run)


def _run() -> int | None:
    """The stage itself: what it read and wrote, and how many faces it processed (None: none)."""
    params = load_params()
    manifest = read_manifest(params.paths.crops_manifest)
    clusters, embedding_dir, skipped = usable_clusters(params.split.clusters, params.paths.features,
                                                       params.paths.identity)
    embeddings = dataset_features(manifest, embedding_dir) if clusters else {}
    plan = SplitPlan(params.split.fractions(), params.age_bands, params.seed)
    grouped, resplit = manifest, {}
    if clusters:
        found, resplit = cluster_labels(manifest, embeddings, clusters)
        manifest = manifest.assign(cluster=found)
        grouped = manifest.assign(identity=with_cluster_identities(manifest, manifest["cluster"]))
    order = params.active_datasets  # a photo in two datasets takes its split in the first (the finetune set)
    whole = evaluated_whole(params.roles.pretrain, params.roles.finetune, params.roles.evaluate,
                            pretrain_trains=pretrain_trains_heads(params.backbone))
    manifest = manifest.assign(
        split=follow_shared_photos(
            manifest, all_to_test(manifest, split_manifest(grouped, plan), whole), order),
        split_naive=follow_shared_photos(
            manifest, all_to_test(manifest, naive_split_manifest(manifest, plan), whole), order),
    )
    write_manifest(manifest, params.paths.manifest)
    summary = {
        "seed": params.seed, "fractions": plan.fractions,
        "clusters": clusters.model_dump() if clusters else None,
        "clusters_skipped": skipped,
        "evaluated_whole": whole,   # no model trains on them: every row is a test face
        "datasets": split_summary(manifest, plan.edges),
        "leakage": leakage(manifest, embeddings, clusters, resplit) if clusters else {},
    }
    write_json(summary, params.paths.split_summary)
    if skipped:
        print(f"split: {skipped}; identities only", file=sys.stderr)
    for name, entry in summary["datasets"].items():
        rows = ", ".join(f"{split} {n}" for split, n in entry["rows"].items())
        leaks = summary["leakage"].get(name)
        shared = (f"; test faces with a look-alike in train: naive {leaks['naive']['test_faces_with_near_train']}, "
                  f"grouped {leaks['grouped']['test_faces_with_near_train']}") if leaks else ""
        same = "; the naive split is identical to the grouped one" if entry["naive_equals_grouped"] else ""
        print(f"split: {name}: {rows}{shared}{same}")
    return len(manifest)


if __name__ == "__main__":
    sys.exit(main())
