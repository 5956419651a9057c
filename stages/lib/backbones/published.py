"""The published age/gender models, one table: each family's card and loader, `loader(weights_dir)
-> PublishedModel` (stages/lib/backbones/cards.py: what a card holds and a model answers). Each
predicts from a photo and a face box, reading and framing the face exactly as its own code does.

A new family is a module in this room (importing cards.py, never this file) and one row of MODELS.
"""

from __future__ import annotations

from pathlib import Path

from stages.lib.backbones import dlib_cydral, face_api, faceres, gear, levi_hassner, wide_resnet_published
from stages.lib.backbones.cards import Loader, ModelCard, PublishedModel

MODELS: dict[str, tuple[ModelCard, Loader]] = {
    family.CARD.name: (family.CARD, family.load)
    for family in (wide_resnet_published, dlib_cydral, face_api, levi_hassner, faceres, gear)
}


def names() -> list[str]:
    return sorted(MODELS)


def card(name: str) -> ModelCard:
    """The card of a listed model; KeyError listing the listed names otherwise."""
    if name not in MODELS:
        raise KeyError(f"{name!r} is not a registered published model; registered: {', '.join(names())}")
    return MODELS[name][0]


def load(name: str, weights_dir: Path) -> PublishedModel:
    """The model `name`, its weights read from `weights_dir` (params.paths.weights); a missing file is a
    FileNotFoundError naming `python -m stages.download --only <key>`."""
    card(name)
    return MODELS[name][1](Path(weights_dir))
