"""intervals.py: the bootstrap, binomial intervals of proportions, and gaps of two groups or two models."""

import numpy as np
import pytest

from stages.lib.evaluation.disaggregation import group_metrics
from stages.lib.evaluation.intervals import (
    Bootstrap, binomial_interval, bootstrap_p_value, cluster_codes, cluster_totals, direction, group_rng, mean_interval,
    paired_mean_gap, percentile_interval, proportion_gap, proportion_gap_p_value, resample_cluster_sums, resample_sums,
    resampled_gap,
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


# ------------------------------------------------------------------------------------------------
# Beyond the moved tests: each public function on a fixture where the wrong answer would show


def test_newcombes_interval_of_a_difference_matches_the_published_example():
    # Newcombe (1998), Table II: 56/70 − 48/80 by the hybrid score method (10) is 0.2000 [0.0524, 0.3339].
    gap = proportion_gap(56, 70, 48, 80, confidence=0.95)
    assert gap.difference == pytest.approx(0.2)
    assert (gap.difference_ci_low, gap.difference_ci_high) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    assert direction(gap.difference_ci_low, gap.difference_ci_high) == "above"


def test_the_ratio_interval_of_b_over_a_is_the_reciprocal_of_a_over_b():
    forward, backward = proportion_gap(10, 20, 1, 20, confidence=0.95), proportion_gap(1, 20, 10, 20, confidence=0.95)
    assert forward.ratio == pytest.approx(10) and forward.ratio_ci_low < 10 < forward.ratio_ci_high
    assert forward.ratio_ci_low > 1                             # 50% against 5%: the ratio excludes 1
    assert (backward.ratio_ci_low, backward.ratio_ci_high) == pytest.approx(
        (1 / forward.ratio_ci_high, 1 / forward.ratio_ci_low), rel=1e-6)
    assert (backward.difference_ci_low, backward.difference_ci_high) == pytest.approx(
        (-forward.difference_ci_high, -forward.difference_ci_low))


def test_a_gap_of_two_perfect_groups_keeps_its_width_and_a_zero_denominator_has_no_ratio():
    same = proportion_gap(20, 20, 20, 20, confidence=0.95)
    assert same.difference == 0 and same.difference_ci_low < -0.15 and same.difference_ci_high > 0.15
    assert same.ratio_ci_low < 1 < same.ratio_ci_high
    none_right = proportion_gap(10, 20, 0, 20, confidence=0.95)
    assert none_right.difference == 0.5 and none_right.difference_ci_low > 0
    assert np.isnan([none_right.ratio, none_right.ratio_ci_low, none_right.ratio_ci_high]).all()
    assert np.isnan(list(proportion_gap(1, 0, 1, 2, confidence=0.95).as_dict().values())).all()
    assert np.isnan(proportion_gap_p_value(1, 0, 1, 2)) and proportion_gap_p_value(5, 10, 10, 20) == 1.0


def test_an_empty_group_has_a_wilson_interval_reaching_up_not_a_point():
    assert binomial_interval(0, 20, 0.95) == pytest.approx((0.0, 0.1611), abs=1e-4)
    assert binomial_interval(0, 20, 0.95, "clopper_pearson") == pytest.approx((0.0, 1 - 0.025 ** (1 / 20)), abs=1e-6)


def test_bootstrap_p_value_is_wald_on_the_bootstrap_spread():
    spread = np.array([-1.0, 1.0] * 50)                      # standard deviation just above 1
    sd = spread.std(ddof=1)
    assert bootstrap_p_value(1.959964 * sd, spread) == pytest.approx(0.05, abs=1e-5)
    assert bootstrap_p_value(-1.959964 * sd, np.append(spread, np.nan)) == pytest.approx(0.05, abs=1e-5)
    assert bootstrap_p_value(0.0, np.zeros(10)) == 1.0 and bootstrap_p_value(0.3, np.full(10, 0.3)) == 0.0
    assert np.isnan(bootstrap_p_value(1.0, [0.5])) and np.isnan(bootstrap_p_value(np.nan, spread))


def test_cluster_totals_sum_each_clusters_rows_in_order_of_first_appearance():
    values = np.column_stack([[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]])
    totals = cluster_totals(values, np.array([5, 3, 5, 7]))
    np.testing.assert_array_equal(totals, [[4.0, 2.0], [2.0, 1.0], [4.0, 1.0]])
    np.testing.assert_array_equal(cluster_codes(["b", "a", "b", None, "a"], 5)[[0, 1, 2, 4]], [0, 1, 0, 1])
    np.testing.assert_array_equal(cluster_codes(None, 3), [0, 1, 2])


def test_cluster_resamples_draw_whole_clusters():
    # Three people of two photos each, one error per person (0, 10, 20): a resample draws three people,
    # so its six faces sum to a multiple of 20; a face-level draw would give odd multiples of 10.
    values = np.column_stack([[0.0, 0.0, 10.0, 10.0, 20.0, 20.0], np.ones(6)])
    sums = resample_cluster_sums(values, np.array([0, 0, 1, 1, 2, 2]), 300, np.random.default_rng(0))
    assert (sums[:, 1] == 6).all() and (sums[:, 0] % 20 == 0).all()
    faces = resample_cluster_sums(values, None, 300, np.random.default_rng(0))
    assert (faces[:, 0] % 20 != 0).any()


def test_group_rng_depends_on_seed_and_key_only():
    bootstrap = Bootstrap(resamples=10, seed=3)
    first = group_rng(bootstrap, "race:white").integers(0, 1_000_000, 5)
    assert np.array_equal(first, group_rng(Bootstrap(resamples=99, seed=3), "race:white").integers(0, 1_000_000, 5))
    assert not np.array_equal(first, group_rng(bootstrap, "race:black").integers(0, 1_000_000, 5))
    assert not np.array_equal(first, group_rng(Bootstrap(seed=4), "race:white").integers(0, 1_000_000, 5))


def test_no_resamples_no_interval_but_the_estimates_stay():
    low, high = mean_interval([1.0, 2.0], Bootstrap(resamples=0), "k")
    assert np.isnan(low) and np.isnan(high)
    gap = paired_mean_gap([2.0, 4.0], [1.0, 1.0], Bootstrap(resamples=0), "k")
    assert (gap.difference, gap.ratio) == (2.0, 3.0)
    assert np.isnan([gap.difference_ci_low, gap.difference_ci_high, gap.ratio_ci_low, gap.ratio_ci_high]).all()
    assert np.isnan(list(paired_mean_gap([], [], Bootstrap(resamples=10), "k").as_dict().values())).all()


def test_resampled_gap_pairs_the_resamples_and_has_no_ratio_to_zero():
    # resample i of A goes with resample i of B: differences 1, 2, 2 and ratios 2, 3, 2 (unpaired, 4 − 1 = 3
    # and 2 − 2 = 0 would be in reach)
    gap = resampled_gap(3.0, 1.0, np.array([2.0, 3.0, 4.0]), np.array([1.0, 1.0, 2.0]), confidence=0.999)
    assert (gap.difference, gap.ratio) == (2.0, 3.0)
    assert (gap.difference_ci_low, gap.difference_ci_high) == pytest.approx((1.0, 2.0), abs=0.002)
    assert (gap.ratio_ci_low, gap.ratio_ci_high) == pytest.approx((2.0, 3.0), abs=0.002)
    zero = resampled_gap(1.0, 0.0, np.array([1.0, 2.0]), np.array([0.0, 0.0]), confidence=0.95)
    assert zero.difference == 1.0 and np.isnan([zero.ratio, zero.ratio_ci_low, zero.ratio_ci_high]).all()
