"""GEAR (backbones/gear.py): Human's cut of the face and its card, an in-sample contrast only."""

import cv2
import numpy as np

from stages.lib.backbones import gear


def test_the_input_is_the_top_ninety_percent_and_central_eighty_percent_rgb_in_unit_range():
    photo = np.random.default_rng(0).integers(0, 256, (120, 100, 3), dtype=np.uint8)
    region = photo[10 + 0:10 + 90, 10 + 10:10 + 90]          # box (10, 10, 100, 100) clipped by nothing
    expected = cv2.resize(region, (198, 198), interpolation=cv2.INTER_LINEAR)[..., ::-1].astype(np.float32) / 255
    np.testing.assert_array_equal(gear.net_input(photo, (10, 10, 100, 100)), expected)


def test_its_card_flags_utkface_in_sample_and_leaves_fairface_unknown():
    card = gear.CARD
    assert card.contrast == "in-sample" and card.in_sample == {"utkface": "yes"}
    assert card.age_bands[0] == (0, 20) and card.age_bands[-1] == (61, 100) and len(card.age_bands) == 7
    assert card.decision_rule.startswith("the more probable class")
