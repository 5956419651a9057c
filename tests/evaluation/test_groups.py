import pytest

from stages.lib.evaluation.groups import evaluate
from stages.lib.evaluation.intervals import Bootstrap
from tests.evaluation.frames import EDGES, TOY, row

NO_CI = Bootstrap(resamples=0)


def test_evaluate_bundles_everything_and_refuses_an_empty_table():
    evaluation = evaluate(TOY, EDGES, Bootstrap(resamples=20), 2)
    assert evaluation.overall["n"] == 5 and "gaps" in evaluation.overall
    assert {"predicted_vs_actual", "signed_error_by_predicted_band", "error_by_age_race",
            "women_gender_accuracy"} <= set(evaluation.tables)
    with pytest.raises(ValueError, match="no predictions"):
        evaluate(TOY.iloc[:0], EDGES)


def test_band_only_ages_are_judged_by_band_accuracy():
    frame = TOY.assign(age_band_source=["20-29", "20-29", None, "more than 70", "60-69"])
    evaluation = evaluate(frame, EDGES, NO_CI)
    bands = evaluation.tables["age_band_accuracy"]
    assert row(bands, "all", "all")["n"] == 4 and row(bands, "all", "all")["age_band_accuracy"] == 0.75
    assert row(bands, "gender", "female")["age_band_accuracy"] == 1.0  # 21 in 20-29, 64 in 60-69
    assert row(bands, "race", "black")["age_band_accuracy"] == 0.5     # 60 is not more than 70
    assert evaluation.overall["age_band_accuracy"] == 0.75 and evaluation.overall["n_age_band"] == 4
    assert "age_band_accuracy" not in evaluate(TOY, EDGES, NO_CI).tables
