"""Datasets whose ages are labelled bands (FairFace): a predicted age judged by the band it lands in.

An MAE against a band's midpoint mixes the model's error with the band's width; age-band accuracy
does not. Such a set is judged by age-band accuracy and never pooled with exact ages.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from stages.lib.core.labels import LabelError, labelled_band_bounds
from stages.lib.core.schema import BAND_COLUMN


def in_source_band(age_pred, bands) -> np.ndarray:
    """1.0 where the predicted age (whole years) lies in the row's labelled band (`20-29`, `more than 70`),
    0.0 where it does not, NaN where the row has no band (exact-age datasets).

    For datasets labelled with age bands only (FairFace), whose `age` is a band's midpoint: an MAE
    against a midpoint mixes the model's error with the band's width, band accuracy does not.
    """
    years = np.floor(np.asarray(age_pred, dtype=float))
    result = np.full(len(years), np.nan)
    for position, band in enumerate(bands):
        try:
            low, high = labelled_band_bounds(band)
        except LabelError:
            continue
        result[position] = float(low <= years[position] <= high)
    return result


def ages_are_bands(overall: Mapping) -> bool:
    """Is every face's age a labelled band (FairFace: `age` is the band's midpoint)? Then an MAE mixes the
    model's error with the band's width: such a set is judged by age-band accuracy, and never pooled
    with exact ages."""
    return bool(overall.get("n")) and overall.get("n_age_band") == overall.get("n")


def exact_age_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows whose age is exact (no labelled band)."""
    return frame[frame[BAND_COLUMN].isna()] if BAND_COLUMN in frame.columns else frame

