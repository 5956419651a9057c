"""The report's "Published models side by side" (reporting/published_models.py): each model's sentence
from the paired intervals of its differences with the others, the tables, and the Gender Shades figure,
on small hand-made fixtures (the whole section on audited fakes: tests/evaluation/test_published_audit.py)."""

import json

import numpy as np
import pandas as pd

from stages.lib.evaluation.intervals import Bootstrap
from stages.lib.reporting.published_models import (AuditedModel, adjusted_pairs, age_figure, compared_phrase, gender_shades_figure,
                                                   in_sample_flags,
                                                   model_sentence, paired_summary, pairs_table, race_gender_accuracy)


def test_a_difference_is_named_only_where_its_interval_excludes_zero():
    assert compared_phrase("gender_accuracy", "b", 0.05, (0.01, 0.09)).startswith("gender accuracy higher than b's by 5.0 pts")
    assert "no difference" in compared_phrase("gender_accuracy", "b", 0.05, (-0.01, 0.09))
    assert compared_phrase("accuracy_gap", "b", -0.1, (-0.2, -0.05)).startswith("race × gender accuracy gap narrower")


def _values(model: str, accuracy: float, worst: float, gap: float) -> pd.DataFrame:
    """A model's worst_groups rows on utkface: gender accuracy, its worst group's and the gap, with intervals."""
    return pd.DataFrame({"dataset": "utkface", "experiment": model,
                         "statistic": ["gender_accuracy", "worst_group_accuracy", "accuracy_gap"],
                         "value": [accuracy, worst, gap], "ci_low": [accuracy - 0.01, worst - 0.05, gap - 0.05],
                         "ci_high": [accuracy + 0.01, worst + 0.05, gap + 0.05],
                         "worst_group": [None, "black*female", "black*female"], "best_group": [None, None, "white*male"]})


def _model(name: str) -> AuditedModel:
    return AuditedModel(name, {"test_sets": {"utkface": "no"}}, pd.DataFrame())


PAIRS = pd.DataFrame({"model": ["b", "b"], "other": ["a", "a"], "statistic": ["gender_accuracy", "accuracy_gap"],
                      "difference": [0.05, 0.004], "ci_low": [0.01, -0.03], "ci_high": [0.09, 0.04]})


def test_each_models_sentence_carries_its_intervals_and_each_comparison_seen_from_its_side():
    values = pd.concat([_values("a", 0.90, 0.7, 0.25), _values("b", 0.95, 0.8, 0.15)])
    a = model_sentence(_model("a"), "utkface", values, PAIRS)
    assert a.startswith("**a** on utkface (in-sample: no): gender accuracy 90.0% [89.0%, 91.0%]; its worst race × "
                        "gender group, black*female, at 70.0% [65.0%, 75.0%], 25.0 [20.0, 30.0] pts below white*male.")
    # b − a stored: a's side is a − b, its interval negated and swapped
    assert "gender accuracy lower than b's by 5.0 pts [-9.0, -1.0]" in a
    assert "race × gender accuracy gap: no difference from b's shown (-0.4 pts, [-4.0, +3.0])" in a
    b = model_sentence(_model("b"), "utkface", values, PAIRS)
    assert "gender accuracy higher than a's by 5.0 pts [+1.0, +9.0]" in b
    alone = model_sentence(_model("a"), "utkface", values, PAIRS.iloc[:0])
    assert "On the same faces" not in alone and alone.endswith("below white*male.")


def test_a_difference_without_an_interval_is_never_named_and_rounding_gives_no_negative_zero():
    assert compared_phrase("mae", "b", 0.3, (np.nan, np.nan)) == "MAE: no difference from b's shown (+0.3 years, (no interval))"
    assert compared_phrase("mae", "b", -0.02, (-0.04, 0.01)) == "MAE: no difference from b's shown (+0.0 years, [+0.0, +0.0])"


def test_the_pairs_table_has_a_row_per_pair_and_blank_cells_for_what_was_not_compared():
    pairs = pd.concat([PAIRS, pd.DataFrame({"model": ["c"], "other": ["a"], "statistic": ["mae"], "difference": [-1.5],
                                            "ci_low": [-2.0], "ci_high": [-1.0]})])
    table = pairs_table(pairs)
    assert table.to_dict("records") == [
        {"models": "b − a", "gender accuracy": "+5.0 [+1.0, +9.0] pts", "race × gender accuracy gap": "+0.4 [-3.0, +4.0] pts",
         "MAE": ""},
        {"models": "c − a", "gender accuracy": "", "race × gender accuracy gap": "", "MAE": "-1.50 [-2.00, -1.00]"}]


def _predictions(wrong_black_women: int, n: int = 12, dataset: str = "utkface") -> pd.DataFrame:
    rows = []
    for race in ("white", "black"):
        for gender in ("male", "female"):
            for i in range(n):
                flipped = race == "black" and gender == "female" and i < wrong_black_women
                rows.append({"id": f"{race}-{gender}-{i}", "dataset": dataset, "split": "test", "age": 30.0,
                             "age_pred": 30.0 + (i % 3), "race": race, "gender": gender,
                             "gender_pred": ("male" if flipped else gender)})
    return pd.DataFrame(rows)


def test_race_gender_accuracy_counts_only_faces_with_a_gender_prediction():
    frame = _predictions(3)
    frame.loc[frame["id"] == "white-male-0", "gender_pred"] = None
    table = race_gender_accuracy(frame).set_index(["race", "gender"])
    assert table.loc[("black", "female"), "accuracy"] == 9 / 12 and table.loc[("white", "male"), "n"] == 11


def test_paired_summary_compares_each_pair_once_on_the_same_faces():
    models = [AuditedModel("a", {}, _predictions(0)), AuditedModel("b", {}, _predictions(6)),
              AuditedModel("other_set", {}, _predictions(0, dataset="fairface"))]
    values, pairs = paired_summary(models, "utkface", Bootstrap(resamples=50, seed=1), 10)
    assert set(values["experiment"]) == {"a", "b"}
    assert set(zip(pairs["model"], pairs["other"])) == {("b", "a")}
    accuracy = pairs.set_index("statistic").loc["gender_accuracy"]
    assert accuracy["difference"] == -6 / 48 and accuracy["ci_high"] < 0
    assert paired_summary(models, "imdb", Bootstrap(resamples=50), 10)[0].empty


def test_the_age_figure_is_never_an_mae_for_a_band_model_or_a_set_labelled_with_bands(tmp_path):
    folder = tmp_path / "evaluation" / "utkface"
    folder.mkdir(parents=True)
    figures = {"n": 10, "mae": 6.0, "mae_ci_low": 5.0, "mae_ci_high": 7.0, "n_age_band": 0,
               "band_accuracy": 0.5, "band_accuracy_ci_low": 0.4, "band_accuracy_ci_high": 0.6,
               "one_off_accuracy": 0.9, "one_off_accuracy_ci_low": 0.8, "one_off_accuracy_ci_high": 0.95}
    (folder / "metrics.json").write_text(json.dumps(figures))
    years = AuditedModel("y", {}, pd.DataFrame())
    assert age_figure(years, "utkface", tmp_path) == "MAE 6.00 [5.00, 7.00]"
    bands = AuditedModel("b", {"age_bands": ["0-2", "4-6"]}, pd.DataFrame())
    assert age_figure(bands, "utkface", tmp_path) == "band acc. 50.0% [40.0%, 60.0%]; one-off 90.0% [80.0%, 95.0%]"
    (folder / "metrics.json").write_text(json.dumps({**figures, "n_age_band": 10, "age_band_accuracy": 0.4}))
    assert age_figure(years, "utkface", tmp_path) == "band acc. 40.0% (the set's own bands)"


def test_the_gender_shades_panels_grey_small_cells_and_leave_absent_ones_blank():
    table = pd.DataFrame({"race": ["white", "black"], "gender": ["female", "female"], "accuracy": [0.99, 0.6],
                          "n": [300, 12]})
    figure = gender_shades_figure({("utkface", "a"): table, ("utkface", "b"): table.iloc[:1]}, 30)
    first, second = figure.axes[:2]
    assert (first.get_title(), second.get_title()) == ("a\non utkface", "b\non utkface")
    colours = {(patch.get_x() + 0.5, patch.get_y() + 0.5): patch.get_facecolor() for patch in first.patches}
    assert set(colours) == {(1.0, 0.0), (1.0, 1.0)}                    # white, black women only: the rest blank
    assert colours[(1.0, 1.0)] == (0.85, 0.85, 0.85, 1.0) and colours[(1.0, 0.0)] != (0.85, 0.85, 0.85, 1.0)
    assert sorted(t.get_text() for t in first.texts) == ["60.0%\nn=12", "99.0%\nn=300"]
    assert len(second.patches) == 1


def test_pairs_are_adjusted_per_statistic_and_a_difference_that_does_not_survive_is_not_called():
    pairs = pd.DataFrame({"model": ["b", "c", "c", "b"], "other": ["a", "a", "b", "a"],
                          "statistic": ["gender_accuracy"] * 3 + ["mae"], "difference": [0.1, 0.05, -0.05, 1.0],
                          "ci_low": [0.05, 0.01, -0.09, 0.5], "ci_high": [0.15, 0.09, -0.01, 1.5],
                          "p_value": [0.001, 0.02, 0.03, 0.03]})
    adjusted = adjusted_pairs(pairs, 0.05).set_index(["statistic", "model", "other"])
    # Holm over the three gender pairs: 0.003, 0.04, 0.04; the one MAE pair is a family of its own
    assert np.allclose(adjusted.loc["gender_accuracy", "p_adjusted"], [0.003, 0.04, 0.04])
    assert (adjusted.loc["gender_accuracy", "tests"] == 3).all() and adjusted.loc[("mae", "b", "a"), "tests"] == 1
    assert adjusted.loc[("mae", "b", "a"), "p_adjusted"] == 0.03 and adjusted["significant"].all()
    stricter = adjusted_pairs(pairs.assign(p_value=[0.001, 0.03, 0.04, 0.03]), 0.05).set_index(["model", "other"])
    assert np.allclose(stricter["p_adjusted"], [0.003, 0.06, 0.06, 0.03])    # 0.03 x 2, then Holm's running max
    assert stricter["significant"].tolist() == [True, False, False, True]
    phrase = compared_phrase("gender_accuracy", "b", -0.05, (-0.09, -0.01), adjusted=(False, 0.08, 3))
    assert phrase == ("gender accuracy: no difference from b's shown after adjusting for the 3 pairs compared "
                      "(-5.0 pts, raw [-9.0, -1.0], adjusted p 0.080)")
    assert compared_phrase("gender_accuracy", "b", -0.05, (-0.09, -0.01), adjusted=(True, 0.04, 3)) == (
        "gender accuracy lower than b's by 5.0 pts (raw [-9.0, -1.0], adjusted p 0.040)")


def test_an_in_sample_model_is_flagged_wherever_it_is_ranked():
    values = pd.concat([_values("a", 0.90, 0.7, 0.25), _values("b", 0.95, 0.8, 0.15)])
    partly = AuditedModel("b", {"test_sets": {"utkface": "partly"}}, pd.DataFrame())
    flags = in_sample_flags([_model("a"), partly], "utkface")
    assert flags == {"b": " (in-sample: partly)"} and in_sample_flags([_model("a")], "utkface") == {}
    a = model_sentence(_model("a"), "utkface", values, PAIRS, flags=flags)
    assert "gender accuracy lower than b (in-sample: partly)'s by 5.0 pts" in a
    assert "(b's figures on utkface are in-sample and flatter it: the comparisons with it do not rank fairly)" in a
    assert pairs_table(PAIRS, flags)["models"].tolist() == ["b (in-sample: partly) − a"]


def _pair(statistic, difference, low, high, significant):
    return {"model": "wide_resnet_imdb", "other": "faceres", "statistic": statistic, "difference": difference,
            "ci_low": low, "ci_high": high, "p_value": 0.01, "adjustment": "holm", "p_adjusted": 0.02,
            "significant": significant, "tests": 3}


def test_data_or_design_says_only_what_the_adjusted_paired_intervals_support():
    from stages.lib.reporting.published_models import data_or_design

    same = pd.DataFrame([_pair("gender_accuracy", -0.03, -0.05, -0.01, True),
                         _pair("accuracy_gap", 0.01, -0.02, 0.04, False)])
    text = data_or_design(same, "utkface")
    assert text.startswith("**Data or design?** (utkface) faceres and wide_resnet_imdb were both trained")
    assert "gender accuracy higher than wide_resnet_imdb's by 3.0 pts (raw [+1.0, +5.0], adjusted p" in text   # negated pair
    assert "gaps are not shown to differ" in text and "not proof" in text
    wider = pd.DataFrame([_pair("accuracy_gap", -0.06, -0.09, -0.03, True)])
    assert "gaps differ after adjustment" in data_or_design(wider, "fairface")
    other = pd.DataFrame([{**_pair("accuracy_gap", 0.1, 0.05, 0.15, True), "model": "face_api"}])
    assert data_or_design(other, "utkface") == ""
