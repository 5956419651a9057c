"""Photo quality held to known answers: clipped shares, background luminance, contrast, sharpness."""

import numpy as np
import pytest

from stages.lib.faces.landmarks import FaceSquare
from stages.lib.faces.quality import face_scaled, is_greyscale, photo_quality, scaled_square

SQUARE = FaceSquare(20, 20, 40)


def crop(face_value, ring_value, side=80):
    image = np.full((side, side, 3), ring_value, np.uint8)
    image[20:60, 20:60] = face_value
    return image


def test_clipped_shares_count_the_face_square_only():
    image = crop(0, 255)
    image[20:30, 20:60] = 255  # a quarter of the face near-white
    quality = photo_quality(image, SQUARE)
    assert quality.clipped_dark == pytest.approx(0.75) and quality.clipped_bright == pytest.approx(0.25)


def test_background_luminance_is_the_ring_around_the_face():
    assert photo_quality(crop(0, 255), SQUARE).background_luminance == pytest.approx(100.0)
    assert photo_quality(crop(255, 0), SQUARE).background_luminance == pytest.approx(0.0)
    assert photo_quality(np.zeros((40, 40, 3), np.uint8), FaceSquare(0, 0, 40)).background_luminance is None


def test_contrast_and_sharpness_grow_with_detail():
    flat = photo_quality(crop(128, 128), SQUARE)
    checker = crop(128, 128)
    checker[20:60:2, 20:60] = 200
    busy = photo_quality(checker, SQUARE)
    assert flat.contrast == pytest.approx(0.0) and flat.sharpness == pytest.approx(0.0)
    assert busy.contrast > 10 and busy.sharpness > 1000


def test_the_face_is_measured_at_the_fixed_scale():
    image = np.zeros((224, 224, 3), np.uint8)
    square = FaceSquare.central(224, 0.4)
    scaled, factor = face_scaled(image, square, 96)
    assert scaled_square(square, factor, 96).side == 96
    assert scaled.shape[0] == round(224 * 96 / square.side)


def test_greyscale_is_equal_channels_up_to_jpeg_noise():
    grey = np.repeat(np.arange(64, dtype=np.uint8).reshape(8, 8, 1), 3, axis=2)
    assert is_greyscale(grey)
    grey[0, 0] = (10, 40, 10)
    assert not is_greyscale(grey)
