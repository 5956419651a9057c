"""intervals.py: the bootstrap, binomial intervals of proportions, and gaps of two groups or two models."""

import numpy as np
import pandas as pd
import pytest

from stages.lib.evaluation.groups import group_metrics
from stages.lib.evaluation.intervals import (
    Bootstrap, binomial_interval, cluster_codes, direction, mean_interval, paired_mean_gap, percentile_interval,
    proportion_gap, proportion_gap_p_value, resample_cluster_sums, resample_sums,
)
from tests.evaluation.frames import EDGES, row, table


def test_interval_of_a_two_point_sample_is_its_range():
    # Resampling [1, 3]: the mean is 1, 2 or 3 with probability 1/4, 1/2, 1/4: the central 95% is [1, 3],
    # the central 40% is [2, 2].
    assert mean_interval(np.array([1.0, 3.0]), Bootstrap(resamples=4000, confidence=0.95), "k") == (1.0, 3.0)
    assert mean_interval(np.array([1.0, 3.0]), Bootstrap(resamples=4000, confidence=0.4), "k") == (2.0, 2.0)
    groups = group_metrics(table([(40, 41.0, "male", "white", None), (40, 37.0, "male", "white", None)]), EDGES,
                           Bootstrap(resamples=4000), 1)       # errors +1 and -3: MAE resamples are means of [1, 3]
    assert (row(groups, "all", "all")["mae_ci_low"], row(groups, "all", "all")["mae_ci_high"]) == (1.0, 3.0)


def test_interval_of_a_proportion_is_wilsons():
    assert binomial_interval(200, 400, 0.95) == pytest.approx((0.451, 0.549), abs=0.001)   # 0.5 ± 1.96 · 0.025
    assert binomial_interval(20, 20, 0.95) == pytest.approx((0.8389, 1.0), abs=1e-4)
    assert binomial_interval(20, 20, 0.95, "clopper_pearson") == pytest.approx((0.8316, 1.0), abs=1e-4)
    assert np.isnan(binomial_interval(0, 0, 0.95)).all()
    with pytest.raises(ValueError, match="allowed"):
        binomial_interval(1, 2, 0.95, "bootstrap")


def test_interval_of_a_constant_is_the_constant_and_width_shrinks_with_n():
    assert mean_interval(np.full(50, 7.0), Bootstrap(resamples=200), "c") == (7.0, 7.0)
    rng = np.random.default_rng(1)
    small = mean_interval(rng.normal(0, 10, 100), Bootstrap(resamples=2000), "s")
    large = mean_interval(rng.normal(0, 10, 10_000), Bootstrap(resamples=2000), "l")
    assert small[1] - small[0] == pytest.approx(2 * 1.96 * 10 / np.sqrt(100), rel=0.15)
    assert large[1] - large[0] == pytest.approx(2 * 1.96 * 10 / np.sqrt(10_000), rel=0.15)


def test_resample_sums_draws_whole_resamples():
    values = np.column_stack([np.ones(7), np.arange(7.0)])
    sums = resample_sums(values, 300, np.random.default_rng(0))
    assert sums.shape == (300, 2)
    assert (sums[:, 0] == 7).all()                             # every resample has n rows
    assert sums[:, 1].min() >= 0 and sums[:, 1].max() <= 6 * 7
    assert sums[:, 1].mean() / 7 == pytest.approx(3.0, abs=0.2)


def test_percentile_interval_ignores_missing_statistics():
    assert percentile_interval(np.array([np.nan, 1.0, 2.0, 3.0]), 0.5) == (1.5, 2.5)
    low, high = percentile_interval(np.array([np.nan]), 0.95)
    assert np.isnan(low) and np.isnan(high)


def test_direction_of_an_interval():
    assert [direction(0.1, 2), direction(-2, -0.1), direction(-1, 1), direction(np.nan, np.nan)] == [
        "above", "below", "n.s.", "no interval"]


def test_a_paired_gap_sees_what_two_unpaired_intervals_miss():
    # Two models on the same faces: b is a's error plus 0.2 years on every face. The faces' own spread
    # (sd 5) makes each model's interval ±0.3 wide, but the paired difference is exactly 0.2.
    rng = np.random.default_rng(0)
    a = np.abs(rng.normal(0, 5, 1000))
    b = a + 0.2
    gap = paired_mean_gap(b, a, Bootstrap(resamples=500), "models")
    assert gap.difference == pytest.approx(0.2)
    assert gap.difference_ci_low == pytest.approx(0.2) and gap.difference_ci_high == pytest.approx(0.2)
    assert gap.ratio_ci_low > 1
    low_b, _ = mean_interval(b, Bootstrap(resamples=500), "b")
    _, high_a = mean_interval(a, Bootstrap(resamples=500), "a")
    assert low_b < high_a                                   # the two intervals overlap all the same
    with pytest.raises(ValueError, match="same faces"):
        paired_mean_gap(a, b[:10], Bootstrap(), "x")


def test_proportion_p_value_agrees_with_newcombes_interval():
    for a, b in ((40, 25), (33, 25), (30, 28), (50, 20), (20, 20)):
        gap = proportion_gap(a, 60, b, 60, confidence=0.95)
        excludes = gap.difference_ci_low > 0 or gap.difference_ci_high < 0
        assert (proportion_gap_p_value(a, 60, b, 60) < 0.05) == excludes


def test_cluster_bootstrap_without_clusters_is_the_face_bootstrap():
    values = np.random.default_rng(1).normal(size=(50, 2))
    face = resample_sums(values, 100, np.random.default_rng(7))
    assert np.array_equal(resample_cluster_sums(values, cluster_codes([None] * 50, 50), 100,
                                                np.random.default_rng(7)), face)
    assert np.array_equal(cluster_codes(["a", None, "a", "b", ""], 5)[[0, 2]], [0, 0])
    assert len(set(cluster_codes(["a", None, "a", "b", ""], 5))) == 4
