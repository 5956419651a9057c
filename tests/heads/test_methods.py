"""Mitigations downstream of the embedding, each checked on small synthetic data where its effect is known."""

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import yaml

from stages.lib.core.params import ParamsError, validate
from stages.lib.heads.adversarial import fit_adversarial, gradient_reversal
from stages.lib.heads.group_dro import exponentiated_update, fit_group_dro
from stages.lib.heads.last_layer import hidden_activations, retrain_last_layer
from stages.lib.heads.loops import MitigationError, Trainer, fit_trainer, group_means, row_batches, worst_group_loss
from stages.lib.heads.methods import fit_experiment
from stages.lib.heads.model import build_head, layer_weights
from stages.lib.heads.sampling import SamplingError, balanced_holdout, balanced_indices, group_codes
from stages.lib.heads.training import (Budget, Features, HeadData, TaskRows, cross_entropy, fit_head,
                                       predict_probs)

ROOT = Path(__file__).resolve().parents[2]


# ----- params ----------------------------------------------------------------------------------------

@pytest.fixture()
def raw():
    with (ROOT / "params.yaml").open() as handle:
        return yaml.safe_load(handle)


def with_experiment(raw, entry):
    changed = copy.deepcopy(raw)
    changed["experiments"]["x"] = entry
    return changed


def test_the_project_runs_every_mitigation_with_its_defaults(raw):
    params = validate({**raw, "profile": "demo"})
    methods = {e.mitigation.method for e in params.experiments.values() if e.mitigation is not None}
    assert methods == {"balanced", "group_dro", "adversarial", "last_layer"}
    assert params.experiments["group_dro"].mitigation.groups == ["race", "gender"]


@pytest.mark.parametrize("mitigation, message", [
    ({"method": "dro"}, r"experiments\.x\.mitigation: method 'dro' is not allowed; allowed: 'balanced'"),
    ({"step_size": 0.1}, r"experiments\.x\.mitigation: give a `method`: one of balanced, group_dro"),
    ({"method": "group_dro", "step_size": 0}, r"group_dro\.step_size: Input should be greater than 0"),
    ({"method": "balanced", "groups": ["race", "race"]}, r"balanced\.groups: list each column at most once"),
    ({"method": "balanced", "groups": ["skin"]}, r"balanced\.groups\.0: 'skin' is not allowed"),
    ({"method": "balanced", "target": "median"}, r"balanced\.target: 'median' is not allowed"),
    ({"method": "adversarial", "attributes": ["age_band"]}, r"adversarial\.attributes\.0: 'age_band' is not allowed"),
    ({"method": "last_layer", "holdout": 1.0}, r"last_layer\.holdout: Input should be less than 1"),
    ({"method": "last_layer", "holdout": 0.3, "epochs": 3}, r"last_layer\.epochs: unknown key"),
])
def test_bad_mitigation_params_are_named(raw, mitigation, message):
    with pytest.raises(ParamsError, match=message):
        validate(with_experiment(raw, {"init": "backbone", "mitigation": mitigation}))


def test_a_mitigation_neither_starts_published_nor_mixes_with_oversampling(raw):
    with pytest.raises(ParamsError, match=r"experiments\.x: mitigation 'group_dro' trains the heads' hidden layer: init must be"):
        validate(with_experiment(raw, {"init": "published", "mitigation": {"method": "group_dro"}}))
    with pytest.raises(ParamsError, match="leave oversample empty and reweight none"):
        validate(with_experiment(raw, {"init": "backbone", "reweight": "inverse_band_frequency",
                                       "mitigation": {"method": "balanced"}}))


# ----- groups and balanced sampling ------------------------------------------------------------------

def test_group_codes_join_columns_and_keep_unlabelled_rows_in_their_own_group():
    frame = pd.DataFrame({"race": ["black", None, "white", "black"], "gender": ["female", "male", "male", "female"],
                          "age": [10, 40, 70, 20]})
    codes, names = group_codes(frame, ["race", "gender"], [0, 16, 61])
    assert names == ["black*female", "unknown*male", "white*male"]
    assert [names[c] for c in codes] == ["black*female", "unknown*male", "white*male", "black*female"]
    codes, names = group_codes(frame, ["gender", "age_band"], [0, 16, 61])
    assert [names[c] for c in codes] == ["female*0-15", "male*16-60", "male*61+", "female*16-60"]


def test_group_codes_refuse_a_column_no_row_has():
    frame = pd.DataFrame({"race": [None, None], "gender": ["female", "male"], "age": [1, 2]})
    with pytest.raises(SamplingError, match="no training row has a race label"):
        group_codes(frame, ["race", "gender"], [0])


@pytest.mark.parametrize("target, count", [("smallest", 3), ("mean", 10), ("largest", 20)])
def test_balanced_indices_give_every_group_the_same_count(target, count):
    codes = np.repeat([0, 1, 2], [20, 7, 3])
    indices = balanced_indices(codes, target, seed=0)
    assert np.bincount(codes[indices]).tolist() == [count] * 3
    for group in range(3):
        taken = np.bincount(indices[codes[indices] == group], minlength=len(codes))[codes == group]
        assert taken.max() - taken.min() <= 1           # repeats spread evenly over a group's rows
        if count >= (codes == group).sum():
            assert taken.min() >= 1                     # upsampling keeps every row
    np.testing.assert_array_equal(indices, balanced_indices(codes, target, seed=0))
    assert not np.array_equal(balanced_indices(codes, "smallest", 0), balanced_indices(codes, "smallest", 1))


def test_balanced_holdout_is_group_balanced_and_disjoint_from_training():
    codes = np.repeat([0, 1, 2], [20, 10, 6])
    kept, held = balanced_holdout(codes, 0.5, seed=3)
    assert np.bincount(codes[held]).tolist() == [3, 3, 3]
    assert sorted(np.concatenate([kept, held]).tolist()) == list(range(len(codes)))
    with pytest.raises(SamplingError, match="strictly between 0 and 1"):
        balanced_holdout(codes, 1.0, seed=3)


# ----- the pieces of the custom loops ------------------------------------------------------------------

def test_group_means_and_worst_group_loss_by_hand():
    means = group_means(tf.constant([1.0, 3.0, 5.0]), tf.constant([0, 0, 2]), 3).numpy()
    np.testing.assert_allclose(means, [2.0, 0.0, 5.0])
    assert worst_group_loss(np.array([1.0, 3.0, 0.5]), np.array([0, 0, 1])) == 2.0
    np.testing.assert_allclose(cross_entropy(np.array([[0.25, 0.75], [1.0, 0.0]]), np.array([1, 0])),
                               [-np.log(0.75), 0.0], atol=1e-6)


def test_group_dro_weights_follow_the_exponentiated_gradient_by_hand():
    q = exponentiated_update(tf.constant([0.5, 0.25, 0.25]), tf.constant([0.0, 1.0, 2.0]), 0.5).numpy()
    raw = np.array([0.5, 0.25 * np.exp(0.5), 0.25 * np.exp(1.0)])
    np.testing.assert_allclose(q, raw / raw.sum(), rtol=1e-6)


def test_gradient_reversal_is_identity_forward_and_negates_the_gradient():
    x = tf.constant([1.0, -2.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = gradient_reversal(0.5)(x)
        total = tf.reduce_sum(3.0 * y)
    np.testing.assert_allclose(y.numpy(), [1.0, -2.0])
    np.testing.assert_allclose(tape.gradient(total, x).numpy(), [-1.5, -1.5])


class Counting(Trainer):
    """A trainer whose every step adds 1 to the output kernel: each epoch's weights differ."""

    def train_step(self, data):
        kernel = self.head.get_layer("predictions").kernel
        kernel.assign(kernel + 1.0)
        return self.record(tf.constant(0.0), tf.shape(data[1])[0])


def test_a_trainer_is_fitted_by_keras_and_early_stopping_restores_the_best_epoch():
    model = build_head(3, 2, 2, 0.0, name="toy")
    marks = iter([5.0, 1.0, 7.0, 9.0, 0.5])
    budget = Budget(epochs=5, patience=2, batch_size=4, learning_rate=0.01, seed=0)
    data = TaskRows(np.arange(8), np.zeros(8, dtype=np.int64))
    weights = []
    history = fit_trainer(Counting(model), row_batches(np.zeros((8, 3), np.float16), data, budget),
                          lambda: (weights.append(model.get_weights()), next(marks))[1], budget=budget)
    assert history["val_loss"] == [5.0, 1.0, 7.0, 9.0]   # stopped after two epochs without a better one
    assert history["loss"] == [0.0] * 4
    for now, best in zip(model.get_weights(), weights[1]):
        np.testing.assert_array_equal(now, best)


# ----- each method's effect on data where it is known ------------------------------------------------

DIM = 6
BUDGET = Budget(epochs=40, patience=40, batch_size=64, learning_rate=0.01, seed=0)


def planted_imbalance(n_major=600, n_minor=40, seed=0):
    """Two groups with opposite rules: the label is x0 > 0 in the large group and x0 < 0 in the small one
    (x1 says which group a row is in). Plain training fits the large group's rule first."""
    rng = np.random.default_rng(seed)
    groups = np.repeat([0, 1], [n_major, n_minor])
    features = rng.normal(size=(len(groups), DIM)).astype(np.float16)
    features[:, 1] = groups * 2.0
    labels = ((features[:, 0] > 0) ^ (groups == 1)).astype(np.int64)
    return features, TaskRows(np.arange(len(groups)), labels, groups)


def group_losses(model, features, data):
    losses = cross_entropy(predict_probs(model, features, data.rows, 256), data.labels)
    return [losses[data.groups == g].mean() for g in (0, 1)]


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


# ----- one experiment's heads ------------------------------------------------------------------------

def tiny_params(raw, mitigation):
    changed = with_experiment({**raw, "profile": "demo"}, {"init": "random", "mitigation": mitigation})
    changed["profiles"]["demo"]["train"] = {"epochs": 2, "patience": 2, "batch_size": 32, "learning_rate": 0.01}
    changed["profiles"]["demo"]["backbone"]["fc_width"] = 8
    changed["labels"]["max_age"] = 30
    return validate(changed)


def tiny_split(n=120, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"id": [f"f{i}" for i in range(n)], "age": rng.integers(1, 30, n),
                          "gender": rng.choice(["female", "male"], n), "race": rng.choice(["black", "white", None], n)})
    features = Features(rng.normal(size=(n, DIM)).astype(np.float16), pd.Series(np.arange(n), index=frame["id"]))
    return features, frame.iloc[:90], frame.iloc[90:]


@pytest.mark.parametrize("mitigation", [{"method": "balanced", "target": "smallest"}, {"method": "group_dro"},
                                        {"method": "adversarial"}, {"method": "last_layer", "holdout": 0.5}])
def test_every_mitigation_trains_both_heads_of_an_experiment(raw, mitigation):
    params = tiny_params(raw, mitigation)
    features, train, val = tiny_split()
    fitted = fit_experiment(HeadData(params, features, train, val), params.experiments["x"])
    models, histories, summary = fitted.heads, fitted.histories, fitted.trained_on
    assert set(models) == {"age", "gender"}
    assert models["age"].output_shape == (None, 31) and models["gender"].output_shape == (None, 2)
    assert {"age", "gender"} <= set(histories)
    codes, names = group_codes(train, ["race", "gender"], params.age_bands)
    if mitigation["method"] == "balanced":
        assert summary["train_rows"] == len(names) * np.bincount(codes).min()
    if mitigation["method"] == "group_dro":
        assert set(summary["age_group_weights"]) == set(names) == {f"{r}*{g}" for r in ("black", "white", "unknown")
                                                                   for g in ("female", "male")}
    if mitigation["method"] == "last_layer":
        assert {"age_last_layer", "gender_last_layer"} <= set(histories)
        assert summary["train_rows"] + summary["holdout_rows"] == len(train)
    if mitigation["method"] == "adversarial":
        assert summary["against"] == {"age": ["race", "gender"], "gender": ["race"]}


def test_an_adversary_for_a_label_no_training_row_has_is_refused(raw):
    params = tiny_params(raw, {"method": "adversarial"})
    features, train, val = tiny_split()
    with pytest.raises(MitigationError, match="fewer than two race labels, so no adversary can predict it"):
        fit_experiment(HeadData(params, features, train.assign(race=None), val.assign(race=None)),
                       params.experiments["x"])
