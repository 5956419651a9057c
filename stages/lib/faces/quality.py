"""Photo quality around a face, measured apart from its skin colour.

All on a crop's face square (`FaceSquare`) resized to a fixed face scale, so that a measure means the
same on a 64-pixel demo crop and a 224-pixel photo crop:

- exposure: the shares of clipped pixels in the face square, near-black (grey <= 5 of 255) and
  near-white (>= 250). Clipping loses the face's detail whatever its skin;
- background luminance: the mean L* of the crop outside the face square (the photo's lighting around
  the face, not the face's own skin);
- contrast: the standard deviation of L* in the face square (RMS contrast);
- sharpness: the variance of the Laplacian of the face square's grey levels at the fixed face scale
  (blur lowers it; it also grows with texture, so it is read within a dataset).

A grey-scale photo (no pixel's channels differ by more than `GREY_SPREAD`) has an L* but no hue.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from stages.lib.faces.landmarks import FaceSquare

NEAR_BLACK, NEAR_WHITE = 5, 250  # grey levels counted as clipped
GREY_SPREAD = 6  # largest channel difference (of 255) that a grey-scale JPEG's chroma noise reaches


@dataclass(frozen=True)
class PhotoQuality:
    clipped_dark: float
    clipped_bright: float
    background_luminance: float | None  # None when the face square fills the crop
    contrast: float
    sharpness: float


def face_scaled(image: np.ndarray, square: FaceSquare, face_scale: int) -> tuple[np.ndarray, float]:
    """The crop resized so that its face square is `face_scale` pixels wide, and the factor applied."""
    factor = face_scale / square.side
    side = max(1, round(image.shape[0] * factor))
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, (side, side), interpolation=interpolation), factor


def scaled_square(square: FaceSquare, factor: float, face_scale: int) -> FaceSquare:
    return FaceSquare(round(square.left * factor), round(square.top * factor), face_scale)


def lightness(rgb: np.ndarray) -> np.ndarray:
    """CIELAB L* (0-100) of a uint8 RGB image, by OpenCV's 8-bit conversion (L* x 255/100)."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)[..., 0].astype(float) * (100 / 255)


def is_greyscale(rgb: np.ndarray) -> bool:
    spread = rgb.max(axis=2).astype(int) - rgb.min(axis=2)
    return int(spread.max()) <= GREY_SPREAD


def photo_quality(rgb: np.ndarray, square: FaceSquare) -> PhotoQuality:
    """The quality measures of a uint8 RGB crop already at the fixed face scale, `square` its face."""
    bottom, right = square.top + square.side, square.left + square.side
    face = rgb[square.top:bottom, square.left:right]
    grey = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
    lstar = lightness(rgb)
    outside = np.ones(lstar.shape, dtype=bool)
    outside[square.top:bottom, square.left:right] = False
    return PhotoQuality(
        clipped_dark=float(np.mean(grey <= NEAR_BLACK)),
        clipped_bright=float(np.mean(grey >= NEAR_WHITE)),
        background_luminance=float(lstar[outside].mean()) if outside.any() else None,
        contrast=float(lstar[square.top:bottom, square.left:right].std()),
        sharpness=float(cv2.Laplacian(grey, cv2.CV_64F).var()),
    )
