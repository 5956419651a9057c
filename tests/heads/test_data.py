"""What every way of fitting heads reads: the training plan, the rows of a task, the splits."""

import numpy as np
import pandas as pd
import pytest

from stages.lib.heads.data import NO_RESAMPLING, TaskRows, TrainingPlan, require_rows, role_splits, with_split


def test_no_resampling_trains_every_row_once_unweighted():
    assert NO_RESAMPLING.rows_of(4).tolist() == [0, 1, 2, 3] and NO_RESAMPLING.weights is None
    plan = TrainingPlan(np.array([0, 0, 2]), np.array([0.5, 0.5, 2.0]))
    assert plan.rows_of(4).tolist() == [0, 0, 2]


def test_task_rows_take_their_groups_and_attributes_along():
    rows = TaskRows(np.array([10, 11, 12]), np.array([0, 1, 0]), np.array([2, 1, 0]), {"race": np.array([1, -1, 0])})
    taken = rows.take(np.array([2, 0]))
    assert taken.rows.tolist() == [12, 10] and taken.labels.tolist() == [0, 0]
    assert taken.groups.tolist() == [0, 2] and taken.attributes["race"].tolist() == [0, 1]
    assert TaskRows(np.array([1]), np.array([0])).take(np.array([0])).groups is None


def test_splits_by_role_and_the_naive_split():
    manifest = pd.DataFrame({"dataset": ["a", "a", "a", "b"], "split": ["train", "val", "test", "train"],
                             "split_naive": ["val", "train", "train", "train"]})
    train, val = role_splits(manifest, "a", "finetune")
    assert (len(train), len(val)) == (1, 1)
    train, val = role_splits(with_split(manifest, "naive"), "a", "finetune")
    assert (len(train), len(val)) == (2, 1)
    with pytest.raises(ValueError, match=r"roles.finetune names dataset 'c'"):
        role_splits(manifest, "c", "finetune")
    with pytest.raises(ValueError, match="re-run `dvc repro split`"):
        with_split(manifest.drop(columns="split_naive"), "naive")


def test_training_needs_rows_in_both_splits():
    require_rows(3, 1)
    with pytest.raises(ValueError, match=r"val \(0\)"):
        require_rows(3, 0)
