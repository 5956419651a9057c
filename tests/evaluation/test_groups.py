import time

import numpy as np
import pandas as pd
import pytest

from stages.lib.core.labels import RACES
from stages.lib.evaluation.groups import (
    GAP_COLUMNS, GROUP_COLUMNS, SIGNIFICANCE_COLUMNS, age_standardised_mae, disaggregate, evaluate, gaps, group_metrics,
    in_source_band, significance,
)
from stages.lib.evaluation.intervals import Bootstrap, proportion_gap
from tests.evaluation.frames import EDGES, row, table

NO_CI = Bootstrap(resamples=0)

TOY = table([
    # age, predicted, gender, race, predicted gender
    (20, 22.0, "male", "white", "male"),      # error +2
    (25, 21.0, "female", "white", "male"),    # error -4, gender wrong
    (40, 46.0, "female", "black", "female"),  # error +6
    (70, 60.0, "male", "black", "male"),      # error -10
    (65, 64.0, "female", "black", "male"),    # error -1, gender wrong
])


def test_overall_metrics_match_hand_computation():
    groups = group_metrics(TOY, EDGES, NO_CI, min_group_size=3)
    overall = row(groups, "all", "all")
    assert overall["n"] == 5
    assert overall["mae"] == pytest.approx((2 + 4 + 6 + 10 + 1) / 5)
    assert overall["rmse"] == pytest.approx(np.sqrt((4 + 16 + 36 + 100 + 1) / 5))
    assert overall["mean_error"] == pytest.approx((2 - 4 + 6 - 10 - 1) / 5)
    assert overall["gender_accuracy"] == pytest.approx(3 / 5)
    assert np.isnan(overall["mae_ci_low"]) and not overall["small"]


def test_group_metrics_by_attribute_and_intersection():
    groups = group_metrics(TOY, EDGES, NO_CI, min_group_size=3)
    black = row(groups, "race", "black")
    assert (black["n"], black["mae"], black["mean_error"]) == (3, pytest.approx(17 / 3), pytest.approx(-5 / 3))
    assert black["gender_accuracy"] == pytest.approx(2 / 3)
    white_female = row(groups, "race*gender", "white*female")
    assert white_female["n"] == 1 and white_female["mae"] == 4 and white_female["gender_accuracy"] == 0
    assert white_female["small"]                         # flagged, not hidden
    old = row(groups, "age_band", "61+")
    assert old["n"] == 2 and old["rmse"] == pytest.approx(np.sqrt((100 + 1) / 2))
    assert row(groups, "gender*age_band", "female*16-30")["mae"] == 4
    assert row(groups, "race*age_band", "black*31-45")["mean_error"] == 6


def test_groups_table_follows_the_contract():
    groups = group_metrics(TOY, EDGES, Bootstrap(resamples=50), min_group_size=2)
    assert list(groups.columns[:len(GROUP_COLUMNS)]) == GROUP_COLUMNS
    assert set(groups["attribute"]) == {"all", "race", "gender", "age_band", "race*gender", "race*age_band",
                                        "gender*age_band"}
    assert list(groups.loc[groups["attribute"] == "race", "group"]) == ["white", "black"]     # vocabulary order
    assert list(groups.loc[groups["attribute"] == "gender", "group"]) == ["male", "female"]
    assert list(groups.loc[groups["attribute"] == "age_band", "group"]) == ["16-30", "31-45", "61+"]
    assert (groups["group"] == groups["group"].str.lower()).all()


def test_breakdowns_without_race_or_gender_predictions_are_skipped_not_faked():
    frame = TOY.assign(race=None, gender_pred=None)
    groups = group_metrics(frame, EDGES, NO_CI)
    assert not groups["attribute"].str.contains("race").any()
    assert groups["gender_accuracy"].isna().all()


def test_ages_below_the_first_edge_count_overall_but_not_in_bands():
    frame = table([(5, 7.0, "male", "white", None), (30, 30.0, "male", "white", None)])
    groups = group_metrics(frame, [16, 31], NO_CI)
    assert row(groups, "all", "all")["n"] == 2
    assert groups.loc[groups["attribute"] == "age_band", "n"].sum() == 1


def test_a_small_group_that_is_all_right_is_not_certain():
    # 20 faces, every gender right: a percentile bootstrap says 100% [100%, 100%]; the interval must not.
    frame = table([(30 + i, 30.0 + i, "female", "asian", "female") for i in range(20)])
    asian = row(group_metrics(frame, EDGES, Bootstrap(resamples=500), 30), "race", "asian")
    assert asian["gender_accuracy"] == 1.0 and asian["gender_accuracy_ci_high"] == 1.0
    assert asian["gender_accuracy_ci_low"] == pytest.approx(0.839, abs=0.001)


def test_bootstrap_is_seeded_per_group():
    first = group_metrics(TOY, EDGES, Bootstrap(resamples=200, seed=7), 1)
    again = group_metrics(TOY, EDGES, Bootstrap(resamples=200, seed=7), 1)
    other_seed = group_metrics(TOY, EDGES, Bootstrap(resamples=200, seed=8), 1)
    pd.testing.assert_frame_equal(first, again)
    assert not first["mae_ci_low"].equals(other_seed["mae_ci_low"])
    # A group's interval does not depend on which other rows exist.
    fewer = group_metrics(TOY[TOY["race"] == "black"], EDGES, Bootstrap(resamples=200, seed=7), 1)
    assert row(fewer, "race", "black")["mae_ci_low"] == row(first, "race", "black")["mae_ci_low"]


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


def two_races(shift: float, n: int = 300, seed: int = 3) -> pd.DataFrame:
    """n white faces with errors ~ N(0, 2), n black ones with errors ~ N(shift, 2)."""
    rng = np.random.default_rng(seed)
    rows = [(40, 40 + rng.normal(0, 2), "male", "white", None) for _ in range(n)]
    rows += [(40, 40 + shift + rng.normal(0, 2), "male", "black", None) for _ in range(n)]
    return table(rows)


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


def test_evaluate_bundles_everything_and_refuses_an_empty_table():
    evaluation = evaluate(TOY, EDGES, Bootstrap(resamples=20), 2)
    assert evaluation.overall["n"] == 5 and "gaps" in evaluation.overall
    assert {"predicted_vs_actual", "signed_error_by_predicted_band", "error_by_age_race",
            "women_gender_accuracy"} <= set(evaluation.tables)
    with pytest.raises(ValueError, match="no predictions"):
        evaluate(TOY.iloc[:0], EDGES)


def test_bootstrap_of_twenty_thousand_faces_takes_seconds():
    rng = np.random.default_rng(0)
    n = 20_000
    frame = table(list(zip(rng.integers(16, 90, n), rng.normal(40, 10, n), rng.choice(["male", "female"], n),
                           rng.choice(RACES, n), rng.choice(["male", "female"], n))))
    start = time.perf_counter()
    groups = group_metrics(frame, EDGES, Bootstrap(resamples=1000), 30)
    elapsed = time.perf_counter() - start
    assert len(groups) >= 40
    assert elapsed < 30, f"1000 resamples over {n} faces and {len(groups)} groups took {elapsed:.1f} s"


def test_age_standardised_mae_removes_the_age_mix():
    # Both races have MAE 2 when young and 10 when old, but black faces are mostly old: the plain MAE
    # differs, the MAE at the overall age mix does not.
    rows = [(20, 22.0, "male", "white", None)] * 9 + [(70, 60.0, "male", "white", None)] * 1
    rows += [(20, 22.0, "male", "black", None)] * 1 + [(70, 60.0, "male", "black", None)] * 9
    groups = group_metrics(table(rows), EDGES, NO_CI, 1)
    assert row(groups, "race", "white")["mae"] == pytest.approx(2.8)
    assert row(groups, "race", "black")["mae"] == pytest.approx(9.2)
    standardised = age_standardised_mae(groups, "race")
    assert standardised["white"] == pytest.approx(6.0) and standardised["black"] == pytest.approx(6.0)
    missing_band = group_metrics(table(rows[:10] + rows[10:11]), EDGES, NO_CI, 1)
    assert np.isnan(age_standardised_mae(missing_band, "race")["black"])


def test_band_only_ages_are_judged_by_band_accuracy():
    hits = in_source_band([29.9, 30.0, 71.2, 5.0, 40.0], ["20-29", "20-29", "more than 70", None, "bad"])
    np.testing.assert_array_equal(hits[:3], [1.0, 0.0, 1.0])
    assert np.isnan(hits[3:]).all()  # no band: exact-age rows are not judged this way

    frame = TOY.assign(age_band_source=["20-29", "20-29", None, "more than 70", "60-69"])
    evaluation = evaluate(frame, EDGES, NO_CI)
    bands = evaluation.tables["age_band_accuracy"]
    assert row(bands, "all", "all")["n"] == 4 and row(bands, "all", "all")["age_band_accuracy"] == 0.75
    assert row(bands, "gender", "female")["age_band_accuracy"] == 1.0  # 21 in 20-29, 64 in 60-69
    assert row(bands, "race", "black")["age_band_accuracy"] == 0.5     # 60 is not more than 70
    assert evaluation.overall["age_band_accuracy"] == 0.75 and evaluation.overall["n_age_band"] == 4
    assert "age_band_accuracy" not in evaluate(TOY, EDGES, NO_CI).tables


