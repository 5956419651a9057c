"""The plain ways of getting heads: the published heads as they are, and the ordinary fit following the
experiment's oversampling and re-weighting."""

import numpy as np
import pandas as pd
import pytest

from stages.lib.core.params import Experiment
from stages.lib.heads import plain
from stages.lib.heads.model import build_head, layer_weights
from stages.lib.backbones.store import Features
from stages.lib.heads.data import NO_RESAMPLING, Budget, FittedHeads, HeadData, TaskRows, TrainingPlan
from stages.lib.heads.plain import fit_head
from stages.lib.heads.predicting import predict_probs
from tests.heads.toys import DIM, PROBLEM_DIM, tiny_params, tiny_split, toy_problem


def test_fit_trains_on_the_experiments_oversampled_and_reweighted_rows(raw, monkeypatch):
    params = tiny_params(raw, {"method": "balanced"})
    features, train, val = tiny_split()
    experiment = Experiment(init="random", oversample=[{"min_age": 1, "max_age": 9, "factor": 3}],
                            reweight="inverse_band_frequency")
    calls = []
    monkeypatch.setattr(plain, "train_heads", lambda data, init, plan: (calls.append((init, plan)), FittedHeads({}))[1])
    plain.fit(HeadData(params, features, train, val), experiment)
    (init, plan), = calls
    indices, weights = plan.indices, plan.weights
    young = train["age"].to_numpy() <= 9
    assert init == "random" and young.any()
    copies = np.bincount(indices, minlength=len(train))
    assert (copies[young] == 3).all() and (copies[~young] == 1).all()
    bands = np.searchsorted(params.age_bands, train["age"].to_numpy()[indices], side="right")
    totals = pd.Series(weights).groupby(bands).sum()
    np.testing.assert_allclose(totals, totals.iloc[0])               # every age band weighs the same in all


def test_the_baseline_takes_the_pretrain_stages_heads_untrained(raw, tmp_path):
    params = tiny_params(raw, {"method": "balanced"})
    features, train, val = tiny_split()
    saved = {}
    for task, classes in (("age", 31), ("gender", 2)):
        saved[task] = build_head(DIM, 8, classes, 0.0, name=task, seed=7)
        saved[task].save(tmp_path / f"{task}.keras")
    fitted = plain.as_published(HeadData(params, features, train, val, tmp_path),
                                Experiment(init="published", protocol="none"))
    assert fitted.histories == {} and fitted.reads == "features"
    for task, model in saved.items():
        loaded = layer_weights(fitted.heads[task])
        for name, weights in layer_weights(model).items():
            for expected, got in zip(weights, loaded[name]):
                np.testing.assert_array_equal(got, expected)


def test_the_baseline_of_a_backbone_storing_its_own_outputs_selects_them(raw):
    params = tiny_params(raw, {"method": "balanced"})
    features, train, val = tiny_split()
    rng = np.random.default_rng(0)
    outputs = np.concatenate([rng.dirichlet(np.ones(2), len(features.array)),
                              rng.dirichlet(np.ones(31), len(features.array))], axis=1).astype(np.float32)
    stored = Features(features.array, features.row_of, published=outputs)
    fitted = plain.as_published(HeadData(params, stored, train, val), Experiment(init="published", protocol="none"))
    assert fitted.reads == "published_outputs"
    np.testing.assert_allclose(fitted.heads["gender"].predict_on_batch(outputs[:5]), outputs[:5, :2], rtol=1e-6)
    np.testing.assert_allclose(fitted.heads["age"].predict_on_batch(outputs[:5]), outputs[:5, 2:], rtol=1e-6)


def fit_toy(features, labels, seed, weights=None):
    model = build_head(PROBLEM_DIM, 8, 3, dropout=0.2, name="toy", seed=seed)
    fit_head(model, features, TaskRows(np.arange(0, 180), labels[:180]), TaskRows(np.arange(180, 240), labels[180:]),
             budget=Budget(epochs=4, patience=10, batch_size=32, learning_rate=0.01, seed=seed), sample_weight=weights)
    return predict_probs(model, features, np.arange(240), 64)


def test_same_seed_same_head_other_seed_another():
    features, labels = toy_problem()
    first, second, other = (fit_toy(features, labels, seed) for seed in (3, 3, 4))
    np.testing.assert_array_equal(first, second)
    assert np.abs(first - other).max() > 1e-4


def test_sample_weights_change_the_fit():
    features, labels = toy_problem()
    weighted = fit_toy(features, labels, 3, weights=np.where(labels[:180] == 2, 5.0, 1.0))
    assert weighted[:, 2].mean() > fit_toy(features, labels, 3)[:, 2].mean()


def test_fit_refuses_an_empty_validation_split():
    features, labels = toy_problem()
    with pytest.raises(ValueError, match="val"):
        fit_head(build_head(PROBLEM_DIM, 8, 3, 0.0, name="toy"), features, TaskRows(np.arange(10), labels[:10]),
                 TaskRows(np.arange(0), labels[:0]), budget=Budget(epochs=1, patience=1, batch_size=4,
                                                                   learning_rate=0.01, seed=0))


def test_train_heads_fits_both_heads_on_the_plans_rows(raw):
    params = tiny_params(raw, {"method": "balanced"})
    features, train, val = tiny_split()
    fitted = plain.train_heads(HeadData(params, features, train, val), "random", NO_RESAMPLING)
    assert set(fitted.heads) == set(fitted.histories) == {"age", "gender"}
    assert fitted.trained_on == {"train_rows": len(train)}
    twice = plain.train_heads(HeadData(params, features, train, val), "random",
                              TrainingPlan(np.repeat(np.arange(len(train)), 2)))
    assert twice.trained_on == {"train_rows": 2 * len(train)}
