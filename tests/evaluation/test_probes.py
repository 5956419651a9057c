"""probes.py: a probe's balanced accuracy, its bootstrap interval and the chance level."""

import numpy as np
import pandas as pd
import pytest

from stages.lib.evaluation.intervals import Bootstrap
from stages.lib.evaluation.probes import PROBE_COLUMNS, balanced_accuracy, probe_summary

BOOT = Bootstrap(resamples=400, confidence=0.95, seed=1)


def test_balanced_accuracy_by_hand_and_probe_interval():
    labels = ["a"] * 8 + ["b"] * 2
    predicted = ["a"] * 8 + ["a", "b"]
    assert balanced_accuracy(labels, predicted)[0] == pytest.approx((1.0 + 0.5) / 2)
    frame = pd.DataFrame({"dataset": "d", "label": labels * 5, "predicted": predicted * 5})
    row = probe_summary(frame, "vgg", "race", BOOT).iloc[0]
    assert row["chance"] == 0.5 and row["balanced_accuracy"] == pytest.approx(0.75)
    assert row["ci_low"] < 0.75 < row["ci_high"]


def test_always_guessing_the_majority_scores_chance_not_its_plain_accuracy():
    labels = ["a"] * 8 + ["b"] * 2
    assert balanced_accuracy(labels, ["a"] * 10)[0] == pytest.approx(0.5)      # plain accuracy would say 80%
    frame = pd.DataFrame({"dataset": "d", "label": labels * 3, "predicted": "a"})
    row = probe_summary(frame, "vgg", "race", BOOT).iloc[0]
    assert row["balanced_accuracy"] == pytest.approx(row["chance"]) == pytest.approx(0.5)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((0.5, 0.5))        # each class keeps its size


def test_balanced_accuracy_per_row_of_resample_counts():
    labels, predicted = ["a", "a", "b", "b"], ["a", "b", "b", "b"]
    weights = np.array([[1, 0, 1, 1], [0, 1, 1, 0], [2, 1, 0, 1]])
    np.testing.assert_allclose(balanced_accuracy(labels, predicted, weights), [1.0, 0.5, (2 / 3 + 1) / 2])


def test_probe_summary_has_one_row_per_dataset_in_order():
    frame = pd.DataFrame({"dataset": ["utk"] * 6 + ["fair"] * 3,
                          "label": ["x", "y", "z"] * 3,
                          "predicted": ["x", "y", "z", "x", "y", "z", "y", "y", "y"]})
    table = probe_summary(frame, "dlib", "race", Bootstrap(resamples=50))
    assert list(table.columns) == PROBE_COLUMNS and list(table["dataset"]) == ["utk", "fair"]
    utk, fair = table.iloc[0], table.iloc[1]
    assert (utk["n"], utk["classes"], utk["chance"], utk["balanced_accuracy"]) == (6, 3, pytest.approx(1 / 3), 1.0)
    assert (utk["ci_low"], utk["ci_high"]) == (1.0, 1.0)
    assert fair["balanced_accuracy"] == pytest.approx(1 / 3) and set(table["backbone"]) == {"dlib"}
