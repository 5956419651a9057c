"""The study's training protocol (heads/protocol.py): its loop, its checkpoint picked on the test split,
and the measure of how much that flatters, through the train stage."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from stages import pretrain, train
from stages.lib.core.params import ParamsError, validate
from stages.lib.heads.model import build_head
from stages.lib.heads.protocol import (STUDY_BATCH_SIZE, STUDY_EPOCHS, STUDY_LEARNING_RATE, fit_head_study,
                                       selection_summary, study_budget)
from stages.lib.heads.data import Budget, TaskRows
from stages.lib.heads.predicting import cross_entropy, predict_probs
from tests.heads.toys import PROBLEM_DIM as DIM, toy_problem
from tests.stages.test_train import determinism_requests, write_project  # noqa: F401 (a fixture)


def test_the_study_loop_trains_one_random_batch_per_epoch_and_keeps_the_best_test_loss():
    features, labels = toy_problem(300)
    model = build_head(DIM, 8, 3, dropout=0.2, name="toy", seed=0)
    splits = {"train": np.arange(0, 180), "val": np.arange(180, 210), "test": np.arange(210, 300)}
    history = fit_head_study(model, features, "gender", {name: TaskRows(rows, labels[rows]) for name, rows in splits.items()},
                             budget=Budget(epochs=12, patience=12, batch_size=16, learning_rate=STUDY_LEARNING_RATE, seed=1))
    assert float(model.optimizer.learning_rate) == pytest.approx(STUDY_LEARNING_RATE)
    assert int(model.optimizer.iterations) == 12  # an "epoch" is one batch
    assert all(len(values) == 12 for values in history.values())
    kept = predict_probs(model, features, splits["test"], 64)
    assert cross_entropy(kept, labels[splits["test"]]).mean() == pytest.approx(min(history["test_loss"]), rel=1e-4)
    assert min(history["test_loss"]) < history["test_loss"][0]


def test_the_studys_budget_is_250_one_batch_epochs_never_stopped_early():
    budget = study_budget(seed=5)
    assert (budget.epochs, budget.batch_size, budget.learning_rate, budget.seed) == (STUDY_EPOCHS, STUDY_BATCH_SIZE,
                                                                                     STUDY_LEARNING_RATE, 5)
    assert budget.patience >= budget.epochs


def test_selection_summary_compares_the_test_figure_at_both_checkpoints():
    history = {"test_loss": [3.0, 2.0, 2.5], "val_loss": [3.0, 2.6, 2.4], "test_metric": [9.0, 7.0, 7.8]}
    age = selection_summary("age", history)
    assert (age["epoch_picked_on_test"], age["epoch_picked_on_val"]) == (2, 3)
    assert age["test_mae_picked_on_test"] == 7.0 and age["test_mae_picked_on_val"] == 7.8
    assert age["flattery"] == pytest.approx(0.8)  # picking on test makes the MAE look 0.8 years better
    gender = selection_summary("gender", {**history, "test_metric": [0.7, 0.9, 0.85]})
    assert gender["metric"] == "accuracy" and gender["flattery"] == pytest.approx(0.05)


@pytest.mark.parametrize("experiment, message", [
    ({"init": "backbone", "protocol": "none"}, "experiments.x: protocol `none` trains nothing"),
    ({"init": "published"}, "experiments.x: init `published` needs a protocol: `none`"),
    ({"init": "vgg_face"}, "experiments.x.init: init 'vgg_face' is now called 'backbone'"),
])
def test_what_an_experiment_starts_from_and_how_it_trains_are_said_plainly(experiment, message):
    raw = {"roles": {"pretrain": "d", "finetune": "d", "evaluate": ["d"]}, "datasets": {"d": {"adapter": "utkface"}},
           "split": {"train": 0.6, "val": 0.1, "test": 0.3}, "experiments": {"x": experiment}}
    with pytest.raises(ParamsError, match=message):
        validate(raw)


def test_train_stage_runs_the_study_protocol_and_records_the_flattery(tmp_path, monkeypatch, determinism_requests):
    monkeypatch.chdir(tmp_path)
    manifest = write_project(tmp_path, {"weights": "random", "fc_width": 8})
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    raw["experiments"]["study_protocol"] = {"init": "backbone", "protocol": "study"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    pretrain.main()
    train.run("study_protocol")
    summary = json.loads((tmp_path / "models/study_protocol/live/metrics.json").read_text())
    assert summary["protocol"] == "study"
    for task, metric in (("age", "mae"), ("gender", "accuracy")):
        selection = summary["selection"][task]
        assert 1 <= selection["epoch_picked_on_test"] <= 250 and 1 <= selection["epoch_picked_on_val"] <= 250
        assert {f"test_{metric}_picked_on_test", f"test_{metric}_picked_on_val", "flattery"} <= set(selection)
    history = pd.read_csv(tmp_path / "models/study_protocol/history.csv")
    assert len(history) == 250  # the study's 250 one-batch epochs, no early stopping
    predictions = pd.read_parquet(tmp_path / "reports/experiments/study_protocol/predictions.parquet")
    assert len(predictions) == len(manifest)
