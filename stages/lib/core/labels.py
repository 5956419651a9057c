"""Label vocabularies and their normalisation, shared by every dataset adapter and the audit.

Labels are normalised once, here: gender to `male`/`female`, race to the UTKFace five
(`white`, `black`, `asian`, `indian`, `others`). Age bands come from params (lower edges), and every
breakdown derives its band labels from them with `band_labels` / `age_band`.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

import numpy as np
import pandas as pd

from stages.lib.core.errors import UserError

GENDERS = ("male", "female")
RACES = ("white", "black", "asian", "indian", "others")
DEFAULT_AGE_BANDS = (0, 16, 31, 46, 61)  # the study's bands' lower edges: 0-15, 16-30, 31-45, 46-60, 61+

# UTKFace codes: gender 0 male, 1 female; race 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others.
_GENDER_WORDS = {
    "male": "male", "m": "male", "man": "male", "men": "male",
    "female": "female", "f": "female", "woman": "female", "women": "female",
}
_RACE_WORDS = {
    "white": "white", "caucasian": "white",
    "black": "black", "african american": "black",
    "asian": "asian", "east asian": "asian", "southeast asian": "asian",
    "indian": "indian",
    "others": "others", "other": "others",
    "middle eastern": "others", "latino_hispanic": "others", "latino hispanic": "others", "latino": "others",
}


class LabelError(UserError, ValueError):
    """A label that no rule maps to the normalised vocabulary."""


def as_code(value) -> int | None:
    """An integer code from 0, '0', 0.0 or '0.0'; None when the value is not a whole number."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or number != int(number):
        return None
    return int(number)


def _is_missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def normalise_gender(value) -> str:
    """`male`/`female` from a UTKFace code (0/1, also '0.0') or a word; LabelError otherwise."""
    if _is_missing(value):
        raise LabelError("gender is missing")
    code = as_code(value)
    if code is not None:
        if code in (0, 1):
            return GENDERS[code]
        raise LabelError(f"gender code {value!r} is not 0 (male) or 1 (female)")
    word = str(value).strip().lower()
    if word in _GENDER_WORDS:
        return _GENDER_WORDS[word]
    raise LabelError(f"gender {value!r} is not a known word or code")


def normalise_race(value) -> str:
    """One of RACES from a UTKFace code (0..4, also '2.0') or a word (FairFace's seven fold into five)."""
    if _is_missing(value):
        raise LabelError("race is missing")
    code = as_code(value)
    if code is not None:
        if 0 <= code < len(RACES):
            return RACES[code]
        raise LabelError(f"race code {value!r} is not between 0 and {len(RACES) - 1}")
    word = str(value).strip().lower().replace("-", " ")
    if word in _RACE_WORDS:
        return _RACE_WORDS[word]
    raise LabelError(f"race {value!r} is not a known word or code")


def normalise_age(value) -> int:
    """A whole, non-negative age in years; LabelError for anything else."""
    if _is_missing(value):
        raise LabelError("age is missing")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise LabelError(f"age {value!r} is not a number") from None
    if math.isnan(number) or math.isinf(number):
        raise LabelError(f"age {value!r} is not a number")
    if number < 0 or number != int(number):
        raise LabelError(f"age {value!r} is not a whole non-negative number of years")
    return int(number)


_CLOSED_BAND = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")
_OPEN_BAND = re.compile(r"^\s*more than\s+(\d+)\s*$", re.IGNORECASE)


def labelled_band_bounds(band) -> tuple[int, float]:
    """(lowest, highest) whole age of a labelled age band, as datasets that give bands only write them
    (FairFace): `20-29` -> (20, 29), `more than 70` -> (70, inf). LabelError for anything else."""
    closed = _CLOSED_BAND.match(band) if isinstance(band, str) else None
    if closed and int(closed.group(1)) <= int(closed.group(2)):
        return int(closed.group(1)), int(closed.group(2))
    opened = _OPEN_BAND.match(band) if isinstance(band, str) else None
    if opened:
        return int(opened.group(1)), math.inf
    raise LabelError(f"age band {band!r} is not `a-b` or `more than N`")


def band_labels(edges: Sequence[int]) -> list[str]:
    """Labels for lower edges [0, 16, 31] -> ['0-15', '16-30', '31+']."""
    labels = [f"{low}-{high - 1}" for low, high in zip(edges, edges[1:])]
    return labels + [f"{edges[-1]}+"]


def age_band(ages, edges: Sequence[int]) -> pd.Categorical:
    """The band label of each age (ordered categorical); ages below the first edge get NaN."""
    ages = np.asarray(ages, dtype=float)
    index = np.searchsorted(np.asarray(edges, dtype=float), ages, side="right") - 1
    labels = band_labels(edges)
    codes = np.where((index >= 0) & ~np.isnan(ages), index, -1)
    return pd.Categorical.from_codes(codes, categories=labels, ordered=True)
