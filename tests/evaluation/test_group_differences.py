import pytest

from stages.lib.evaluation.disaggregation import disaggregate
from stages.lib.evaluation.group_differences import counts, difference, judged_metrics, pool, value
from stages.lib.evaluation.intervals import Bootstrap, proportion_gap
from tests.evaluation.frames import EDGES, TOY


def test_pooled_groups_add_their_sums():
    disaggregated = disaggregate(TOY, EDGES, Bootstrap(resamples=0), 1)
    both = pool(disaggregated, "race", ["white", "black"])
    assert both.n == 5 and value(both, "mae") == pytest.approx(23 / 5)
    assert counts(both, "gender_accuracy") == (3, 5)
    assert value(pool(disaggregated, "race", ["black"]), "gender_accuracy") == pytest.approx(2 / 3)


def test_a_difference_of_proportions_is_newcombes_with_a_matching_p_value():
    disaggregated = disaggregate(TOY, EDGES, Bootstrap(resamples=0), 1)
    gap, p_value = difference(pool(disaggregated, "race", ["black"]), pool(disaggregated, "race", ["white"]),
                              "gender_accuracy", 0.95)
    assert gap == proportion_gap(2, 3, 1, 2, confidence=0.95)
    assert 0 < p_value <= 1
    assert judged_metrics(disaggregated.table) == ["mae", "rmse", "gender_accuracy"]
