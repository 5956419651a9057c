"""Last-layer refit (deep feature re-weighting): fc7 read without dropout, only the output layer refitted,
the epoch kept by the worst group's validation loss, and the held-out set the first fit never sees."""

import keras
import numpy as np
import pytest

from stages.lib.heads import last_layer
from stages.lib.heads.last_layer import hidden_activations, retrain_last_layer
from stages.lib.heads.groups import worst_group_loss
from stages.lib.heads.model import build_head, layer_weights
from stages.lib.heads.sampling import group_codes
from stages.lib.heads.data import Budget, HeadData, TaskRows
from stages.lib.heads.plain import fit_head
from stages.lib.heads.predicting import cross_entropy, predict_probs
from tests.heads.toys import BUDGET, DIM, against_the_rule, group_losses, planted_imbalance, tiny_params, tiny_split


def test_last_layer_refit_changes_only_the_output_layer_and_helps_the_held_out_groups():
    features, data = planted_imbalance(seed=1)
    model = build_head(DIM, 16, 2, 0.0, name="toy", seed=3)
    major = np.flatnonzero(data.groups == 0)
    majority = TaskRows(major, data.labels[major])
    fit_head(model, features, majority, majority, budget=Budget(epochs=20, patience=20, batch_size=64, learning_rate=0.01, seed=0))
    before = layer_weights(model)
    holdout = data.take(np.concatenate([major[:40], np.flatnonzero(data.groups == 1)]))
    worst_before = max(group_losses(model, features, data))
    history = retrain_last_layer(model, features, holdout, holdout, budget=BUDGET)
    after = layer_weights(model)
    for layer in ("fc6", "fc7"):
        for old, new in zip(before[layer], after[layer]):
            np.testing.assert_array_equal(old, new)
    assert not np.allclose(before["predictions"][0], after["predictions"][0])
    assert max(group_losses(model, features, data)) < worst_before
    assert history["val_loss"]


def test_hidden_activations_are_fc7_in_inference_mode_in_the_order_of_the_rows():
    model = build_head(DIM, 8, 2, 0.5, name="toy", seed=0)
    features = np.random.default_rng(0).normal(size=(10, DIM)).astype(np.float16)
    rows = np.array([7, 2, 9, 2])
    fc7 = keras.Model(model.inputs, model.get_layer("fc7").output)
    expected = fc7.predict_on_batch(features[rows].astype(np.float32))
    np.testing.assert_allclose(hidden_activations(model, features, rows, batch_size=3), expected, rtol=1e-5)
    np.testing.assert_array_equal(hidden_activations(model, features, rows, 3), hidden_activations(model, features, rows, 3))


def test_the_refit_keeps_the_epoch_whose_worst_group_val_loss_is_lowest():
    features, data = planted_imbalance(n_major=200, n_minor=20, seed=4)
    val = against_the_rule(data)
    model = build_head(DIM, 8, 2, 0.0, name="toy", seed=1)
    budget = Budget(epochs=8, patience=8, batch_size=16, learning_rate=0.2, seed=0)
    history = retrain_last_layer(model, features, data, val, budget=budget)
    losses = cross_entropy(predict_probs(model, features, val.rows, 256), val.labels)
    kept = worst_group_loss(losses, val.groups)
    assert int(np.argmin(history["val_loss"])) < budget.epochs - 1   # the best epoch was not the last ...
    assert kept == pytest.approx(min(history["val_loss"]), rel=1e-4)   # ... and its output layer came back
    assert kept > losses.mean() + 0.1                                  # the worst group's loss, not the mean


def test_fit_refits_on_a_group_balanced_set_held_out_of_the_first_fit(raw, monkeypatch):
    params = tiny_params(raw, {"method": "last_layer", "holdout": 0.5})
    features, train, val = tiny_split()
    first_fit, refits = [], []
    real_train, real_retrain = last_layer.train_heads, last_layer.retrain_last_layer

    def train_heads(data, init, plan):
        first_fit.append(set(data.train["id"]))
        return real_train(data, init, plan)

    def retrain(model, features_, holdout, val_rows, *, budget):
        refits.append(holdout)
        return real_retrain(model, features_, holdout, val_rows, budget=budget)

    monkeypatch.setattr(last_layer, "train_heads", train_heads)
    monkeypatch.setattr(last_layer, "retrain_last_layer", retrain)
    fitted = last_layer.fit(HeadData(params, features, train, val), params.experiments["x"])
    held = set(train["id"]) - first_fit[0]
    assert len(refits) == 2 and held and len(first_fit[0]) + len(held) == len(train)
    held_rows = train[train["id"].isin(held)]
    assert sorted(refits[0].rows) == sorted(features.rows_for(held_rows["id"]))   # refitted on exactly those
    codes, _ = group_codes(held_rows, ["race", "gender"], params.age_bands)
    assert len(set(np.bincount(codes).tolist())) == 1                              # as many rows per group
    assert fitted.trained_on == {"train_rows": len(first_fit[0]), "holdout_rows": len(held)}
