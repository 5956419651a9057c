"""The side-by-side report tables: backbones per group with CIs, gaps per backbone, leakage per split."""


from stages.lib.reporting.comparisons import leakage_table, side_by_side_gaps, side_by_side_groups, split_comparison
from stages.lib.evaluation.groups import evaluate
from stages.lib.evaluation.intervals import Bootstrap
from tests.evaluation.frames import EDGES, TOY

BOOT = Bootstrap(resamples=50)


def test_groups_and_gaps_side_by_side():
    worse = TOY.assign(age_pred=TOY["age_pred"] + [0, 0, 10, 10, 10])  # worse on black faces only
    evaluations = {"a": evaluate(TOY, EDGES, BOOT), "b": evaluate(worse, EDGES, BOOT)}
    groups = side_by_side_groups(evaluations)
    assert list(groups.columns) == ["attribute", "group", "n", "a MAE", "a gender acc.", "b MAE", "b gender acc."]
    black = groups.query("attribute == 'race' and group == 'black'").iloc[0]
    assert black["n"] == 3 and black["a MAE"].startswith("5.67") and black["b MAE"].startswith("8.33")
    gaps = side_by_side_gaps(evaluations).set_index(["attribute", "model"])
    race = evaluations["a"].gaps.query("attribute == 'race' and metric == 'mae'").iloc[0]
    assert gaps.loc[("race", "a"), "MAE gap"] == (     # worst − best, its raw interval and the verdict's own
        f"+2.67 [{race['difference_ci_low']:+.2f}, {race['difference_ci_high']:+.2f}] raw, "
        f"[{race['difference_adjusted_ci_low']:+.2f}, {race['difference_adjusted_ci_high']:+.2f}] adjusted: "
        f"black vs white ({race['verdict']})")
    assert gaps.loc[("race", "b"), "MAE gap"].startswith("+5.33 [")
    assert gaps.loc[("gender", "a"), "gender acc. gap"].startswith("-66.7 [")
    assert "pts: female vs male" in gaps.loc[("gender", "a"), "gender acc. gap"]
    assert groups["group"].tolist()[0] == "all"  # overall first, then the groups in evaluation order


def test_band_accuracy_joins_the_side_by_side_table():
    banded = TOY.assign(age_band_source=["20-29", "20-29", None, "more than 70", "60-69"])
    groups = side_by_side_groups({"dlib": evaluate(banded, EDGES, BOOT)})
    overall = groups.query("attribute == 'all'").iloc[0]
    assert overall["dlib age-band acc."].startswith("75.0%")


def test_leakage_and_split_tables():
    figures = {"test_faces": 300, "test_faces_with_near_train": 60, "share_with_near_train": 0.2,
               "near_train_same_age": 31, "median_nearest_train_distance": 0.52}
    none = {**figures, "test_faces_with_near_train": 0, "share_with_near_train": 0.0, "near_train_same_age": 0}
    table = leakage_table({"utkface": {"naive": figures, "grouped": none, "clusters": 250, "largest_cluster": 4}})
    assert table["with a look-alike in train"].tolist() == ["60 (20.0%)", "0 (0.0%)"]
    assert table["clusters (largest; crowded ones re-split)"].tolist() == ["250 (4; 0)"] * 2
    evaluation = evaluate(TOY, EDGES, BOOT)
    both = split_comparison({"toy": evaluation}, {"toy": evaluation, "other": evaluation})
    assert both["split"].tolist() == ["grouped", "naive (the study's)"] and set(both["dataset"]) == {"toy"}
