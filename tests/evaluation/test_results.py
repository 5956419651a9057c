"""results.py: an experiment's evaluation on disk, written and read back."""

import json

import numpy as np
import pandas as pd
import pytest

from stages.lib.evaluation import results
from stages.lib.evaluation.groups import evaluate
from stages.lib.evaluation.intervals import Bootstrap
from tests.reporting.test_report import write_predictions


def test_evaluation_round_trips_through_its_files(tmp_path):
    write_predictions(tmp_path, "e", noise=5, seed=3)
    frame = pd.read_parquet(tmp_path / "reports" / "experiments" / "e" / "predictions.parquet").query("dataset == 'utkface'")
    evaluation = evaluate(frame, [0, 16, 31, 46, 61], Bootstrap(30), 30)
    results.write_evaluation(evaluation, tmp_path / "out")
    loaded = results.load_evaluation(tmp_path / "out", [0, 16, 31, 46, 61])
    pd.testing.assert_frame_equal(loaded.groups, evaluation.groups, check_dtype=False)
    assert loaded.overall == json.loads(json.dumps(evaluation.overall))
    assert set(loaded.tables) == set(evaluation.tables)
