"""Balanced accuracy of a probe's predictions, with a bootstrap interval and the chance level."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stages.lib.evaluation.intervals import Bootstrap, group_rng, percentile_interval
from stages.lib.evaluation.worst_groups import stratified_counts

PROBES_FILE, BALANCED_FILE = "probes.csv", "balanced.csv"   # the probe stage's tables (params.paths.probe)
PROBE_COLUMNS = ["backbone", "attribute", "dataset", "n", "classes", "chance", "balanced_accuracy", "ci_low", "ci_high"]


def balanced_accuracy(labels, predicted, weights: np.ndarray | None = None) -> np.ndarray:
    """Mean over the true classes of the share predicted right (recall), per row of `weights`
    (resample counts; None: the rows as they are). The chance level is 1 / classes."""
    labels, predicted = np.asarray(labels, dtype=object), np.asarray(predicted, dtype=object)
    weights = np.ones((1, len(labels))) if weights is None else np.asarray(weights, dtype=float)
    hits = (labels == predicted).astype(float)
    recalls = [(weights[:, labels == c] @ hits[labels == c]) / weights[:, labels == c].sum(axis=1)
               for c in np.unique(labels)]
    return np.mean(recalls, axis=0)


def probe_summary(predictions: pd.DataFrame, backbone: str, attribute: str, bootstrap: Bootstrap) -> pd.DataFrame:
    """One row (PROBE_COLUMNS) per dataset of a probe's test predictions (`dataset`, `label`,
    `predicted`): balanced accuracy with a bootstrap interval, each class resampled within itself."""
    rows = []
    for dataset, frame in predictions.groupby("dataset", sort=False):
        labels = frame["label"].to_numpy(dtype=object)
        strata = pd.Categorical(labels).codes
        key = f"probe:{backbone}:{attribute}:{dataset}"
        draws = stratified_counts(strata, bootstrap.resamples, group_rng(bootstrap, key))
        classes = len(np.unique(labels))
        low, high = percentile_interval(balanced_accuracy(labels, frame["predicted"], draws), bootstrap.confidence)
        rows.append({"backbone": backbone, "attribute": attribute, "dataset": dataset, "n": len(frame),
                     "classes": classes, "chance": 1.0 / classes,
                     "balanced_accuracy": float(balanced_accuracy(labels, frame["predicted"])[0]),
                     "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=PROBE_COLUMNS)
