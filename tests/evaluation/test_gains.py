"""gains.py: what each training change buys (R14), paired on the same faces."""

import numpy as np
import pandas as pd
import pytest

from stages.lib.core.params import Experiment
from stages.lib.evaluation.gains import GAIN_COLUMNS, paired_absolute_errors, training_gains, training_steps
from stages.lib.evaluation.intervals import Bootstrap


def test_training_steps_split_r14_into_retraining_and_rebalancing():
    experiments = {"published": Experiment(init="published", protocol="none"), "retrained": Experiment(init="backbone"),
                   "oversample_x2": Experiment(init="backbone", oversample=[{"min_age": 60, "factor": 2}]),
                   "reweight": Experiment(init="backbone", reweight="inverse_band_frequency"),
                   "naive_split": Experiment(init="backbone", split="naive")}
    assert training_steps(experiments) == [("retraining", "published", "retrained"),
                                           ("rebalancing", "retrained", "oversample_x2"),
                                           ("rebalancing", "retrained", "reweight")]
    assert training_steps({"published": Experiment(init="published", protocol="none")}) == []


def test_retraining_gets_the_cut_it_made_and_rebalancing_only_its_own():
    # Published MAE ~10, retrained ~7.6 (a 24% cut, the study's), oversampled = retrained give or take
    # noise: the whole cut belongs to retraining, none to rebalancing.
    rng = np.random.default_rng(0)
    n = 2000
    faces = pd.DataFrame({"id": [f"f{i}" for i in range(n)], "age": rng.integers(16, 90, n)})
    error = rng.normal(0, 1, n)
    predictions = {
        "published": faces.assign(age_pred=faces["age"] + 12.5 * error),
        "retrained": faces.assign(age_pred=faces["age"] + 9.5 * error),
        "oversample_x2": faces.assign(age_pred=faces["age"] + 9.5 * error + rng.normal(0, 0.3, n)),
    }
    predictions["oversample_x2"] = predictions["oversample_x2"].iloc[::-1]          # matched by id, not by order
    steps = [("retraining", "published", "retrained"), ("rebalancing", "retrained", "oversample_x2"),
             ("rebalancing", "retrained", "absent")]
    gains = training_gains(predictions, steps, Bootstrap(resamples=500)).set_index("after")
    assert list(gains.index) == ["retrained", "oversample_x2"]
    retraining, rebalancing = gains.loc["retrained"], gains.loc["oversample_x2"]
    assert retraining["cut_share"] == pytest.approx(0.24, abs=0.005) and retraining["verdict"] == "better"
    assert retraining["change_ci_high"] < 0 and retraining["cut_share_ci_low"] > 0.2
    assert rebalancing["n"] == n and abs(rebalancing["cut_share"]) < 0.01
    assert rebalancing["change_ci_low"] < 0 < rebalancing["change_ci_high"]
    assert rebalancing["verdict"] == "no clear difference"
    # The old R14 line compared oversample_x2 with published directly and credited it with the whole cut.
    direct = training_gains(predictions, [("both", "published", "oversample_x2")], Bootstrap(resamples=200))
    assert direct.loc[0, "cut_share"] == pytest.approx(0.24, abs=0.01)
    other_faces = {**predictions, "retrained": predictions["retrained"].assign(age=lambda t: t["age"] + 1)}
    with pytest.raises(ValueError, match="not predictions on the same faces"):
        training_gains(other_faces, steps, Bootstrap(resamples=0))


def faces(ids, ages, errors) -> pd.DataFrame:
    return pd.DataFrame({"id": ids, "age": ages, "age_pred": np.asarray(ages, dtype=float) + np.asarray(errors)})


def test_paired_absolute_errors_match_faces_by_id_and_keep_only_shared_ones():
    before = faces(["a", "b", "c"], [20, 30, 40], [-2.0, 3.0, 5.0])
    after = faces(["d", "c", "b"], [50, 40, 30], [1.0, -1.0, 0.5])
    errors_before, errors_after = paired_absolute_errors(before, after)
    assert sorted(zip(errors_before, errors_after)) == [(3.0, 0.5), (5.0, 1.0)]


def test_a_model_that_halves_every_error_cuts_half_the_mae_with_a_point_ratio():
    ids, ages = ["a", "b", "c", "d"], [20, 30, 40, 50]
    predictions = {"before": faces(ids, ages, [2.0, -4.0, 6.0, -8.0]), "after": faces(ids, ages, [1.0, -2.0, 3.0, -4.0])}
    gains = training_gains(predictions, [("retraining", "before", "after")], Bootstrap(resamples=200))
    row = gains.iloc[0]
    assert list(gains.columns) == GAIN_COLUMNS
    assert (row["n"], row["mae_before"], row["mae_after"], row["change"]) == (4, 5.0, 2.5, -2.5)
    assert row["cut_share"] == pytest.approx(0.5)
    assert (row["cut_share_ci_low"], row["cut_share_ci_high"]) == pytest.approx((0.5, 0.5))   # paired: every draw halves
    assert -4 <= row["change_ci_low"] <= row["change_ci_high"] <= -1 and row["verdict"] == "better"
    worse = training_gains({"before": predictions["after"], "after": predictions["before"]},
                           [("rebalancing", "before", "after")], Bootstrap(resamples=200)).iloc[0]
    assert worse["change"] == 2.5 and worse["cut_share"] == pytest.approx(-1.0) and worse["verdict"] == "worse"
    no_interval = training_gains(predictions, [("retraining", "before", "after")], Bootstrap(resamples=0)).iloc[0]
    assert no_interval["change"] == -2.5 and no_interval["verdict"] == "no interval"


def test_a_step_without_shared_faces_is_left_out():
    predictions = {"before": faces(["a"], [20], [1.0]), "after": faces(["b"], [20], [1.0])}
    gains = training_gains(predictions, [("retraining", "before", "after")], Bootstrap(resamples=10))
    assert gains.empty and list(gains.columns) == GAIN_COLUMNS


def test_rebalancing_steps_need_the_plain_model_trained_the_same_way():
    experiments = {"retrained": Experiment(init="backbone"),
                   "random_reweight": Experiment(init="random", reweight="inverse_band_frequency"),
                   "naive_oversample": Experiment(init="backbone", split="naive", oversample=[{"min_age": 60, "factor": 2}]),
                   "dro": Experiment(init="backbone", mitigation={"method": "group_dro", "groups": ["race"]}),
                   "reweight": Experiment(init="backbone", reweight="inverse_band_frequency")}
    assert training_steps(experiments) == [("rebalancing", "retrained", "reweight")]    # no published: no retraining
    assert training_steps({"naive": Experiment(init="backbone", split="naive"), **experiments})[0][1] == "retrained"


def test_a_change_is_better_or_worse_only_if_it_survives_holm_over_the_changes_credited():
    from stages.lib.evaluation.gains import adjusted_verdicts
    from stages.lib.evaluation.intervals import paired_p_value
    rows = pd.DataFrame({"step": ["retraining", "rebalancing", "rebalancing"], "side": ["below", "above", "below"],
                         "p_value": [0.001, 0.03, 0.2]})
    for column in set(GAIN_COLUMNS) - set(rows) - {"p_adjusted", "verdict"}:
        rows[column] = 0.0
    judged = adjusted_verdicts(rows, 0.05)
    assert judged["p_adjusted"].round(3).tolist() == [0.003, 0.06, 0.2]
    # the rebalancing's interval lies above 0, but 0.03 does not survive the three changes credited
    assert judged["verdict"].tolist() == ["better", "no clear difference", "no clear difference"]
    assert paired_p_value(np.array([1.0, 1.0, 1.0])) == 0.0 and paired_p_value(np.zeros(4)) == 1.0
    assert paired_p_value(np.array([0.5, -0.5, 0.4, -0.6])) > 0.5


def test_retraining_is_credited_to_the_studys_reference_whatever_the_order_of_the_plain_fits():
    experiments = {"published": Experiment(init="published", protocol="none"), "plain": Experiment(init="backbone"),
                   "retrained": Experiment(init="published", protocol="ours")}
    assert training_steps(experiments) == [("retraining", "published", "retrained")]
