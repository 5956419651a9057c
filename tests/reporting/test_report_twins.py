"""The report names experiments whose test predictions are one model twice."""

import pandas as pd

from stages.lib.reporting.report import ExperimentResults, identical_predictions


def _result(name: str, ages: list[float], *, split: str = "test", ids: list[str] | None = None) -> ExperimentResults:
    ids = ids or [f"d/{i}" for i in range(len(ages))]
    predictions = pd.DataFrame({"id": ids, "dataset": "d", "split": split, "age_pred": ages,
                                "gender_prob_female": [0.25] * len(ages)})
    return ExperimentResults(name, "random", {}, predictions, None)


def test_identical_test_predictions_are_paired_with_the_first_experiment_they_equal():
    results = [_result("published", [20.0, 30.0]), _result("retrained", [21.0, 30.0]),
               _result("control", [20.0, 30.0]), _result("again", [20.0, 30.0])]
    assert identical_predictions(results, "d") == [("control", "published"), ("again", "published")]


def test_the_same_values_on_other_faces_or_in_another_order_of_rows_are_judged_by_face():
    shuffled = _result("shuffled", [30.0, 20.0], ids=["d/1", "d/0"])   # the same face, the same prediction
    other_faces = _result("other", [20.0, 30.0], ids=["d/5", "d/6"])
    results = [_result("published", [20.0, 30.0]), shuffled, other_faces]
    assert identical_predictions(results, "d") == [("shuffled", "published")]


def test_a_difference_in_one_gender_probability_or_only_val_rows_is_not_a_twin():
    changed = _result("changed", [20.0, 30.0])
    changed.predictions.loc[1, "gender_prob_female"] = 0.26
    results = [_result("published", [20.0, 30.0]), changed, _result("val_only", [20.0, 30.0], split="val"),
               ExperimentResults("unpredicted", "random", {}, None, None)]
    assert identical_predictions(results, "d") == []
