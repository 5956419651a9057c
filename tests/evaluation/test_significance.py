import pytest

from stages.lib.evaluation.disaggregation import disaggregate
from stages.lib.evaluation.intervals import Bootstrap
from stages.lib.evaluation.significance import SIGNIFICANCE_COLUMNS, significance
from tests.evaluation.frames import EDGES, two_races


def test_significance_rests_on_the_difference_with_the_rest():
    verdicts = significance(disaggregate(two_races(shift=12), EDGES, Bootstrap(resamples=300), 30))
    assert list(verdicts.columns) == SIGNIFICANCE_COLUMNS
    verdicts = verdicts.set_index(["group", "metric"])
    assert verdicts.loc[("black", "mae"), "verdict"] == "above" and verdicts.loc[("white", "mae"), "verdict"] == "below"
    black = verdicts.loc[("black", "mae")]
    assert black["compared_with"] == "the rest" and black["reference"] == pytest.approx(verdicts.loc[("white", "mae"), "value"])
    assert black["difference"] == pytest.approx(black["value"] - black["reference"])
    assert black["difference_ci_low"] > 0
    assert verdicts.loc[("black", "mean_error"), "verdict"] == "above"
    assert verdicts.loc[("white", "mean_error"), "verdict"] == "n.s."
    assert verdicts.loc[("white", "mean_error"), "compared_with"] == "zero"
