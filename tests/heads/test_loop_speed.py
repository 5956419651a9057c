"""What makes head training cheaper must not change what it learns: several steps per call into
TensorFlow (loop.STEPS_PER_EXECUTION) give the one-step-per-call weights, bit for bit."""

from __future__ import annotations

import numpy as np

from stages.lib.heads import loop
from stages.lib.heads.data import Budget, TaskRows
from stages.lib.heads.model import build_head
from stages.lib.heads.plain import fit_head


def fitted(monkeypatch, steps: int):
    monkeypatch.setattr(loop, "STEPS_PER_EXECUTION", steps)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, 12)).astype(np.float16)
    train_rows = np.concatenate([np.arange(200), np.arange(20)])  # repeated rows, as oversampling makes them
    val_rows = np.arange(200, 300)
    model = build_head(12, 8, 5, 0.5, name="age", seed=0)
    train = TaskRows(train_rows, rng.integers(0, 5, len(train_rows)))
    val = TaskRows(val_rows, rng.integers(0, 5, len(val_rows)))
    budget = Budget(epochs=6, patience=2, batch_size=32, learning_rate=0.01, seed=3)
    history = fit_head(model, features, train, val, budget=budget, sample_weight=rng.uniform(0.5, 2, len(train_rows)))
    return history, model.get_weights()


def test_steps_per_execution_changes_no_weight(monkeypatch):
    one_history, one_weights = fitted(monkeypatch, 1)
    many_history, many_weights = fitted(monkeypatch, 32)
    assert many_history == one_history
    assert all(np.array_equal(one, many) for one, many in zip(one_weights, many_weights))
