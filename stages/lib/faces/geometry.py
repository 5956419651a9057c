"""Crop geometry (pure): boxes, the square region around a face, cutting it out, choosing the face.

`square_region`: the margin, a fraction of the box's width and height, is added on each side
(IMDB-Wiki's released crops used 40%), then the region is made square around the box's centre with
side max(width, height). Where the region leaves the image it is padded with black (`cut_square`),
as IMDB-Wiki's own crops are, so a face at the photo's edge stays centred and unstretched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np


@dataclass(frozen=True)
class Region:
    """A square region of a photo in its pixels; it may reach past the photo's edges (then padded)."""

    x: int
    y: int
    side: int

    def as_box(self) -> list[int]:
        return [self.x, self.y, self.side, self.side]


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x, y, w, h in the photo's pixels
    score: float  # the detector's confidence; Haar has none and reports 1.0


def has_box(box) -> bool:
    """True when the row carries a box at all (parquet gives None, or a float NaN, for a null)."""
    return box is not None and not (isinstance(box, float) and math.isnan(box))


def valid_box(box) -> bool:
    """True for a finite [x, y, w, h] with positive width and height."""
    if not has_box(box):
        return False
    values = np.asarray(box, dtype=float).ravel()
    return values.size == 4 and bool(np.isfinite(values).all()) and values[2] > 0 and values[3] > 0


def square_region(box: Sequence[float], margin: float) -> Region:
    """The box grown by `margin` x its size on each side, then squared around its centre (integer pixels)."""
    x, y, w, h = (float(v) for v in box)
    centre_x, centre_y = x + w / 2, y + h / 2
    side = max(w, h) * (1 + 2 * margin)
    pixels = max(1, int(round(side)))
    return Region(int(math.floor(centre_x - pixels / 2 + 0.5)), int(math.floor(centre_y - pixels / 2 + 0.5)), pixels)


def visible_part(region: Region, height: int, width: int) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of the region that lies inside a `height` x `width` photo; None when none does."""
    x0, y0 = max(region.x, 0), max(region.y, 0)
    x1, y1 = min(region.x + region.side, width), min(region.y + region.side, height)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def cut_square(image: np.ndarray, region: Region, size: int) -> np.ndarray:
    """The region of `image` resized to `size` x `size`, black where the region leaves the image.

    Only the visible part is resized (into its place on a black canvas), so a region far larger than
    the photo costs no more memory than the output. ValueError when no part of the region is visible.
    """
    visible = visible_part(region, image.shape[0], image.shape[1])
    if visible is None:
        raise ValueError(f"region {region.as_box()} lies outside the {image.shape[1]}x{image.shape[0]} image")
    x0, y0, x1, y1 = visible
    scale = size / region.side
    out_x0, out_y0 = round((x0 - region.x) * scale), round((y0 - region.y) * scale)
    out_x1, out_y1 = round((x1 - region.x) * scale), round((y1 - region.y) * scale)
    canvas = np.zeros((size, size) + image.shape[2:], dtype=image.dtype)
    if out_x1 > out_x0 and out_y1 > out_y0:
        part = image[y0:y1, x0:x1]
        target = (out_x1 - out_x0, out_y1 - out_y0)
        shrinking = target[0] < part.shape[1] or target[1] < part.shape[0]
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        canvas[out_y0:out_y1, out_x0:out_x1] = cv2.resize(part, target, interpolation=interpolation).reshape(
            (target[1], target[0]) + image.shape[2:]
        )
    return canvas


def largest_first(detections: Sequence[Detection]) -> list[Detection]:
    """Detections from the largest box down (a higher score, then the upper, then the left box breaks a
    tie): the same order whatever order a detector returns them in (Haar's varies with OpenCV's threads)."""
    return sorted(detections, key=lambda d: (d.box[2] * d.box[3], d.score, -d.box[1], -d.box[0]), reverse=True)


def choose_face(detections: Sequence[Detection]) -> Detection | None:
    """The largest detection (ties broken as in `largest_first`); None when there is none."""
    ordered = largest_first(detections)
    return ordered[0] if ordered else None
