"""probes.py: a probe's balanced accuracy, its bootstrap interval and the chance level."""

import numpy as np
import pandas as pd
import pytest

from stages.lib.evaluation.intervals import Bootstrap
from stages.lib.evaluation.probes import balanced_accuracy, probe_summary

BOOT = Bootstrap(resamples=400, confidence=0.95, seed=1)


def test_balanced_accuracy_by_hand_and_probe_interval():
    labels = ["a"] * 8 + ["b"] * 2
    predicted = ["a"] * 8 + ["a", "b"]
    assert balanced_accuracy(labels, predicted)[0] == pytest.approx((1.0 + 0.5) / 2)
    frame = pd.DataFrame({"dataset": "d", "label": labels * 5, "predicted": predicted * 5})
    row = probe_summary(frame, "vgg", "race", BOOT).iloc[0]
    assert row["chance"] == 0.5 and row["balanced_accuracy"] == pytest.approx(0.75)
    assert row["ci_low"] < 0.75 < row["ci_high"]
