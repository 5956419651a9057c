import numpy as np
import pandas as pd
import pytest

from stages.lib.evaluation.correction import (MODEL_KINDS, adjusted_verdicts, compare_corrections, corrected_predictions,
                                              correction_features, cross_fitted_corrections, make_model)
from stages.lib.core.labels import RACES
from stages.lib.evaluation.intervals import Bootstrap


def faces(n, planted_bias, seed):
    """Predictions with noise; women's ages over-estimated by `planted_bias` years."""
    rng = np.random.default_rng(seed)
    gender = rng.choice(["male", "female"], n)
    age = rng.integers(16, 80, n)
    pred = age + rng.normal(0, 3, n) + np.where(gender == "female", planted_bias, 0)
    return pd.DataFrame({"age": age, "age_pred": pred, "gender": gender, "race": rng.choice(RACES, n),
                         "split": rng.choice(["val", "test"], n)})


BOOT = Bootstrap(resamples=300, seed=1)


def test_features_are_prediction_gender_and_race_indicators():
    features = correction_features(faces(10, 0, 0))
    assert features.shape == (10, 1 + 1 + len(RACES) - 1)
    assert set(np.unique(features[:, 1])) <= {0.0, 1.0}
    no_race = correction_features(faces(10, 0, 0).assign(race=None))
    assert no_race.shape == (10, 2)


def test_a_planted_bias_is_corrected():
    frame = faces(1200, planted_bias=10, seed=0)
    result = compare_corrections(frame[frame["split"] == "val"], frame[frame["split"] == "test"], BOOT,
                                 kinds=["linear", "gradient_boosting"]).set_index("model")
    assert result.loc["none", "verdict"] == "baseline"
    assert result.loc["linear", "verdict"] == "better"
    assert result.loc["linear", "mae"] < result.loc["none", "mae"] - 3
    assert result.loc["linear", "mae_change_ci_high"] < 0


def test_nothing_to_correct_is_not_called_better():
    frame = faces(1200, planted_bias=0, seed=1)
    result = compare_corrections(frame[frame["split"] == "val"], frame[frame["split"] == "test"], BOOT,
                                 kinds=["linear", "knn"]).set_index("model")
    assert result.loc["linear", "verdict"] != "better"
    assert abs(result.loc["linear", "mae_change"]) < 0.3


def test_cross_fitting_judges_every_face_once_and_is_reproducible():
    frame = faces(300, planted_bias=6, seed=2)
    first = cross_fitted_corrections(frame, folds=5, bootstrap=BOOT, kinds=["linear"])
    again = cross_fitted_corrections(frame, folds=5, bootstrap=BOOT, kinds=["linear"])
    pd.testing.assert_frame_equal(first, again)
    assert (first["n_judged"] == 300).all() and first.loc[1, "n_fit"] == 240
    assert first.loc[1, "verdict"] == "better"


def test_every_model_kind_fits_and_unknown_kinds_are_refused():
    frame = faces(200, planted_bias=5, seed=3)
    result = compare_corrections(frame[frame["split"] == "val"], frame[frame["split"] == "test"], Bootstrap(0))
    assert list(result["model"]) == ["none", *MODEL_KINDS]
    assert result["mae"].notna().all() and (result.loc[1:, "verdict"] == "no interval").all()
    with pytest.raises(ValueError, match="allowed"):
        make_model("oracle", 0)
    with pytest.raises(ValueError, match="faces to fit"):
        compare_corrections(frame.iloc[:1], frame, BOOT)


def test_every_model_fits_a_val_split_smaller_than_its_neighbourhood():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"age": rng.integers(1, 90, 60), "gender": "female", "race": "white"})
    frame["age_pred"] = frame["age"] + rng.normal(0, 5, 60)
    for kind in MODEL_KINDS:  # 30 faces to fit: fewer than k-NN's 50 neighbours
        assert np.isfinite(corrected_predictions(kind, frame.iloc[:30], frame.iloc[30:], seed=0)).all()


def test_a_model_is_better_only_after_holms_adjustment_over_every_model():
    rows = [{"model": "none", "n_fit": 0, "n_judged": 300, "mae": 6.0, "rmse": 8.0, "mae_change": np.nan,
             "mae_change_ci_low": np.nan, "mae_change_ci_high": np.nan, "p_value": np.nan}]
    rows += [{"model": kind, "n_fit": 900, "n_judged": 300, "mae": 5.9, "rmse": 7.9, "mae_change": -0.1,
              "mae_change_ci_low": -0.2, "mae_change_ci_high": -0.01, "p_value": p}
             for kind, p in (("linear", 0.02), ("knn", 0.001), ("random_forest", 0.5))]
    table = adjusted_verdicts(rows, 0.05).set_index("model")
    assert table.loc["knn", "p_adjusted"] == pytest.approx(0.003) and table.loc["knn", "verdict"] == "better"
    assert table.loc["linear", "p_adjusted"] == pytest.approx(0.04) and table.loc["linear", "verdict"] == "better"
    assert table.loc["random_forest", "verdict"] == "no clear difference"     # raw interval below 0, adjusted p not
    assert table.loc["none", "verdict"] == "baseline" and np.isnan(table.loc["none", "p_adjusted"])
