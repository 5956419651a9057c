"""How the faces a head learned from were framed, recorded beside the heads, so new faces are framed alike.

Heads learn the framing of their training faces: a dataset's own tight chips (UTKFace aligned) or a
detector's or dataset's box grown by a margin (IMDB-Wiki's crops, UTKFace in the wild re-cropped). A
face framed otherwise is a different input. The train and pretrain stages record the framing of
their training faces in <models>/<experiment>/framing.json (`training_framing`, `published_framing`),
and `stages.predict` frames new faces the same way unless told otherwise (`choose_framing` warns).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from stages.lib.core.files import write_json
from stages.lib.core.params import Experiment, Params

FRAMING_FILE = "framing.json"
# serengil trained the published age/gender heads on IMDB-Wiki's released crops: the face box plus 40%.
PUBLISHED_MARGIN = 0.4


@dataclass(frozen=True)
class Framing:
    """How the faces a head learned from were framed: `chip` (a dataset's own face crop, taken whole) or
    `margin` (a face box grown by `margin` on each side, then squared: the crop stage's geometry)."""

    kind: Literal["chip", "margin"]
    margin: float | None
    source: str  # where the framing was read from, for the user

    def describe(self) -> str:
        return "ready face crops (chips), taken whole" if self.kind == "chip" else f"face boxes plus a {self.margin:g} margin"


def training_framing(rows: pd.DataFrame, margin: float, dataset: str) -> Framing:
    """The framing of training rows of the crops manifest: `chip` when most were the dataset's own face
    crops (crop route `precropped`; `cropped` where the route is not recorded), else the crop stage's
    `margin` around a box (the dataset's or a detector's)."""
    own = rows["detector"].eq("precropped") if "detector" in rows.columns else rows["cropped"].fillna(False).astype(bool)
    chips = float(own.mean()) if len(rows) else 0.0
    source = f"{len(rows):,} training faces of {dataset}, {chips:.0%} of them ready face crops"
    return Framing("chip", None, source) if chips > 0.5 else Framing("margin", float(margin), source)


def published_framing() -> Framing:
    return Framing("margin", PUBLISHED_MARGIN, "the published heads: IMDB-Wiki's released crops (face box + 40%)")


def heads_framing(experiment: Experiment, train: pd.DataFrame, params: Params) -> Framing:
    """The framing of the faces an experiment's heads learned from: the pretrain stage's for the published
    heads used as they are, else the finetune dataset's training faces'."""
    if not experiment.is_baseline:
        return training_framing(train, params.crop.margin, params.roles.finetune)
    framing = read_framing(params.paths.pretrain)
    if framing is None:
        raise FileNotFoundError(f"{params.paths.pretrain}/{FRAMING_FILE} not found: run the pretrain stage first "
                                "(`dvc repro pretrain`)")
    return framing


def write_framing(directory: Path, framing: Framing) -> None:
    write_json(asdict(framing), Path(directory) / FRAMING_FILE)


def read_framing(directory: Path) -> Framing | None:
    """The framing recorded beside the heads in `directory`; None for heads trained before it was recorded."""
    path = Path(directory) / FRAMING_FILE
    return Framing(**json.loads(path.read_text())) if path.is_file() else None


def choose_framing(recorded: Framing | None, precropped: bool, margin: float | None, fallback_margin: float
                   ) -> tuple[Framing, list[str]]:
    """The framing to cut new faces with, and warnings: the recorded one unless the user overrides it
    (`precropped`: take each photo whole as a chip; `margin`: detect and grow the box by it)."""
    if precropped:
        chosen = Framing("chip", None, "--precropped")
    elif margin is not None:
        chosen = Framing("margin", float(margin), "--margin")
    elif recorded is not None:
        return recorded, []
    else:
        return Framing("margin", fallback_margin, "params crop.margin"), [
            f"no {FRAMING_FILE} beside these heads (trained before framing was recorded): faces are detected and "
            f"cut with params' crop.margin {fallback_margin:g}; re-run `dvc repro` to record how they were trained"]
    if recorded is None or (recorded.kind, recorded.margin) == (chosen.kind, chosen.margin):
        return chosen, []
    return chosen, [f"{chosen.source} frames faces as {chosen.describe()}, but these heads were trained on "
                    f"{recorded.describe()} ({recorded.source}): expect worse predictions"]
