"""Apparent skin colour held to known answers: flat patches, colours in known proportions, the three
lightest clusters, the histogram's mode, the mask from the landmarks."""

import numpy as np
import pytest
from skimage.color import lab2rgb, rgb2lab

from stages.lib.datasets.synthetic import Face, draw_face
from stages.lib.faces.skin import SkinMethod, histogram_mode, hue_angle, skin_colour, skin_mask


def rgb_of(lightness, a, b) -> np.ndarray:
    return np.round(lab2rgb(np.array([lightness, a, b], dtype=float).reshape(1, 1, 3)).ravel() * 255).astype(np.uint8)


def lab_of(rgb: np.ndarray) -> np.ndarray:
    return rgb2lab(rgb.reshape(1, 1, 3) / 255).ravel()


def stripes(colours, widths, gap=12, height=40):
    """An image of vertical stripes, one per colour, `widths` pixels wide, and a mask of their middles
    that stays `gap` px away from every edge (where smoothing blends neighbours)."""
    image = np.zeros((height, sum(widths) + 2 * gap * len(widths), 3), np.uint8)
    mask = np.zeros(image.shape[:2], bool)
    left = 0
    for colour, width in zip(colours, widths):
        image[:, left:left + width + 2 * gap] = colour
        mask[gap:height - gap, left + gap:left + gap + width] = True
        left += width + 2 * gap
    return image, mask


@pytest.mark.parametrize("lab", [(65.0, 12.0, 18.0), (35.0, 15.0, 20.0), (80.0, 5.0, 15.0)])
def test_a_flat_patch_gives_its_own_lightness_and_hue(lab):
    colour = rgb_of(*lab)
    image, mask = stripes([colour], [40])
    expected = lab_of(colour)
    measured = skin_colour(image, mask)
    assert measured.lightness == pytest.approx(expected[0], abs=1e-6)
    assert measured.hue == pytest.approx(np.degrees(np.arctan2(expected[2], expected[1])), abs=1e-6)
    assert measured.pixels == mask.sum()


def test_two_colours_average_by_their_pixel_shares():
    light, dark = rgb_of(70, 10, 20), rgb_of(40, 20, 25)
    image, mask = stripes([light, dark], [30, 10])  # 3:1
    (l1, a1, b1), (l2, a2, b2) = lab_of(light), lab_of(dark)
    measured = skin_colour(image, mask)
    assert measured.lightness == pytest.approx(0.75 * l1 + 0.25 * l2, abs=1e-6)
    hues = np.degrees(np.arctan2([b1, b2], [a1, a2]))
    assert measured.hue == pytest.approx(0.75 * hues[0] + 0.25 * hues[1], abs=1e-6)


def test_only_the_three_lightest_of_five_clusters_count():
    colours = [rgb_of(lightness, 12, 18) for lightness in (85, 70, 55, 30, 15)]
    image, mask = stripes(colours, [10, 20, 10, 30, 30])
    lightness = [lab_of(c)[0] for c in colours]
    expected = np.average(lightness[:3], weights=[10, 20, 10])
    assert skin_colour(image, mask).lightness == pytest.approx(expected, abs=1e-6)
    one_cluster = skin_colour(image, mask, SkinMethod(lightest=1))
    assert one_cluster.lightness == pytest.approx(lightness[0], abs=1e-6)


def test_the_mode_is_the_fullest_bins_centre():
    values = np.concatenate([np.full(50, 10.0), np.linspace(0, 100, 30)])
    counts, edges = np.histogram(values, bins="sturges")
    assert histogram_mode(values) == pytest.approx((edges[counts.argmax()] + edges[counts.argmax() + 1]) / 2)
    assert abs(histogram_mode(values) - 10.0) < (edges[1] - edges[0])
    assert histogram_mode(np.full(7, 3.5)) == 3.5


def test_hue_is_atan2_in_degrees():
    lab = np.array([[50, 10, 10], [50, 0, 20], [50, 20, 0]], dtype=float)
    assert hue_angle(lab) == pytest.approx([45.0, 90.0, 0.0])


def test_the_mask_keeps_cheeks_and_leaves_out_eyes_brows_and_mouth():
    image, _, points = draw_face(Face(0, 40, "female", "white", 40), 192, 0)
    points = np.array(points)
    mask = skin_mask(points, image.shape[:2])
    def at(index):
        x, y = np.round(points[index]).astype(int)
        return mask[y, x]
    eye_centre = np.round(points[36:42].mean(axis=0)).astype(int)
    mouth_centre = np.round(points[48:60].mean(axis=0)).astype(int)
    brow = np.round(points[19]).astype(int)
    cheek = np.round((points[3] + points[31]) / 2).astype(int)
    assert not mask[eye_centre[1], eye_centre[0]] and not mask[mouth_centre[1], mouth_centre[0]]
    assert not mask[brow[1], brow[0]]
    assert mask[cheek[1], cheek[0]]
    assert not mask[5, 5]  # outside the face
    assert 0.3 < mask.sum() / (np.ptp(points[:, 0]) * np.ptp(points[:, 1])) < 0.9
