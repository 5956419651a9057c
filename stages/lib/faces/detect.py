"""Face detectors: OpenCV's YuNet (an ONNX model the download stage fetches) and Haar cascade.

Both take a BGR photo and return `Detection`s in the photo's pixels; photos are shrunk to at most
DETECT_MAX_SIDE before detection and the boxes scaled back.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from stages.lib.core.cli import UserError
from stages.lib.faces.geometry import Detection

DETECTORS = ("yunet", "haar")
# Photos are detected at most this large (longest side, pixels): faster, and YuNet's anchors are
# sized for faces of a few to a few hundred pixels. Boxes are scaled back to the photo's pixels.
DETECT_MAX_SIDE = 640
HAAR_CASCADE = "haarcascade_frontalface_default.xml"
HAAR_SCALE_FACTOR = 1.1
HAAR_MIN_NEIGHBOURS = 5
YUNET_NMS_THRESHOLD = 0.3


class CropError(UserError, RuntimeError):
    """The crop stage (or predict) cannot run at all (no detector model, unwritable output); the message
    says the fix."""


class Detector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[Detection]: ...


def _downscaled(image: np.ndarray) -> tuple[np.ndarray, float]:
    """The image shrunk to at most DETECT_MAX_SIDE on its longest side, and the factor applied."""
    longest = max(image.shape[:2])
    if longest <= DETECT_MAX_SIDE:
        return image, 1.0
    scale = DETECT_MAX_SIDE / longest
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


class YuNetDetector:
    """OpenCV's FaceDetectorYN with the YuNet ONNX model; keeps faces scoring at least `min_score`."""

    name = "yunet"

    def __init__(self, model_path: Path, min_score: float):
        if not Path(model_path).is_file():
            raise CropError(
                f"YuNet model {model_path} not found: run `python -m stages.download --only yunet` "
                "(or `dvc repro download`), or set crop.detector: haar in params.yaml"
            )
        self._model = cv2.FaceDetectorYN.create(
            str(model_path), "", (320, 320), score_threshold=min_score, nms_threshold=YUNET_NMS_THRESHOLD
        )

    def detect(self, image: np.ndarray) -> list[Detection]:
        small, scale = _downscaled(image)
        self._model.setInputSize((small.shape[1], small.shape[0]))
        _, faces = self._model.detect(small)
        if faces is None:
            return []
        return [Detection(tuple(float(v) / scale for v in face[:4]), float(face[-1])) for face in faces]


def check_yunet_model(path: Path) -> None:
    """ValueError unless OpenCV loads `path` as a YuNet face detector (the download stage's check)."""
    try:
        cv2.FaceDetectorYN.create(str(path), "", (320, 320))
    except cv2.error as exc:
        raise ValueError(f"OpenCV cannot load it as a YuNet ONNX model ({str(exc).strip().splitlines()[-1]})") from None


class HaarDetector:
    """OpenCV's frontal-face Haar cascade (ships with opencv-python; no download), scale 1.1, 5 neighbours."""

    name = "haar"

    def __init__(self):
        folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
        path = os.path.join(folder, HAAR_CASCADE) if folder else None
        self._cascade = cv2.CascadeClassifier(path) if path and os.path.isfile(path) else None
        if self._cascade is None or self._cascade.empty():
            raise CropError(
                f"OpenCV's {HAAR_CASCADE} was not found (OpenCV {cv2.__version__}; version 5 dropped the "
                "cascades): install opencv-python-headless<5 or set crop.detector: yunet"
            )

    def detect(self, image: np.ndarray) -> list[Detection]:
        small, scale = _downscaled(image)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
        found = self._cascade.detectMultiScale(grey, scaleFactor=HAAR_SCALE_FACTOR, minNeighbors=HAAR_MIN_NEIGHBOURS)
        return [Detection(tuple(float(v) / scale for v in box), 1.0) for box in found]


def make_detector(name: str, yunet_model: Path | None, min_score: float) -> Detector:
    if name == "yunet":
        if yunet_model is None:
            raise CropError("crop.detector is yunet but no YuNet model path was given")
        return YuNetDetector(yunet_model, min_score)
    if name == "haar":
        return HaarDetector()
    raise CropError(f"crop.detector: {name!r} is not one of {', '.join(DETECTORS)}")
