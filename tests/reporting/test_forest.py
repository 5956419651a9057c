"""The mitigation forest (reporting/forest.py): paired changes against each twin as changes of error,
Bonferroni-adjusted, one row per experiment and statistic."""

import pandas as pd
import pytest

from stages.lib.reporting.forest import bonferroni_confidence, forest_figure, forest_rows


def _summary() -> pd.DataFrame:
    rows = []
    for experiment, change in (("balanced", 0.5), ("group_dro", -1.0), ("retrained", 0.0)):
        for statistic, scale in (("mae", 1), ("worst_group_mae", 2), ("gender_accuracy", 0.01), ("accuracy_gap", 0.02)):
            rows.append({"dataset": "utkface", "experiment": experiment, "statistic": statistic,
                         "change": change * scale, "change_ci_low": (change - 0.5) * scale,
                         "change_ci_high": (change + 0.5) * scale})
    return pd.DataFrame(rows)


def test_bonferroni_splits_the_error_rate_over_the_comparisons():
    assert bonferroni_confidence(0.95, 4) == pytest.approx(0.9875) and bonferroni_confidence(0.95, 1) == 0.95


def test_rows_are_changes_of_error_for_the_named_experiments_only():
    rows = forest_rows(_summary(), {"balanced": "plain", "group_dro": "plain"})
    assert set(rows["experiment"]) == {"balanced", "group_dro"} and set(rows["reference"]) == {"plain"}
    accuracy = rows[(rows["experiment"] == "group_dro") & (rows["panel"] == "gender") & (rows["label"] == "overall")].iloc[0]
    assert (accuracy["change"], accuracy["low"], accuracy["high"]) == pytest.approx((1.0, 0.5, 1.5))  # accuracy 1 pt down: error 1 pt up
    gap = rows[(rows["experiment"] == "group_dro") & (rows["label"] == "gap")].iloc[0]
    assert gap["change"] == pytest.approx(-2.0)     # the accuracy gap is already an error gap: narrower is lower


def test_the_figure_has_a_panel_per_test_set_and_metric_and_a_labelled_row_per_experiment():
    figure = forest_figure(forest_rows(_summary(), {"balanced": "plain", "group_dro": "plain"}), confidence=0.95)
    drawn = [axis for axis in figure.axes if axis.axison]
    assert [axis.get_title() for axis in drawn] == ["utkface: change of MAE (years)", "utkface: change of gender error (points)"]
    assert [t.get_text() for t in drawn[0].get_yticklabels()] == ["group_dro vs plain", "balanced vs plain"]
