import numpy as np
import pytest

from stages.lib.evaluation.disaggregation import disaggregate
from stages.lib.evaluation.group_gaps import gaps
from stages.lib.evaluation.intervals import Bootstrap
from stages.lib.evaluation.overall import argmax_metrics, overall_metrics, plain
from tests.evaluation.frames import EDGES, TOY


def test_overall_figures_carry_the_whole_set_and_the_headline_gaps():
    disaggregated = disaggregate(TOY, EDGES, Bootstrap(resamples=0), 1)
    overall = overall_metrics(disaggregated.table, gaps(disaggregated), TOY)
    assert overall["n"] == 5 and overall["mae"] == pytest.approx(23 / 5)
    assert overall["gender_accuracy"] == pytest.approx(0.6) and overall["mae_ci_low"] is None
    assert overall["gaps"]["race"]["mae_difference"] == pytest.approx(17 / 3 - 3)
    assert "rmse_difference" not in overall["gaps"]["race"]       # the rest stays in gaps.csv


def test_argmax_figures_only_where_the_table_has_them():
    assert argmax_metrics(TOY) == {}
    with_argmax = TOY.assign(age_pred_argmax=TOY["age"] + 3.0)
    assert argmax_metrics(with_argmax) == {"n_argmax": 5, "mae_argmax": 3.0, "rmse_argmax": 3.0}
    assert plain(np.float64("nan")) is None and plain(np.int64(3)) == 3 and plain(np.bool_(True)) is True
