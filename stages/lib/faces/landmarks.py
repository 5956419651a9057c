"""dlib's 68 facial landmarks, started from the face square a crop is known to hold (no detector).

The rectangle is the one the identity pass starts dlib from: the crop's central square covering
1/(1+2m) of its side for a face box grown by a margin m on each side, 0.8 for a dataset's own face
crop (UTKFace aligned, FairFace; margin NaN). No face detector runs: dlib's HOG detector misses about a
quarter of FairFace faces, more of Black faces, so detecting would make the measurements' coverage
depend on race.

The model file ships with `face_recognition_models` (the `dlib` extra). Without the extra
`load_landmarker` raises `LandmarksUnavailable` naming the fix; the measure stage then measures photo
quality alone and gives each face the reason.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stages.lib.core.errors import UserError

LANDMARK_MODEL = "shape_predictor_68_face_landmarks.dat"
PRECROPPED_FACE_FRACTION = 0.8  # a dataset's own face crop: HOG's face box covers 0.80-0.86 of it
INSTALL_HINT = 'landmarks need the optional extra: pip install -e ".[dlib]" (dlib-bin and face_recognition_models)'

# Index ranges of dlib's 68-point scheme (iBUG 300-W).
JAW = range(0, 17)
RIGHT_BROW, LEFT_BROW = range(17, 22), range(22, 27)
NOSE = range(27, 36)
RIGHT_EYE, LEFT_EYE = range(36, 42), range(42, 48)
OUTER_MOUTH = range(48, 60)


class LandmarksUnavailable(UserError, ImportError):
    """The dlib extra is not installed; the message says how to install it."""


def face_fraction(margin: float | None) -> float:
    """The share of a square crop's side the face covers: 1/(1+2m) for a box grown by `margin` m on
    each side; `PRECROPPED_FACE_FRACTION` for a dataset's own face crop (margin None or NaN)."""
    if margin is None or math.isnan(margin):
        return PRECROPPED_FACE_FRACTION
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    return 1 / (1 + 2 * margin)


@dataclass(frozen=True)
class FaceSquare:
    """The face's square in a crop's pixels: left, top and side (the right edge is left + side)."""

    left: int
    top: int
    side: int

    @classmethod
    def central(cls, crop_side: int, margin: float | None) -> "FaceSquare":
        side = max(1, round(crop_side * face_fraction(margin)))
        left = (crop_side - side) // 2
        return cls(left, left, side)


def landmark_model_file() -> Path:
    """The 68-point model inside the installed face_recognition_models, found without importing it
    (its __init__ imports pkg_resources, which recent setuptools no longer ship)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise LandmarksUnavailable(f"face_recognition_models is not installed; {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / LANDMARK_MODEL
    if not path.is_file():
        raise LandmarksUnavailable(f"{path} is missing; {INSTALL_HINT}")
    return path


class Landmarker:
    """68 landmarks of a uint8 RGB crop from a given face square: (68, 2) float x, y in its pixels."""

    def __init__(self) -> None:
        try:
            import dlib
        except ImportError as error:
            raise LandmarksUnavailable(f"dlib is not importable ({error}); {INSTALL_HINT}") from error
        self._predictor: Any = dlib.shape_predictor(str(landmark_model_file()))
        self._rectangle = dlib.rectangle

    def __call__(self, rgb: np.ndarray, square: FaceSquare) -> np.ndarray:
        rect = self._rectangle(square.left, square.top, square.left + square.side - 1, square.top + square.side - 1)
        shape = self._predictor(np.ascontiguousarray(rgb), rect)
        return np.array([(point.x, point.y) for point in shape.parts()], dtype=float)
