"""Oversampling and loss re-weighting: exact counts and weights on small hand-computed arrays."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stages.lib.core.params import Oversample
from stages.lib.heads.data import NO_RESAMPLING
from stages.lib.heads.sampling import SamplingError, inverse_band_weights, oversample_indices, training_plan

BANDS = [0, 16, 31, 46, 61]
AGES = np.array([10, 60, 70, 59, 100])


def test_factor_two_appends_the_old_once_more():
    assert oversample_indices(AGES, [{"min_age": 60, "factor": 2}]).tolist() == [0, 1, 2, 3, 4, 1, 2, 4]


def test_factor_three_appends_them_twice_more():
    indices = oversample_indices(AGES, [{"min_age": 60, "factor": 3}])
    assert indices.tolist() == [0, 1, 2, 3, 4, 1, 2, 4, 1, 2, 4]
    assert np.bincount(indices).tolist() == [1, 3, 3, 1, 3]


def test_bounded_rules_with_their_own_factors_and_params_objects():
    rules = [Oversample(min_age=0, max_age=10, factor=2), Oversample(min_age=60, max_age=70, factor=3)]
    assert np.bincount(oversample_indices(AGES, rules)).tolist() == [2, 3, 3, 1, 1]


def test_no_rules_and_factor_one_leave_every_row_once():
    assert oversample_indices(AGES, []).tolist() == [0, 1, 2, 3, 4]
    assert oversample_indices(AGES, [{"min_age": 0, "factor": 1}]).tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("rules, message", [
    ([{"min_age": 50, "factor": 2}, {"min_age": 60, "max_age": 70, "factor": 3}], "overlap"),
    ([{"min_age": 10, "max_age": 30, "factor": 2}, {"min_age": 30, "factor": 2}], "overlap"),
    ([{"min_age": 60, "factor": 0}], "factor"),
    ([{"min_age": 60, "max_age": 50, "factor": 2}], "max_age"),
])
def test_bad_rules_are_refused(rules, message):
    with pytest.raises(SamplingError, match=message):
        oversample_indices(AGES, rules)


def test_inverse_band_weights_by_hand():
    # bands 0-15: 1 row, 16-30: 3 rows, 61+: 1 row; n = 5 rows in B = 3 bands -> n / (B * n_band)
    weights = inverse_band_weights([5, 20, 20, 20, 70], BANDS)
    np.testing.assert_allclose(weights, [5 / 3, 5 / 9, 5 / 9, 5 / 9, 5 / 3])
    assert weights.mean() == pytest.approx(1.0)


def test_equal_bands_weigh_one():
    np.testing.assert_allclose(inverse_band_weights([1, 2, 20, 21, 90, 95], BANDS), np.ones(6))


def test_ages_below_the_first_band_are_refused():
    with pytest.raises(SamplingError, match="below the first age band"):
        inverse_band_weights([5, 30], [16, 31])


def test_plan_oversamples_then_weighs_the_oversampled_rows():
    plan = training_plan(AGES, [{"min_age": 60, "factor": 2}], "inverse_band_frequency", BANDS)
    indices, weights = plan.indices, plan.weights
    assert indices.tolist() == [0, 1, 2, 3, 4, 1, 2, 4]
    # oversampled ages [10, 60, 70, 59, 100, 60, 70, 100]: bands 0-15: 1, 46-60: 3, 61+: 4 of n = 8, B = 3
    np.testing.assert_allclose(weights, [8 / 3, 8 / 9, 8 / 12, 8 / 9, 8 / 12, 8 / 9, 8 / 12, 8 / 12])
    assert training_plan(AGES, [], "none", BANDS) is NO_RESAMPLING     # every row once, unweighted
    weighed = training_plan(AGES, [], "inverse_band_frequency", BANDS)
    assert weighed.rows_of(len(AGES)).tolist() == list(range(len(AGES))) and len(weighed.weights) == len(AGES)
    with pytest.raises(SamplingError, match="reweight"):
        training_plan(AGES, [], "inverse", BANDS)


@settings(max_examples=50, deadline=None)
@given(ages=st.lists(st.integers(0, 100), min_size=1, max_size=60),
       low=st.integers(0, 100), factor=st.integers(1, 4))
def test_every_matching_row_appears_factor_times(ages, low, factor):
    counts = np.bincount(oversample_indices(ages, [{"min_age": low, "factor": factor}]), minlength=len(ages))
    assert counts.tolist() == [factor if age >= low else 1 for age in ages]


@settings(max_examples=50, deadline=None)
@given(ages=st.lists(st.integers(0, 100), min_size=1, max_size=60))
def test_weights_average_one_and_every_band_carries_the_same_total(ages):
    weights = inverse_band_weights(ages, BANDS)
    assert weights.mean() == pytest.approx(1.0)
    band = np.searchsorted(BANDS, ages, side="right") - 1
    totals = [weights[band == b].sum() for b in np.unique(band)]
    np.testing.assert_allclose(totals, totals[0])
