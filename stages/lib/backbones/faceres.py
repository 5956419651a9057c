"""HSE FaceRes (Savchenko, HSE_FaceRec_tf): a MobileNet trained for face identity on VGGFace2, its
global pooling (1,024 wide), a dense `feats` layer (256, relu), then `age_pred` (softmax over ages
1-100) and `gender_pred` (sigmoid P(male)) trained on IMDB-Wiki. The published model `faceres` and
the backbone `faceres` (registry.py).

Weights: the TFJS graph `models/faceres.json` + `faceres.bin` (float16, dequantised to float32) of npm
`@vladmandic/human@3.3.6`, run in the project's TensorFlow by tfjs_graph.py.

Fed as its authors' code feeds it (age_gender_identity/facial_analysis.py), not as the Human library
does (Human's own cut and scaling move its answers by years):
- the face box as integers, grown by 10 pixels on each side, clipped at the photo's borders; a box
  that is the whole photo (a ready crop, `--precropped`) is taken whole, no margin;
- resized to 224x224 with cv2's INTER_LINEAR, BGR, float32, ImageNet channel means subtracted
  (103.939, 116.779, 123.68);
- the authors' age: the probability-weighted index of the two likeliest classes, plus one
  (`age_own`); the study's age: the softmax's expected value over ages 1-100 (`age`);
- male where the sigmoid is at least 0.6 (the authors' `is_male`).

As a backbone: the features are the 1,024-wide pooled embedding; the published outputs (P(female),
P(male), P(age = 0..100), age 0 impossible) are stored beside them by the same pass, so `published`
is the model as published; init `published` fine-tunes `feats` and the output layer of each head
from their published weights (`published_layers`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from stages.lib.core.setup_check import Needs
from stages.lib.backbones.cards import FacePredictions, ModelCard, PublishedLayer, weight_files

INPUT_SIZE = 224
MEAN_BGR = (103.939, 116.779, 123.68)
MARGIN_PIXELS = 10
MALE_AT = 0.6
AGE_CLASSES = 100            # ages 1..100
EMBEDDING_DIM = 1024
PUBLISHED_OUTPUTS = 2 + 1 + AGE_CLASSES  # P(female), P(male), P(age = 0..100)
GRAPH_KEY, WEIGHTS_KEY = "faceres_graph", "faceres_weights"
GRAPH_FILE, WEIGHTS_FILE = f"{GRAPH_KEY}.json", f"{WEIGHTS_KEY}.bin"  # in the weights folder
OUTPUTS = ("global_pooling/Mean", "age_pred/Softmax", "gender_pred/Sigmoid")
BATCH = 32
FRAMING = ("the authors' (facial_analysis.py): face box + 10 px each side, clipped; a ready crop whole; "
           "cv2 INTER_LINEAR to 224, BGR, ImageNet means subtracted (not the Human library's feeding)")
AGE_READING = ("age: the softmax's expected value over ages 1-100 (the study's reading); age_own: the authors' "
               "probability-weighted index of the two likeliest classes, plus one")

CARD = ModelCard(
    name="faceres",
    family="HSE FaceRes (Savchenko): MobileNet identity body (VGGFace2) + age/gender heads (IMDB-Wiki)",
    source="npm tarball @vladmandic/human@3.3.6 (models/faceres.json + faceres.bin, TFJS graph, float16)",
    trained_on="body: VGGFace2 (identity); heads: IMDB-Wiki (age, gender)",
    in_sample={"imdb_wiki": "yes", "utkface": "no", "fairface": "no", "synthetic": "no"},
    age_bands=None,
    weights=(GRAPH_KEY, WEIGHTS_KEY),
    male_at=MALE_AT,
    age_reading=AGE_READING,
    framing=FRAMING,
    needs=Needs(("tensorflow",)),
)


def is_whole_photo(photo: np.ndarray, box: Sequence[float]) -> bool:
    x, y, w, h = (float(v) for v in box)
    return x <= 0 and y <= 0 and x + w >= photo.shape[1] and y + h >= photo.shape[0]


def face_region(photo: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """The face's pixels as the authors cut them: int box, 10 px margin, clipped; a whole-photo box whole."""
    if is_whole_photo(photo, box):
        return photo
    height, width = photo.shape[:2]
    x, y, w, h = (float(v) for v in box)
    x1, y1, x2, y2 = int(x), int(y), int(x + w), int(y + h)
    x1, y1 = max(0, x1 - MARGIN_PIXELS), max(0, y1 - MARGIN_PIXELS)
    x2, y2 = min(width, x2 + MARGIN_PIXELS), min(height, y2 + MARGIN_PIXELS)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"the face box {tuple(box)} lies outside the {width}x{height} photo")
    return photo[y1:y2, x1:x2]


def net_input(photo_bgr: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """The (224, 224, 3) float32 tensor the authors feed the network for this face."""
    face = cv2.resize(face_region(photo_bgr, box), (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
    return face.astype(np.float32) - np.asarray(MEAN_BGR, dtype=np.float32)


def authors_age(age_probs: np.ndarray) -> np.ndarray:
    """The authors' age: the two likeliest classes' indices weighted by their renormalised
    probabilities, plus one (ages start at 1)."""
    probs = np.asarray(age_probs, dtype=np.float64)
    top = np.argsort(probs, axis=1)[:, ::-1][:, :2]
    weights = np.take_along_axis(probs, top, axis=1)
    return 1.0 + (top * weights).sum(axis=1) / weights.sum(axis=1)


def expected_age(age_probs: np.ndarray) -> np.ndarray:
    """The study's age: the expected value of the softmax over ages 1..100."""
    probs = np.asarray(age_probs, dtype=np.float64)
    return probs @ np.arange(1, probs.shape[1] + 1, dtype=np.float64)


def published_row(age_probs: np.ndarray, p_male: np.ndarray) -> np.ndarray:
    """(n, PUBLISHED_OUTPUTS) float32: P(female), P(male), P(age = 0) = 0, P(age = 1..100)."""
    p_male = np.asarray(p_male, dtype=np.float64).reshape(-1, 1)
    n = len(p_male)
    return np.concatenate([1.0 - p_male, p_male, np.zeros((n, 1)), np.asarray(age_probs, dtype=np.float64)],
                          axis=1).astype(np.float32)


class FaceResNet:
    """The graph, batch by batch: net inputs (n, 224, 224, 3) -> embedding, age softmax, P(male)."""

    def __init__(self, weights_dir: Path):
        from stages.lib.backbones.tfjs_graph import read_graph_model, runner

        paths = weight_files(weights_dir, {GRAPH_KEY: GRAPH_FILE, WEIGHTS_KEY: WEIGHTS_FILE})
        self.graph = read_graph_model(paths[GRAPH_KEY], [paths[WEIGHTS_KEY]])
        self._run = runner(self.graph, ["input_1"], OUTPUTS)

    def __call__(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import tensorflow as tf

        parts = [[], [], []]
        for start in range(0, len(inputs), BATCH):
            for part, tensor in zip(parts, self._run(tf.constant(inputs[start:start + BATCH], tf.float32))):
                part.append(np.asarray(tensor, dtype=np.float32))
        if not parts[0]:
            return np.empty((0, EMBEDDING_DIM), np.float32), np.empty((0, AGE_CLASSES), np.float32), np.empty(0)
        embedding, age, gender = (np.concatenate(part) for part in parts)
        return embedding, age, gender[:, 0]


class FaceRes:
    """The published model `faceres`, framed and read as its authors' code does."""

    card = CARD

    def __init__(self, weights_dir: Path):
        self.net = FaceResNet(weights_dir)

    def predict(self, photos: Sequence[np.ndarray], boxes: np.ndarray) -> FacePredictions:
        inputs = np.stack([net_input(photo, box) for photo, box in zip(photos, np.asarray(boxes, dtype=float))])
        _, age_probs, p_male = self.net(inputs)
        return FacePredictions(age=expected_age(age_probs), band_probs=None,
                               p_female=1.0 - p_male.astype(np.float64), age_own=authors_age(age_probs))


def load(weights_dir: Path) -> FaceRes:
    return FaceRes(weights_dir)


def crop_boxes(sizes: Sequence[int], margins: np.ndarray) -> np.ndarray:
    """The face box inside each square crop of side `sizes[i]` cut with `margins[i]` (the crop stage's:
    the central square of side / (1 + 2 margin); NaN, a ready crop: the whole crop)."""
    sides = np.asarray(sizes, dtype=float)
    margins = np.asarray(margins, dtype=float)
    face = sides / (1 + 2 * np.nan_to_num(margins))
    ready = np.isnan(margins)
    offset = np.where(ready, 0.0, (sides - face) / 2)
    return np.column_stack([offset, offset, np.where(ready, sides, face), np.where(ready, sides, face)]).reshape(-1, 4)


def embedder(weights_dir: Path):
    """embed(images, margins) -> (n, EMBEDDING_DIM + PUBLISHED_OUTPUTS) float32: the pooled embedding
    and the published outputs, each face framed as FaceRes.predict frames it. `images` are the RGB
    crops as the features pass reads them with the model's own reader (cv2, registry `reader`)."""
    net = FaceResNet(weights_dir)

    def embed(images, margins) -> np.ndarray:
        images = np.asarray(images)
        boxes = crop_boxes([image.shape[0] for image in images], np.asarray(margins))
        inputs = np.stack([net_input(np.ascontiguousarray(image[..., ::-1]), box) for image, box in zip(images, boxes)]
                          ) if len(images) else np.empty((0, INPUT_SIZE, INPUT_SIZE, 3), np.float32)
        embedding, age_probs, p_male = net(inputs)
        return np.concatenate([embedding, published_row(age_probs, p_male)], axis=1)

    return embed


def published_layers(weights_dir: Path) -> dict[str, tuple]:
    """{task: its published layers on the embedding, as `PublishedLayer`s}: `feats` (1,024 -> 256,
    relu), then the age softmax (the 100 published classes after an age-0 class that can never win)
    or the gender layer as a two-way softmax equal to the published sigmoid ([0, z] -> P(female),
    P(male) = sigmoid(z))."""
    from stages.lib.backbones.tfjs_graph import read_graph_model

    paths = weight_files(weights_dir, {GRAPH_KEY: GRAPH_FILE, WEIGHTS_KEY: WEIGHTS_FILE})
    weights = read_graph_model(paths[GRAPH_KEY], [paths[WEIGHTS_KEY]]).weights
    feats = PublishedLayer(weights["feats/kernel"], weights["feats/bias"], "relu", "feats")
    age_kernel = np.concatenate([np.zeros((weights["age_pred/kernel"].shape[0], 1), np.float32),
                                 weights["age_pred/kernel"]], axis=1)
    age_bias = np.concatenate([np.float32([-1e4]), weights["age_pred/bias"]])
    gender_kernel = np.concatenate([np.zeros_like(weights["gender_pred/kernel"]), weights["gender_pred/kernel"]], axis=1)
    gender_bias = np.concatenate([np.zeros(1, np.float32), weights["gender_pred/bias"]])
    return {"age": (feats, PublishedLayer(age_kernel, age_bias)),
            "gender": (feats, PublishedLayer(gender_kernel, gender_bias))}
