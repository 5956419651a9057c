"""The registry of published age/gender models: each answers, per face, an age and P(female), framing and
preprocessing the face exactly as its own code does.

Each family lives in its own module of this room and registers itself at import; the imports at the
bottom of this file (one line per family) make `names()` list them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Protocol, Sequence

import numpy as np


@dataclass(frozen=True)
class ModelCard:
    name: str
    family: str
    source: str
    trained_on: str
    in_sample: Mapping[str, str]  # dataset adapter -> "yes" | "partly" | "no" | "unknown"; absent: unknown
    age_bands: tuple[tuple[int, int], ...] | None  # None: the model predicts years
    weights: tuple[str, ...]  # keys of params.yaml `weights:` the download stage must fetch for it


@dataclass(frozen=True)
class FacePredictions:
    age: np.ndarray  # (n,) float64 years; NaN for a band model
    band_probs: np.ndarray | None  # (n, len(card.age_bands)) for a band model, else None
    p_female: np.ndarray  # (n,) float64


class PublishedModel(Protocol):
    card: ModelCard

    def predict(self, photos: Sequence[np.ndarray], boxes: np.ndarray) -> FacePredictions:
        """photos: BGR uint8 as cv2.imread gives them; boxes: (n, 4) float x, y, w, h of each face."""
        ...


_REGISTRY: dict[str, tuple[ModelCard, Callable[[Path], PublishedModel]]] = {}


def register(card: ModelCard, loader: Callable[[Path], PublishedModel]) -> None:
    """Add (or replace) a published model; `loader(weights_dir)` builds it from params' paths.weights."""
    _REGISTRY[card.name] = (card, loader)


def names() -> list[str]:
    return sorted(_REGISTRY)


def card(name: str) -> ModelCard:
    if name not in _REGISTRY:
        raise KeyError(f"{name!r} is not a registered published model; registered: {', '.join(names())}")
    return _REGISTRY[name][0]


def load(name: str, weights_dir: Path) -> PublishedModel:
    """The model `name`, its weights read from `weights_dir` (params.paths.weights); a missing file is a
    FileNotFoundError naming `python -m stages.download --only <key>`."""
    card(name)
    return _REGISTRY[name][1](Path(weights_dir))


from stages.lib.backbones import face_api  # noqa: E402,F401  (registers face_api)
