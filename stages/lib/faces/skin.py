"""Apparent skin colour of a face: perceptual lightness L* and hue angle h*, by the method of Thong,
Joniak & Xiang, "Beyond Skin Tone: A Multidimensional Measure of Apparent Skin Color" (ICCV 2023;
their code: SonyResearch/apparent_skincolor, extract/predict.py).

Steps, as there: the photo is smoothed by a Gaussian of sigma 1 (truncated at 4 sigma); the skin
pixels go to CIELAB (scikit-image's `rgb2lab`, D65); each gets its hue angle h* = atan2(b*, a*) in
degrees; KMeans with 5 clusters (scikit-learn, a fixed seed) groups the pixels on (L*, h*); each
cluster's L* and h* is the mode of its histogram (Sturges' bins); the face's values are the means of
the three lightest clusters' modes, weighted by their pixel counts. Lightest clusters, because shadows,
beard and hair that the mask lets in are darker than lit skin.

Two small departures, both exact where the paper's are approximate: a histogram's mode is its fullest
bin's centre (the paper takes its left edge, half a bin low), and a cluster whose values are all
equal has that value as its mode. The hue is atan2's (the paper's arctan(b/a) differs only for a* < 0,
green, which skin is not).

The skin mask is the face polygon (jaw and brows) less the eyes, brows and mouth, from the 68
landmarks (`skin_mask`), or given by whoever drew the face.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from skimage.color import rgb2lab
from skimage.filters import gaussian
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

from stages.lib.faces.landmarks import JAW, LEFT_BROW, LEFT_EYE, OUTER_MOUTH, RIGHT_BROW, RIGHT_EYE

SMOOTHING_SIGMA = 1.0
TRUNCATE = 4.0  # skimage's default: the kernel reaches 4 sigma


@dataclass(frozen=True)
class SkinMethod:
    """The method's fixed choices: how many clusters, how many of the lightest are averaged, the seed."""

    clusters: int = 5
    lightest: int = 3
    seed: int = 2021  # the paper's random_state


@dataclass(frozen=True)
class SkinColour:
    lightness: float  # L*, 0-100
    hue: float        # h*, degrees
    pixels: int       # skin pixels measured


def skin_mask(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean (height, width) mask: inside the polygon of the jaw and the brows, outside the eyes,
    brows and outer mouth. A brow is a line of five points, removed as a band as thick as a tenth of
    the face's width."""
    points = np.round(np.asarray(landmarks, dtype=float)).astype(np.int32)
    mask = np.zeros(shape, dtype=np.uint8)
    outline = np.concatenate([points[list(JAW)], points[list(LEFT_BROW)][::-1], points[list(RIGHT_BROW)][::-1]])
    cv2.fillPoly(mask, [cv2.convexHull(outline)], 1)
    for part in (RIGHT_EYE, LEFT_EYE, OUTER_MOUTH):
        cv2.fillPoly(mask, [points[list(part)]], 0)
    width = float(np.ptp(points[list(JAW), 0]))
    thickness = max(1, int(round(width / 10)))
    for brow in (RIGHT_BROW, LEFT_BROW):
        cv2.polylines(mask, [points[list(brow)]], False, 0, thickness)
    return mask.astype(bool)


def smoothed_lab(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(n, 3) CIELAB of the masked pixels of the uint8 RGB image after the Gaussian smoothing. Only the
    mask's bounding box (and the kernel's reach around it) is smoothed: the same values, less work."""
    rows, cols = np.nonzero(mask)
    reach = int(np.ceil(TRUNCATE * SMOOTHING_SIGMA))
    top, left = max(rows.min() - reach, 0), max(cols.min() - reach, 0)
    bottom, right = rows.max() + reach + 1, cols.max() + reach + 1
    window = gaussian(rgb[top:bottom, left:right], sigma=SMOOTHING_SIGMA, truncate=TRUNCATE, channel_axis=-1)
    return rgb2lab(window[mask[top:bottom, left:right]])


def hue_angle(lab: np.ndarray) -> np.ndarray:
    """h* = atan2(b*, a*) in degrees, per row of an (n, 3) CIELAB array."""
    return np.degrees(np.arctan2(lab[:, 2], lab[:, 1]))


def histogram_mode(values: np.ndarray) -> float:
    """The centre of the fullest bin of the values' histogram with Sturges' bins; their value when all equal."""
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-9:
        return low
    counts, edges = np.histogram(values, bins="sturges")
    fullest = int(counts.argmax())
    return float((edges[fullest] + edges[fullest + 1]) / 2)


def skin_colour(rgb: np.ndarray, mask: np.ndarray, method: SkinMethod = SkinMethod()) -> SkinColour:
    """The face's apparent skin colour from a uint8 RGB image and its boolean skin mask (not empty)."""
    lab = smoothed_lab(rgb, mask)
    points = np.column_stack([lab[:, 0], hue_angle(lab)])
    with warnings.catch_warnings():  # fewer distinct colours than clusters (a flat patch): some stay empty
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = KMeans(method.clusters, random_state=method.seed, n_init="auto").fit_predict(points)
    modes, counts = [], []
    for cluster in np.unique(labels):
        members = points[labels == cluster]
        modes.append((histogram_mode(members[:, 0]), histogram_mode(members[:, 1])))
        counts.append(len(members))
    modes, counts = np.array(modes), np.array(counts)
    lightest = np.argsort(modes[:, 0])[::-1][:method.lightest]
    lightness, hue = np.average(modes[lightest], axis=0, weights=counts[lightest])
    return SkinColour(float(lightness), float(hue), int(len(points)))
