import numpy as np
import pandas as pd
import pytest

from stages.lib.evaluation.disaggregation import disaggregate
from stages.lib.evaluation.group_gaps import GAP_COLUMNS, gaps, omnibus_test
from stages.lib.evaluation.intervals import Bootstrap, proportion_gap
from tests.evaluation.frames import EDGES, TOY, table, two_races

table_of = table

NO_CI = Bootstrap(resamples=0)


def test_gaps_name_worst_and_best_and_leave_small_groups_out():
    result = gaps(disaggregate(TOY, EDGES, NO_CI, min_group_size=2))
    assert list(result.columns) == GAP_COLUMNS
    race = result.query("attribute == 'race' and metric == 'mae'").iloc[0]
    assert (race["worst_group"], race["best_group"]) == ("black", "white")
    assert race["difference"] == pytest.approx(17 / 3 - 3)
    assert race["ratio"] == pytest.approx((17 / 3) / 3)
    assert race["verdict"] == "no interval"                 # no bootstrap, no claim
    accuracy = result.query("attribute == 'race' and metric == 'gender_accuracy'").iloc[0]
    assert (accuracy["worst_group"], accuracy["best_group"]) == ("white", "black")   # lower is worse
    bands = result.query("attribute == 'age_band' and metric == 'mae'").iloc[0]
    assert (bands["worst_group"], bands["best_group"], bands["small_left_out"]) == ("61+", "16-30", "31-45")
    assert bands["groups_compared"] == 2


def test_a_gap_carries_its_own_intervals_of_difference_and_ratio():
    real = gaps(disaggregate(two_races(shift=3), EDGES, Bootstrap(resamples=500), 30))
    mae = real.query("attribute == 'race' and metric == 'mae'").iloc[0]
    assert mae["worst_group"] == "black" and mae["verdict"] == "worse"
    assert 0 < mae["difference_ci_low"] < mae["difference"] < mae["difference_ci_high"]
    assert 1 < mae["ratio_ci_low"] < mae["ratio"] < mae["ratio_ci_high"]
    same = gaps(disaggregate(two_races(shift=0), EDGES, Bootstrap(resamples=500), 30))
    mae = same.query("attribute == 'race' and metric == 'mae'").iloc[0]
    assert mae["difference_ci_low"] < 0 < mae["difference_ci_high"] and mae["verdict"] == "n.s."
    assert mae["ratio_ci_low"] < 1 < mae["ratio_ci_high"]


def test_an_accuracy_gap_to_a_small_perfect_group_is_not_called_real():
    # 20 faces all right against 1,000 at 90%: a bootstrap of the 20 never moves, so its difference's
    # interval would be the other group's alone and exclude zero; Newcombe's does not.
    rows = [(30, 30.0, "female", "asian", "female")] * 20
    rows += [(30, 30.0, "female", "white", "female")] * 900 + [(30, 30.0, "female", "white", "male")] * 100
    gap = gaps(disaggregate(table(rows), EDGES, Bootstrap(resamples=300), 10))
    accuracy = gap.query("attribute == 'race' and metric == 'gender_accuracy'").iloc[0]
    assert (accuracy["worst_group"], accuracy["best_group"]) == ("white", "asian")
    assert accuracy["difference"] == pytest.approx(-0.1)
    assert accuracy["difference_ci_low"] < -0.1 and accuracy["difference_ci_high"] > 0
    assert accuracy["verdict"] == "n.s."
    assert proportion_gap(900, 1000, 20, 20, confidence=0.95).as_dict() == pytest.approx(
        accuracy[["difference", "difference_ci_low", "difference_ci_high", "ratio", "ratio_ci_low",
                  "ratio_ci_high"]].astype(float).to_dict())


def test_a_gap_is_judged_on_its_own_interval_adjusted_over_every_pair():
    """Worst − best of k groups is the largest of k (k − 1) / 2 pairwise differences: its adjusted interval
    is Bonferroni's over them, wider than the raw one, and the verdict follows it alone."""
    frame = two_races(shift=3)
    frame = pd.concat([frame, two_races(shift=1.5, seed=4).query("race == 'black'").assign(race="asian")])
    table = gaps(disaggregate(frame, EDGES, Bootstrap(resamples=400), 30)).set_index(["attribute", "metric"])
    mae = table.loc[("race", "mae")]
    assert mae["tests"] == 3 and mae["adjusted_confidence"] == pytest.approx(1 - 0.05 / 3)
    assert mae["difference_adjusted_ci_low"] < mae["difference_ci_low"] < mae["difference"]
    assert mae["difference_adjusted_ci_high"] > mae["difference_ci_high"]
    assert mae["verdict"] == "worse" and mae["significant"]
    judged = table[table["verdict"] != "no interval"]
    holds_zero = (judged["difference_adjusted_ci_low"] <= 0) & (judged["difference_adjusted_ci_high"] >= 0)
    assert ((judged["verdict"] == "n.s.") == holds_zero).all()


def test_a_clear_gap_stays_a_gap_whatever_the_omnibus_test_says():
    """Ten race × gender groups, one of them 18 points worse: the gap's own adjusted interval excludes 0,
    and is called worse, even where the test of all groups equal were weak."""
    rng = np.random.default_rng(5)
    rows = []
    for race in ("white", "black", "asian", "indian", "others"):
        for gender in ("male", "female"):
            rate = 0.78 if (race, gender) == ("black", "female") else 0.96
            rows += [(30, 30.0, gender, race, gender if rng.random() < rate else
                      ("male" if gender == "female" else "female")) for _ in range(150)]
    table = gaps(disaggregate(table_of(rows), EDGES, Bootstrap(resamples=200), 30), metrics=["gender_accuracy"])
    gap = table.set_index("attribute").loc["race*gender"]
    assert gap["worst_group"] == "black*female" and gap["tests"] == 45
    assert gap["difference_adjusted_ci_high"] < 0 and gap["verdict"] == "worse"
    assert gap["omnibus_df"] == 9 and gap["p_all_equal"] < 0.01 and gap["omnibus_significant"]


def test_the_omnibus_test_holds_its_level_and_counts_clusters():
    rng = np.random.default_rng(0)
    p_values = []
    for seed in range(30):
        frame = two_races(shift=0, n=200, seed=seed)
        p_values.append(omnibus_test(disaggregate(frame, EDGES, Bootstrap(resamples=200, seed=seed), 30, attributes=["race"]),
                                     "race", ["white", "black"], "mae")[2])
    assert np.mean(np.array(p_values) < 0.05) <= 0.15
    # 40 people with 10 photos each, a person-level error: as clusters the evidence is 40 people, not 400 faces
    people = np.repeat(np.arange(80), 10)
    errors = rng.normal(0, 6, 80)[people] + np.where(people < 40, 1.5, 0)
    frame = table_of([(40, 40 + e, "male", "white" if p < 40 else "black", None) for p, e in zip(people, errors)])
    faces = omnibus_test(disaggregate(frame, EDGES, Bootstrap(resamples=300), 30), "race", ["white", "black"], "mae")
    clustered = omnibus_test(disaggregate(frame.assign(cluster=[f"p{p}" for p in people]), EDGES,
                                          Bootstrap(resamples=300), 30), "race", ["white", "black"], "mae")
    assert clustered[0] < faces[0] / 3 and clustered[2] > faces[2]
