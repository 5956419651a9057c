"""Mitigation `balanced`: the heads are fitted on training rows drawn to equal counts per group."""

import numpy as np
import pytest

from stages.lib.heads import balanced
from stages.lib.heads.sampling import group_codes
from stages.lib.heads.data import FittedHeads, HeadData
from tests.heads.toys import tiny_params, tiny_split


def fitted_plan(raw, monkeypatch, mitigation):
    """What `balanced.fit` hands the ordinary fit (the rows drawn, the loss weights), and its summary."""
    params = tiny_params(raw, mitigation)
    features, train, val = tiny_split()
    plans = []
    monkeypatch.setattr(balanced, "train_heads", lambda data, init, plan: (plans.append(plan),
                                                                            FittedHeads({}, {}))[1])
    fitted = balanced.fit(HeadData(params, features, train, val), params.experiments["x"])
    plan, = plans
    indices, weights = plan.indices, plan.weights
    return params, train, indices, weights, fitted.trained_on


@pytest.mark.parametrize("target", ["smallest", "largest"])
def test_the_heads_are_fitted_on_equal_counts_of_every_group(raw, monkeypatch, target):
    params, train, indices, weights, trained_on = fitted_plan(raw, monkeypatch, {"method": "balanced",
                                                                                   "target": target})
    codes, names = group_codes(train, ["race", "gender"], params.age_bands)
    before = np.bincount(codes)
    assert before.min() < before.max()                               # the fixture's groups are unequal
    after = np.bincount(codes[indices], minlength=len(names))
    assert set(after.tolist()) == {before.min() if target == "smallest" else before.max()}
    assert weights is None
    assert trained_on == {"train_rows": len(indices), "groups": len(names)}


def test_the_groups_are_the_mitigations_own(raw, monkeypatch):
    params, train, indices, _, trained_on = fitted_plan(raw, monkeypatch, {"method": "balanced", "groups": ["gender"],
                                                                          "target": "smallest"})
    counts = train["gender"].iloc[indices].value_counts()
    assert len(counts) == 2 and counts.nunique() == 1
    assert trained_on["groups"] == 2
