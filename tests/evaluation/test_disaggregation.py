import time

import numpy as np
import pandas as pd
import pytest

from stages.lib.core.labels import RACES
from stages.lib.evaluation.disaggregation import GROUP_COLUMNS, age_standardised_mae, group_metrics
from stages.lib.evaluation.intervals import Bootstrap
from tests.evaluation.frames import EDGES, TOY, row, table

NO_CI = Bootstrap(resamples=0)


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
