import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from stages.lib.evaluation.gender_scores import (by_race, by_race_gender, expected_calibration_error,
                                                 reliability_by_race, weighted_auc)
from stages.lib.evaluation.intervals import Bootstrap
from tests.evaluation.skin_frames import planted


def test_the_auc_agrees_with_scikit_learn_ties_included():
    rng = np.random.default_rng(1)
    is_female = rng.integers(0, 2, 300).astype(float)
    scores = np.round(rng.random(300) * 0.5 + is_female * 0.3, 1)
    assert weighted_auc(is_female, scores) == pytest.approx(roc_auc_score(is_female, scores))
    weights = rng.integers(0, 3, 300)
    assert weighted_auc(is_female, scores, weights) == pytest.approx(
        roc_auc_score(is_female, scores, sample_weight=weights))


def test_a_calibrated_score_has_an_ece_near_zero_and_an_overconfident_one_does_not():
    rng = np.random.default_rng(2)
    p = rng.random(20000)
    is_female = (rng.random(20000) < p).astype(float)
    assert expected_calibration_error(is_female, p) < 0.02
    assert expected_calibration_error(is_female, np.clip(p * 2 - 0.5, 0, 1)) > 0.1


def test_per_race_auc_has_an_interval_and_a_darker_group_ranks_worse():
    predictions, _ = planted(n=2000, skin_effect=1.0)
    table = by_race(predictions, Bootstrap(200)).set_index("race")
    assert table.loc["black", "auc"] < table.loc["white", "auc"]
    assert table.loc["white", "auc_ci_low"] < table.loc["white", "auc"] < table.loc["white", "auc_ci_high"]
    assert set(reliability_by_race(predictions)["race"]) == set(table.index) - {"all"}


def test_a_threshold_at_0_6_shows_as_the_gap_between_the_two_accuracies():
    faces = pd.DataFrame({"race": "white", "gender": ["male"] * 4 + ["female"] * 4,
                          "gender_prob_female": [0.1, 0.2, 0.45, 0.55, 0.55, 0.58, 0.9, 0.95]})
    faces["gender_pred"] = np.where(faces["gender_prob_female"] > 0.4, "female", "male")   # calls male below 0.4
    table = by_race_gender(faces).set_index("group")
    assert table.loc["white*male", "accuracy_own_threshold"] == 0.5
    assert table.loc["white*male", "accuracy_at_half"] == 0.75
    assert table.loc["white*female", "mean_p_true_gender"] == pytest.approx(np.mean([0.55, 0.58, 0.9, 0.95]))
