"""The groups the mitigations train over: group and attribute codes per row, a batch's per-group
means and the worst group's loss (the criterion group DRO and the last-layer refit keep an epoch by)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import tensorflow as tf

from stages.lib.core.errors import UserError
from stages.lib.heads.sampling import group_codes


class MitigationError(UserError, ValueError):
    """A mitigation the finetune data cannot support (e.g. an adversary for a label no row has)."""


def worst_group_loss(losses: np.ndarray, groups: np.ndarray) -> float:
    """The highest mean of `losses` over the groups present."""
    return float(max(losses[groups == g].mean() for g in np.unique(groups)))


def group_means(values: tf.Tensor, groups: tf.Tensor, n_groups: int) -> tf.Tensor:
    """Mean of `values` per group index 0..n_groups-1 (0 for a group absent from the batch)."""
    sums = tf.math.unsorted_segment_sum(values, groups, n_groups)
    counts = tf.math.unsorted_segment_sum(tf.ones_like(values), groups, n_groups)
    return sums / tf.maximum(counts, 1.0)


def attribute_codes(frame: pd.DataFrame, attribute: str) -> tuple[np.ndarray, int]:
    """(class index per row, -1 where unknown; number of classes) of `race` or `gender`."""
    values = frame[attribute]
    classes = sorted(values.dropna().unique())
    codes = pd.Categorical(values, categories=classes).codes.astype(np.int64)
    return codes, len(classes)


def joint_group_codes(train: pd.DataFrame, val: pd.DataFrame, columns, edges) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Group index of each train and each val row, on one list of group names (`sampling.group_codes`)."""
    codes, names = group_codes(pd.concat([train, val]), columns, edges)
    return codes[:len(train)], codes[len(train):], names
