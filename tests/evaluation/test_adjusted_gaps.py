import pytest

from stages.lib.evaluation.adjusted_gaps import adjusted_gaps, within_group_slopes
from stages.lib.evaluation.skin import with_measurements
from tests.evaluation.frames import EDGES
from tests.evaluation.skin_frames import planted


def _faces(**effects):
    predictions, measurements = planted(n=3000, **effects)
    return with_measurements(predictions, measurements)


def test_a_planted_lightness_effect_within_every_group_is_recovered_by_the_slopes():
    slopes = within_group_slopes(_faces(skin_effect=1.0))
    error = slopes[slopes["outcome"] == "abs_error"].set_index(["group", "measure"])
    lightness = error.xs("skin_lightness", level="measure")
    assert len(lightness) == 10 and lightness["significant"].all()
    assert lightness["slope"].median() == pytest.approx(-1.0, abs=0.15)     # 1 year more per 10 L* darker
    assert ((lightness["ci_low"] < -1.0) & (lightness["ci_high"] > -1.0)).mean() >= 0.8
    assert not error.xs("skin_hue", level="measure")["significant"].any()
    wrong = slopes[(slopes["outcome"] == "wrong_gender") & (slopes["measure"] == "skin_lightness")]
    assert (wrong["slope"] < 0).all()


def test_without_a_skin_effect_no_slope_survives_holm():
    slopes = within_group_slopes(_faces(race_effect=2.0))
    assert not slopes["significant"].any()
    assert slopes["p_holm"].ge(slopes["p_value"]).all()


def test_a_gap_planted_on_photo_quality_shrinks_once_quality_is_adjusted_for():
    gaps = adjusted_gaps(_faces(quality_effect=1.5), edges=EDGES).set_index(["outcome", "group"])
    black = gaps.loc[("abs_error", "black*female")]
    assert black["before"] > 1.0 and black["before_ci_low"] > 0
    assert abs(black["after"]) < 0.3 and black["after_ci_low"] < 0 < black["after_ci_high"]
    assert not black["significant"]
    assert "face_size" in black["left_out"] and "sharpness" in black["quality_terms"]
    wrong = gaps.loc[("wrong_gender", "black*female")]
    assert wrong["before"] > 0.1 > wrong["after"]


def test_a_gap_not_carried_by_photo_quality_stays_after_adjustment():
    gaps = adjusted_gaps(_faces(race_effect=2.0), edges=EDGES).set_index(["outcome", "group"])
    black = gaps.loc[("abs_error", "black*male")]
    assert black["after"] == pytest.approx(2.0, abs=0.3) and black["significant"]
    assert black["after"] == pytest.approx(black["before"], abs=0.1)
