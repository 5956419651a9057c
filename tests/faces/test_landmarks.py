"""The face square landmarks start from, and dlib's 68 landmarks on a real face (skipped without the
dlib extra or the shared photos)."""

import importlib.util
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from stages.lib.faces import landmarks
from stages.lib.faces.landmarks import FaceSquare, LandmarksUnavailable, face_fraction

UTKFACE = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "utkface-aligned-sample"


def test_the_face_square_follows_the_crops_margin():
    assert face_fraction(0.4) == pytest.approx(1 / 1.8)
    assert face_fraction(None) == face_fraction(math.nan) == 0.8
    assert FaceSquare.central(224, 0.4) == FaceSquare(50, 50, 124)
    assert FaceSquare.central(200, math.nan) == FaceSquare(20, 20, 160)
    with pytest.raises(ValueError):
        face_fraction(-0.1)


def test_a_missing_extra_names_the_fix(monkeypatch):
    monkeypatch.setattr(landmarks.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LandmarksUnavailable, match=r"pip install -e \".\[dlib\]\""):
        landmarks.landmark_model_file()


@pytest.mark.shared
@pytest.mark.skipif(importlib.util.find_spec("dlib") is None, reason="the dlib extra is not installed")
@pytest.mark.skipif(not UTKFACE.is_dir(), reason=f"real photos not found in {UTKFACE}")
def test_dlib_finds_the_eyes_above_the_mouth_inside_the_square():
    photo = sorted(UTKFACE.glob("*.jpg"))[0]
    rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    square = FaceSquare.central(rgb.shape[0], math.nan)
    points = landmarks.Landmarker()(rgb, square)
    assert points.shape == (68, 2)
    assert points[36:48, 1].mean() < points[48:60, 1].mean()
    centre = square.left + square.side / 2
    assert abs(points[30, 0] - centre) < 0.1 * square.side  # the nose tip near the square's middle
