"""Crop geometry (pure): the square region around a face box, its part inside the photo, the cut with black
padding where it leaves the photo, and the choice of the face."""

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stages.lib.faces.geometry import (Detection, Region, choose_face, cut_square, has_box, largest_first,
                                       square_region, valid_box, visible_part)
from tests.faces.photos import gradient


def test_square_region_adds_the_margin_on_each_side_and_squares_around_the_centre():
    region = square_region((10, 20, 40, 60), margin=0.4)
    # the longer side 60 grows by 40% on each side: 108; centre (30, 50)
    assert region == Region(30 - 54, 50 - 54, 108)


def test_square_region_without_margin_keeps_a_square_box():
    assert square_region((5, 7, 30, 30), margin=0.0) == Region(5, 7, 30)


@settings(max_examples=200, deadline=None)
@given(
    x=st.floats(-500, 500), y=st.floats(-500, 500), w=st.floats(1, 800), h=st.floats(1, 800),
    margin=st.floats(0, 1.5),
)
def test_square_region_covers_the_grown_box_and_keeps_its_centre(x, y, w, h, margin):
    region = square_region((x, y, w, h), margin)
    grown = max(w, h) * (1 + 2 * margin)
    assert abs(region.side - grown) <= 0.5 or region.side == 1
    assert abs(region.x + region.side / 2 - (x + w / 2)) <= 1
    assert abs(region.y + region.side / 2 - (y + h / 2)) <= 1


def test_visible_part_clips_to_the_image_or_is_none_outside():
    assert visible_part(Region(10, 10, 20), 100, 100) == (10, 10, 30, 30)
    assert visible_part(Region(-5, 90, 20), 100, 100) == (0, 90, 15, 100)
    assert visible_part(Region(100, 0, 20), 100, 100) is None
    assert visible_part(Region(-20, -20, 20), 100, 100) is None


def test_cut_square_inside_the_image_is_a_plain_resize():
    image = gradient(100, 120)
    crop = cut_square(image, Region(20, 10, 50), size=25)
    expected = cv2.resize(image[10:60, 20:70], (25, 25), interpolation=cv2.INTER_AREA)
    assert crop.shape == (25, 25, 3)
    np.testing.assert_array_equal(crop, expected)


def test_cut_square_pads_with_black_where_the_region_leaves_the_image():
    image = np.full((40, 40, 3), 200, np.uint8)
    crop = cut_square(image, Region(-20, 0, 40), size=40)  # left half outside
    assert (crop[:, :20] == 0).all()
    assert (crop[:, 20:] == 200).all()


def test_cut_square_of_a_region_far_larger_than_the_image_stays_small():
    image = np.full((10, 10, 3), 255, np.uint8)
    crop = cut_square(image, Region(-500_000, -500_000, 1_000_010), size=16)
    assert crop.shape == (16, 16, 3)


def test_cut_square_outside_the_image_is_an_error():
    with pytest.raises(ValueError, match="outside"):
        cut_square(np.zeros((10, 10, 3), np.uint8), Region(50, 50, 5), size=8)


def test_precropped_non_square_image_is_padded_not_stretched():
    image = np.full((100, 200, 3), 90, np.uint8)  # wide: 200 x 100
    region = square_region((0, 0, 200, 100), 0.0)
    crop = cut_square(image, region, size=100)
    assert region == Region(0, -50, 200)
    assert (crop[:25] == 0).all() and (crop[75:] == 0).all()
    assert (crop[25:75] == 90).all()


def test_choose_face_takes_the_largest_then_the_surest():
    small = Detection((0, 0, 10, 10), 0.99)
    large = Detection((50, 50, 30, 30), 0.7)
    large_surer = Detection((0, 50, 30, 30), 0.9)
    assert choose_face([small, large]) == large
    assert choose_face([large, large_surer]) == large_surer
    assert choose_face([]) is None


def test_equal_detections_are_chosen_by_place_whatever_their_order():
    """Haar returns same-size boxes (all scored 1.0) in an order that varies with OpenCV's threads."""
    upper_left, upper_right, lower = (Detection(box, 1.0) for box in
                                      [(10, 10, 30, 30), (60, 10, 30, 30), (5, 80, 30, 30)])
    for order in ([upper_left, upper_right, lower], [lower, upper_right, upper_left], [upper_right, lower, upper_left]):
        assert choose_face(order) == upper_left
        assert largest_first(order) == [upper_left, upper_right, lower]


def test_valid_box_needs_four_finite_values_and_a_positive_size():
    assert valid_box([0, 0, 1, 1])
    assert not valid_box([0, 0, 0, 5])
    assert not valid_box([0, 0, float("nan"), 5])
    assert not valid_box([0, 0, 5])
    assert not valid_box(None)


def test_has_box_tells_a_null_from_a_box_however_bad():
    assert not has_box(None) and not has_box(float("nan"))
    assert has_box([0, 0, 0, 0]) and not valid_box([0, 0, 0, 0])
    assert has_box(np.array([1.0, 2.0, 3.0, 4.0])) and valid_box(np.array([1.0, 2.0, 3.0, 4.0]))


def test_a_face_in_the_top_left_corner_is_grown_clipped_and_padded_on_the_outer_sides():
    image = gradient(100, 100)
    region = square_region((0, 0, 20, 20), margin=0.5)              # side 40 around the centre (10, 10)
    assert region == Region(-10, -10, 40) and region.as_box() == [-10, -10, 40, 40]
    assert visible_part(region, 100, 100) == (0, 0, 30, 30)
    crop = cut_square(image, region, size=40)
    assert (crop[:10] == 0).all() and (crop[:, :10] == 0).all()
    np.testing.assert_array_equal(crop[10:, 10:], image[:30, :30])  # same scale: the pixels as they were


def test_a_face_in_the_bottom_right_corner_of_a_wide_photo_is_padded_right_and_below():
    image = gradient(100, 160)
    region = square_region((150, 80, 10, 20), margin=0.5)           # side 40 around the centre (155, 90)
    assert region == Region(135, 70, 40)
    assert visible_part(region, 100, 160) == (135, 70, 160, 100)
    crop = cut_square(image, region, size=20)                       # half scale
    assert (crop[15:] == 0).all() and (crop[:, 13:] == 0).all()
    expected = cv2.resize(image[70:100, 135:160], (12, 15), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(crop[:15, :12], expected)


def test_largest_first_orders_by_area_then_by_score():
    wide = Detection((0, 0, 40, 12), 0.5)
    square = Detection((5, 5, 20, 20), 0.6)
    surer_square = Detection((9, 9, 20, 20), 0.9)
    tiny = Detection((1, 1, 2, 2), 1.0)
    assert largest_first([tiny, square, wide, surer_square]) == [wide, surer_square, square, tiny]
