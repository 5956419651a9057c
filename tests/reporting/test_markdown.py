"""The report's markdown (reporting/markdown.py): the builder, table cells, numbers with their
intervals, and the words a group earns only where the (adjusted) interval of its difference supports them."""

from pathlib import Path

import numpy as np
import pandas as pd

from stages.lib.core.labels import RACES
from stages.lib.reporting.markdown import (Markdown, correction_section, difference, groups_display, markdown_table,
                                           number, p_value_text, percent, pivot_display, significance_bullets,
                                           with_interval)


def test_markdown_helpers():
    assert markdown_table(pd.DataFrame({"a": ["x|y"], "b": [None]})) == "| a | b |\n|---|---|\n| x\\|y |  |"
    assert markdown_table(pd.DataFrame({"n": [1499], "flag": [True]})) == "| n | flag |\n|---|---|\n| 1,499 | True |"
    assert with_interval(10.0746, 9.935, 10.21) == "10.07 [9.94, 10.21]"
    assert with_interval(0.5, 0.45, 0.55, as_percent=True) == "50.0% [45.0%, 55.0%]"
    assert with_interval(3.0, np.nan, np.nan) == "3.00"
    md = Markdown(Path("reports"))
    md.figure(Path("reports/figures/a.png"), "cap")
    assert "](figures/a.png)" in md.text()


def test_an_adjusted_significance_list_is_shorter_than_the_raw_one():
    rows = [{"attribute": "race", "group": g, "metric": "mae", "value": 5.0, "difference": 0.4,
             "difference_ci_low": 0.05, "difference_ci_high": 0.8, "verdict": "above", "small": False,
             "significant": g == "black", "significant_raw": True} for g in RACES]
    table = pd.DataFrame(rows)
    evaluation = type("E", (), {"significance": table})()
    adjusted, _ = significance_bullets(evaluation, 30)
    raw, _ = significance_bullets(type("E", (), {"significance": table.drop(columns=["significant"])})(), 30)
    assert adjusted[0].count("(") < raw[0].count("(") and "black" in adjusted[0] and "white" not in adjusted[0]
    # a group whose raw interval excludes zero but which fails the adjustment is never said to hold zero
    with_p = table.assign(p_adjusted=np.where(table["group"] == "black", 0.01, 0.09))
    as_written = with_p.assign(verdict_raw=with_p["verdict"],   # as the evaluation writes it: verdict adjusted
                               verdict=np.where(with_p["significant"], with_p["verdict"], "n.s."))
    for frame in (with_p, as_written):
        _, unclear = significance_bullets(type("E", (), {"significance": frame})(), 30)
        assert "white (adjusted p 0.090)" in unclear[0] and "does not survive the multiplicity adjustment" in unclear[0]
        assert "holds zero" not in unclear[0]


def test_a_p_value_never_rounds_onto_a_threshold():
    assert [p_value_text(p) for p in (0.0496, 0.0504, 0.051, 0.0099, 0.2, 0.0004, None)] == [
        "0.0496", "0.0504", "0.051", "0.0099", "0.200", "< 0.001", ""]


def test_table_cells_give_counts_separators_keep_signs_and_leave_missing_values_empty():
    frame = pd.DataFrame({"n": np.array([1234567, -1234], dtype=np.int64), "mae": [np.nan, -0.5],
                          "flag": [np.bool_(True), False], "text": ["a | b", None]})
    assert markdown_table(frame).splitlines() == [
        "| n | mae | flag | text |", "|---|---|---|---|",
        "| 1,234,567 |  | True | a \\| b |",
        "| -1,234 | -0.5 | False |  |"]


def test_numbers_percentages_and_differences_keep_their_sign_and_digits():
    assert (number(-1.005, 1), number(2), number(None), number(np.nan)) == ("-1.0", "2.00", "", "")
    assert (percent(0.1234), percent(-0.05, 0), percent(np.nan)) == ("12.3%", "-5%", "")
    assert difference(1.2, 0.4, 2.0) == "+1.20 [+0.40, +2.00]"
    assert difference(-0.045, -0.07, -0.02, points=True) == "-4.5 [-7.0, -2.0] pts"
    assert (difference(0.0, np.nan, np.nan), difference(np.nan, 0.1, 0.2)) == ("+0.00", "")


def test_the_builder_joins_blocks_with_blank_lines_and_skips_what_is_absent(tmp_path):
    md = Markdown(tmp_path / "reports")
    md.heading("Groups", 3)
    md.bullets([])                                   # nothing to list: no empty block
    md.figure(None, "never drawn")
    md.table(pd.DataFrame({"a": [1]}), caption="cap")
    md.bullets(["x", "y"])
    md.figure(tmp_path / "figures" / "f.png", "F")   # a figure outside the report's folder: a relative link
    assert md.text() == ("### Groups\n\n*cap*\n\n| a |\n|---|\n| 1 |\n\n- x\n- y\n\n"
                         "![F](../figures/f.png)\n\n*F*\n")


def test_pivot_cells_show_value_and_n_and_mark_small_ones():
    values = pd.DataFrame({"white": [1.234, np.nan], "black": [-2.0, 3.5]}, index=pd.Index(["16-30", "61+"], name="band"))
    counts = pd.DataFrame({"white": [1500, 0], "black": [12, 40]}, index=values.index)
    shown = pivot_display(values, counts, min_count=30)
    assert list(shown.columns) == ["band", "white", "black"]
    assert shown.values.tolist() == [["16-30", "1.23 (1,500)", "-2.00 (12, *small*)"], ["61+", "", "3.50 (40)"]]
    bounds = (values - 0.5, values + 0.5)
    shown = pivot_display(values, counts, min_count=30, intervals=bounds)
    assert shown.values.tolist()[0] == ["16-30", "1.23 [0.73, 1.73] (1,500)", "-2.00 [-2.50, -1.50] (12, *small*)"]


def _groups() -> pd.DataFrame:
    rows = [("black*female", 300, False, 9.0), ("white*male", 400, False, 6.0), ("asian*female", 8, True, 20.0)]
    return pd.DataFrame({"attribute": "race*gender", "group": [g for g, *_ in rows], "n": [n for _, n, *_ in rows],
                         "small": [s for *_, s, _ in rows], "mae": [m for *_, m in rows],
                         "mae_ci_low": [m - 1 for *_, m in rows], "mae_ci_high": [m + 1 for *_, m in rows],
                         "rmse": 10.0, "mean_error": [1.5, -0.25, 4.0], "gender_accuracy": np.nan,
                         "gender_accuracy_ci_low": np.nan, "gender_accuracy_ci_high": np.nan})


def _verdict(group, metric, verdict, significant):
    return {"attribute": "race*gender", "group": group, "metric": metric, "difference": 1.2,
            "difference_ci_low": 0.4, "difference_ci_high": 2.0, "verdict": verdict, "significant": significant}


def test_a_group_is_called_worse_only_where_the_adjusted_test_holds_and_small_groups_are_not_judged():
    verdicts = pd.DataFrame([_verdict("black*female", "mae", "above", True),
                             _verdict("white*male", "mae", "above", False),       # raw only: not after adjustment
                             _verdict("asian*female", "mae", "above", True),      # small: shown, not judged
                             _verdict("black*female", "mean_error", "above", True),
                             _verdict("white*male", "mean_error", "below", True)])
    table = groups_display(_groups(), "race*gender", 0.95, verdicts).set_index("group")
    against = "MAE − the rest [95% CI]"
    assert table.loc["black*female", against] == "+1.20 [+0.40, +2.00] worse"
    assert table.loc["white*male", against] == "+1.20 [+0.40, +2.00] n.s."
    assert table.loc["asian*female (small)", against] == "not judged"
    assert table["bias"].tolist() == ["over-estimated", "under-estimated", "not judged"]
    assert table.loc["black*female", "MAE [95% CI]"] == "9.00 [8.00, 10.00]" and table["n"].tolist() == ["300", "400", "8"]
    assert "gender accuracy [95% CI]" not in table.columns           # no accuracy in these rows: no empty column


def test_the_correction_section_names_a_winner_only_where_one_is_better(tmp_path):
    table = pd.DataFrame({"model": ["none", "linear", "forest"], "n_fit": [0, 900, 900], "n_judged": [300] * 3,
                          "mae": [6.0, 5.5, 6.2], "rmse": [8.0, 7.5, 8.1], "mae_change": [np.nan, -0.5, 0.2],
                          "mae_change_ci_low": [np.nan, -0.8, -0.1], "mae_change_ci_high": [np.nan, -0.2, 0.5],
                          "p_adjusted": [np.nan, 0.004, 0.3], "verdict": ["", "better", "n.s."]})
    md = Markdown(tmp_path)
    correction_section(md, table, "Fitted on val.", 0.95)
    text = md.text()
    assert "| none | — | 300 | 6.00 | 8.00 | — |  |  |" in text
    assert "| linear | 900 | 300 | 5.50 | 7.50 | -0.50 [-0.80, -0.20] | 0.004 | better |" in text
    assert ("**1 of 2 models beat no correction** (each after Holm's adjustment over the 2 models); the best, linear, "
            "changes MAE by -0.50 years (adjusted p 0.004).") in text
    md = Markdown(tmp_path)
    correction_section(md, table.drop(columns="p_adjusted"), "Fitted on val.", 0.95)
    assert "(raw intervals: this table carries no adjusted p-values)" in md.text()
    md = Markdown(tmp_path)
    correction_section(md, table.assign(verdict=["", "n.s.", "n.s."]), "Fitted on val.", 0.95)
    assert "No correction model beats the uncorrected predictions" in md.text()
