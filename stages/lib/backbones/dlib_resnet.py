"""dlib's ResNet face-recognition model as an optional second backbone: 128-d embeddings of face crops.

Install: pip install -e ".[dlib]" (dlib-bin, a prebuilt dlib, and face_recognition_models, which
ships the model files). Without them `load_dlib_models` raises `BackboneUnavailable` naming the fix.

Each crop goes through dlib's 5-point shape predictor, started from a face rectangle, and dlib's chip
cutter, which aligns the landmarks to a 150x150 chip, as `compute_face_descriptor(image, shape,
num_jitters=0)` does (deterministic: no jitter). The chips then go through dlib's recognition network
rebuilt in Keras from dlib's own model file (`dlib_net`), in batches on every core: the descriptors are
compute_face_descriptor's to float rounding (largest difference 5e-7 on 200 real UTKFace and FairFace
faces, against descriptors of norm about 1.4; tests hold it). The rectangle is the crop's central square (`face_rect`) covering
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
- Speed: dlib's own network (dlib-bin, no BLAS) embeds 12-15 faces/s on one core, one thread; the
  Keras rebuild about 150 faces/s on 2 cores (landmarks 0.4 ms and chip 0.5 ms a face in dlib):
  bench/bench_identity.py measures both on the same faces.
- Neighbours: with a random 70/30 split of those 3,000 UTKFace faces, 15.9% of test faces have a
  training face within 0.4 (15.6% at fraction 0.75, where radius 0.3 gives 3.8% and 0.6 95.7%,
  and the rest of this item was measured): 81% of babies (0-5) but 7.5-11% of older
  faces, and only 72% of those nearest neighbours share the gender, so it is mostly a crowded
  space (dlib's 0.6 'same person' threshold means little on UTKFace), not repeated people.
  Random pairs of adults lie within 0.4 in 0.004% of cases; of babies in 8%.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from stages.lib.core.errors import UserError

FEATURE_DIM = 128
CHIP_SIZE = 150  # compute_face_descriptor aligns each face to a 150x150 chip before the network
CHIP_PADDING = 0.25  # compute_face_descriptor's default: the chip shows a quarter more than the landmarks span
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
    """What an embedder needs: dlib's landmarks and chip cutter (dlib is imported only by
    `load_dlib_models`) and dlib's recognition network as a Keras model (`dlib_net`)."""

    shape_predictor: Any
    face_chip: Any       # dlib.get_face_chip(image, landmarks, size, padding)
    rectangle: type
    network: Any         # (N, 150, 150, 3) RGB chips -> (N, 128) descriptors


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
    """Import dlib, load the 5-point landmark model, and build the recognition network in Keras from
    dlib's own file (`dlib_net`: the same descriptors as dlib's, to float rounding, at several times the
    speed: dlib-bin's network runs on one core without BLAS)."""
    try:
        import dlib
    except ImportError as error:
        raise BackboneUnavailable(f"dlib is not importable ({error}); {INSTALL_HINT}") from error
    from stages.lib.backbones.dlib_net import read_layers, recognition_model

    recognition, landmarks = model_files()
    return DlibModels(
        shape_predictor=dlib.shape_predictor(str(landmarks)),
        face_chip=dlib.get_face_chip,
        rectangle=dlib.rectangle,
        network=recognition_model(read_layers(recognition), CHIP_SIZE),
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

    def chip(self, image: np.ndarray) -> np.ndarray:
        """The 150x150 chip `compute_face_descriptor` would align: 5 landmarks from the central face
        square, then dlib's own chip cutter (padding 0.25, as compute_face_descriptor's default)."""
        image = np.ascontiguousarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or image.shape[0] != image.shape[1]:
            raise ValueError(f"expected a square uint8 RGB crop (S, S, 3), got {image.dtype} {image.shape}")
        rect = self.models.rectangle(*face_rect(image.shape[0], self.face_fraction))
        landmarks = self.models.shape_predictor(image, rect)
        return self.models.face_chip(image, landmarks, size=CHIP_SIZE, padding=CHIP_PADDING)

    def embed(self, images: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """(N, 128) float32 embeddings of a list or (N, S, S, 3) array of uint8 RGB crops."""
        return describe_chips(self.models, [self.chip(image) for image in images])


def describe_chips(models: DlibModels, chips: Sequence[np.ndarray]) -> np.ndarray:
    """(N, 128) float32 descriptors of aligned chips, in one pass of the network."""
    if not len(chips):
        return np.empty((0, FEATURE_DIM), dtype=np.float32)
    return np.asarray(models.network(np.stack(chips), training=False), dtype=np.float32)


def margin_embedder(models: DlibModels):
    """embed(images, margins): each crop embedded from the face square its own margin implies (NaN:
    a dataset's own face crop), so that detected and ready-made crops are both aligned right."""
    embedders: dict[float, DlibEmbedder] = {}

    def embed(images, margins) -> np.ndarray:
        chips = []
        for image, margin in zip(images, margins):
            fraction = crop_face_fraction(None if np.isnan(margin) else float(margin))
            chips.append(embedders.setdefault(fraction, DlibEmbedder(models, fraction)).chip(np.asarray(image)))
        return describe_chips(models, chips)

    return embed
