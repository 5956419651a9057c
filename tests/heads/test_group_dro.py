"""Group DRO: the weights' exponentiated-gradient update, its pull toward the worst group, and the epoch
kept by the worst group's validation loss."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from stages.lib.heads.group_dro import GroupDRO, exponentiated_update, fit_group_dro
from stages.lib.heads.groups import worst_group_loss
from stages.lib.heads.model import build_head
from stages.lib.heads.data import Budget
from stages.lib.heads.plain import fit_head
from stages.lib.heads.predicting import cross_entropy, predict_probs
from tests.heads.toys import BUDGET, DIM, against_the_rule, group_losses, planted_imbalance


def test_group_dro_weights_follow_the_exponentiated_gradient_by_hand():
    q = exponentiated_update(tf.constant([0.5, 0.25, 0.25]), tf.constant([0.0, 1.0, 2.0]), 0.5).numpy()
    raw = np.array([0.5, 0.25 * np.exp(0.5), 0.25 * np.exp(1.0)])
    np.testing.assert_allclose(q, raw / raw.sum(), rtol=1e-6)


def test_group_dro_lowers_the_worst_groups_training_loss_against_plain_training():
    features, data = planted_imbalance()
    plain = build_head(DIM, 8, 2, 0.0, name="plain", seed=1)
    fit_head(plain, features, data, data, budget=BUDGET)
    robust = build_head(DIM, 8, 2, 0.0, name="dro", seed=1)
    history, weights = fit_group_dro(robust, features, data, data, n_groups=2, step_size=0.05, budget=BUDGET)
    plain_losses, robust_losses = group_losses(plain, features, data), group_losses(robust, features, data)
    assert max(plain_losses) == plain_losses[1]                    # the small group is the worst off
    assert max(robust_losses) < 0.7 * max(plain_losses)
    assert weights[1] > 0.6 and weights.sum() == pytest.approx(1.0)  # the small group weighs most
    assert len(history["loss"]) == len(history["val_loss"]) == BUDGET.epochs


def test_one_step_moves_the_weights_toward_the_group_with_the_higher_loss():
    model = build_head(2, 3, 2, 0.0, name="toy", seed=0)
    trainer = GroupDRO(model, n_groups=3, step_size=0.5)
    trainer.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0))   # weights stay: only q moves
    x = np.array([[1.0, 0.0], [0.5, 0.2], [0.0, 1.0], [0.3, 0.3]], dtype=np.float32)
    probs = model.predict_on_batch(x)
    worse = 1 - probs.argmax(axis=1)                                # group 1's labels: the less likely class
    y = np.array([probs[0].argmax(), probs[1].argmax(), worse[2], worse[3]], dtype=np.int64)
    groups = np.array([0, 0, 1, 1], dtype=np.int64)                  # group 2 is absent from the batch
    trainer.train_step((tf.constant(x), tf.constant(y), tf.constant(groups)))
    losses = cross_entropy(probs, y)
    expected = np.array([1 / 3 * np.exp(0.5 * losses[:2].mean()), 1 / 3 * np.exp(0.5 * losses[2:].mean()), 1 / 3])
    q = trainer.q.numpy()
    np.testing.assert_allclose(q, expected / expected.sum(), rtol=1e-4)
    assert q[1] > 1 / 3 > q[2] and q[1] > q[0] and q.sum() == pytest.approx(1.0)


def test_a_step_size_of_zero_leaves_the_weights_where_they_are():
    q = exponentiated_update(tf.constant([0.2, 0.3, 0.5]), tf.constant([4.0, 0.0, 1.0]), 0.0).numpy()
    np.testing.assert_allclose(q, [0.2, 0.3, 0.5], rtol=1e-6)


def test_the_epoch_kept_is_the_one_whose_worst_group_val_loss_is_lowest():
    features, data = planted_imbalance(n_major=200, n_minor=20, seed=2)
    val = against_the_rule(data)
    model = build_head(DIM, 4, 2, 0.0, name="dro", seed=0)
    budget = Budget(epochs=8, patience=8, batch_size=32, learning_rate=0.05, seed=0)
    history, _ = fit_group_dro(model, features, data, val, n_groups=2, step_size=0.05, budget=budget)
    losses = cross_entropy(predict_probs(model, features, val.rows, 256), val.labels)
    kept = worst_group_loss(losses, val.groups)
    assert int(np.argmin(history["val_loss"])) < budget.epochs - 1   # the best epoch was not the last ...
    assert kept == pytest.approx(min(history["val_loss"]), rel=1e-5)   # ... and its weights came back
    assert kept == pytest.approx(losses[val.groups == 1].mean())     # the worst group's loss, not the mean
    assert kept > losses.mean() + 0.1
