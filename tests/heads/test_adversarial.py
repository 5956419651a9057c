"""Adversarial training (gradient reversal): the reversal's sign, the adversaries' masked loss, one training
step's gradients by hand, its effect on a race probe, and which heads get adversaries."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from stages.lib.heads import adversarial
from stages.lib.heads.adversarial import (Adversarial, build_adversary, fit_adversarial, gradient_reversal,
                                          hidden_model, masked_cross_entropy)
from stages.lib.heads.last_layer import hidden_activations
from stages.lib.heads.model import build_head
from stages.lib.heads.data import Budget, HeadData, TaskRows
from stages.lib.heads.plain import fit_head
from stages.lib.heads.predicting import predict_probs
from tests.heads.toys import DIM, tiny_params, tiny_split


def test_gradient_reversal_is_identity_forward_and_negates_the_gradient():
    x = tf.constant([1.0, -2.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = gradient_reversal(0.5)(x)
        total = tf.reduce_sum(3.0 * y)
    np.testing.assert_allclose(y.numpy(), [1.0, -2.0])
    np.testing.assert_allclose(tape.gradient(total, x).numpy(), [-1.5, -1.5])


def race_in_the_features(n=1600, seed=0):
    """Gender from x0; race (3 classes) written strongly into x1..x3, useless for the task."""
    rng = np.random.default_rng(seed)
    race = rng.integers(0, 3, n)
    features = rng.normal(size=(n, DIM)).astype(np.float16)
    gender = (features[:, 0] > 0).astype(np.int64)
    features[:, 1:4] += 3.0 * np.eye(3)[race]
    return features, gender, race


def race_probe_accuracy(model, features, rows, race):
    """Accuracy of a logistic-regression race probe on the head's fc7, fitted on the first half of `rows`."""
    from sklearn.linear_model import LogisticRegression
    hidden = hidden_activations(model, features, rows, 256)
    half = len(rows) // 2
    probe = LogisticRegression(max_iter=2000).fit(hidden[:half], race[rows[:half]])
    return probe.score(hidden[half:], race[rows[half:]])


def test_adversarial_training_lowers_a_race_probes_accuracy_on_the_hidden_layer():
    features, gender, race = race_in_the_features()
    train = TaskRows(np.arange(800), gender[:800], np.zeros(800, dtype=np.int64), {"race": race[:800]})
    val = TaskRows(np.arange(800, 1600), gender[800:], np.zeros(800, dtype=np.int64))
    budget = Budget(epochs=60, patience=60, batch_size=64, learning_rate=0.01, seed=0)
    plain = build_head(DIM, 16, 2, 0.0, name="plain", seed=2)
    fit_head(plain, features, train, val, budget=budget)
    fair = build_head(DIM, 16, 2, 0.0, name="fair", seed=2)
    history = fit_adversarial(fair, features, train, val, classes={"race": 3}, strength=1.0, adversary_width=64,
                              budget=budget)
    plain_probe = race_probe_accuracy(plain, features, val.rows, race)
    fair_probe = race_probe_accuracy(fair, features, val.rows, race)
    assert plain_probe > 0.75                                      # chance: about 1/3
    assert fair_probe < plain_probe - 0.2
    accuracy = (predict_probs(fair, features, val.rows, 256).argmax(1) == val.labels).mean()
    assert accuracy > 0.9                                          # the task is still learnt
    assert len(history["adversary_loss"]) == len(history["loss"])


def test_the_adversaries_loss_leaves_out_rows_of_unknown_class():
    logits = tf.constant([[2.0, 0.0], [0.0, 5.0], [1.0, 1.0]])
    by_hand = np.mean([np.log1p(np.exp(-2.0)), np.log(2.0)])          # rows 0 (class 0) and 2 (class 1)
    assert float(masked_cross_entropy(tf.constant([0, -1, 1]), logits)) == pytest.approx(by_hand, rel=1e-5)
    assert float(masked_cross_entropy(tf.constant([-1, -1, -1]), logits)) == 0.0


def test_one_step_moves_the_head_against_the_adversary_and_the_adversary_toward_its_target():
    head = build_head(3, 4, 2, 0.0, name="toy", seed=0)
    race = build_adversary(4, 5, 3, name="adversary_race", seed=1)
    trainer = Adversarial(head, {"race": race}, strength=2.0)
    trainer.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1))
    x = tf.constant(np.random.default_rng(0).normal(size=(6, 3)), tf.float32)
    y, targets = tf.constant([0, 1, 1, 0, 1, 0]), {"race": tf.constant([0, 2, -1, 1, 2, 0])}
    head_vars, race_vars = head.trainable_variables, race.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        probs, hidden = hidden_model(head)(x)
        task = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, probs))
        against = masked_cross_entropy(targets["race"], race(hidden))
    task_grads, adversary_grads = tape.gradient(task, head_vars), tape.gradient(against, head_vars)
    expected_head = [v.numpy() - 0.1 * (g_t.numpy() - 2.0 * (0 if g_a is None else g_a.numpy()))
                     for v, g_t, g_a in zip(head_vars, task_grads, adversary_grads)]
    expected_race = [v.numpy() - 0.1 * g.numpy() for v, g in zip(race_vars, tape.gradient(against, race_vars))]
    assert np.abs(adversary_grads[0].numpy()).max() > 1e-3           # the adversary does reach fc6
    logs = trainer.train_step((x, y, targets))
    for variable, expected in zip(head_vars + race_vars, expected_head + expected_race):
        np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-4, atol=1e-6)
    assert float(logs["adversary_loss"]) == pytest.approx(float(against), rel=1e-5)
    assert float(logs["loss"]) == pytest.approx(float(task), rel=1e-5)


def test_a_head_left_with_no_attribute_to_hide_is_trained_plainly(raw):
    params = tiny_params(raw, {"method": "adversarial", "attributes": ["gender"]})
    features, train, val = tiny_split()
    fitted = adversarial.fit(HeadData(params, features, train, val), params.experiments["x"])
    assert fitted.trained_on["against"] == {"age": ["gender"], "gender": []}
    assert "adversary_loss" in fitted.histories["age"]
    assert "adversary_loss" not in fitted.histories["gender"] and fitted.histories["gender"]["val_loss"]
