"""The measurement table of a crops manifest: which crop to measure with which face square and
landmarks, and each face's size in its source photo (the rest is `measure.py`'s, per face).

- The face square: the one the identity pass starts dlib from (`landmarks.FaceSquare.central`), from
  the crop stage's margin, or 0.8 of a dataset's own face crop (route `precropped`).
- Landmarks a dataset gives (column `landmarks`: 68 x, y in the source photo's pixels, e.g. the drawn
  demo faces) are moved into the crop's pixels through its `crop_box`; other faces get dlib's.
- face_size: the face box's height in the source photo: the dataset's box where it gives one, else the
  detected crop region's side less the margin; null for a dataset's own face crops, whose source size
  is not known (`no source size: fixed-size chips`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stages.lib.core.schema import MEASUREMENT_COLUMNS
from stages.lib.faces.geometry import valid_box
from stages.lib.faces.measure import FaceToMeasure

MEASUREMENTS_FILE = "measurements.parquet"  # inside params.paths.measurements
NO_SOURCE_SIZE = "no source size: fixed-size chips"


def is_ready_crop(detector) -> bool:
    return detector == "precropped"


def landmarks_in_crop(points, crop_box, crop_size: int) -> np.ndarray | None:
    """(68, 2) landmarks given in the source photo moved into a `crop_size`-pixel crop of the square
    region `crop_box` [x, y, side, side]; None when the row gives none."""
    if points is None or crop_box is None or (isinstance(points, float) and np.isnan(points)):
        return None
    points = np.asarray([np.asarray(point, dtype=float) for point in points])
    x, y, side = float(crop_box[0]), float(crop_box[1]), float(crop_box[2])
    return (points - (x, y)) * (crop_size / side)


def faces_to_measure(crops: pd.DataFrame, *, margin: float, crop_size: int) -> list[FaceToMeasure]:
    given = crops["landmarks"] if "landmarks" in crops.columns else pd.Series(None, index=crops.index)
    return [
        FaceToMeasure(str(path), np.nan if is_ready_crop(detector) else float(margin),
                      landmarks_in_crop(points, box, crop_size))
        for path, detector, box, points in zip(crops["crop_path"], crops["detector"], crops["crop_box"], given)
    ]


def face_size(box, crop_box, detector, margin: float) -> float | None:
    """The face box's height in the source photo's pixels, None for a dataset's own face crop."""
    if is_ready_crop(detector):
        return None
    if valid_box(box):
        return float(np.asarray(box, dtype=float).ravel()[3])
    return float(crop_box[2]) / (1 + 2 * margin)


def measurement_table(crops: pd.DataFrame, rows: list[dict], margin: float) -> pd.DataFrame:
    """The measurements in MEASUREMENT_COLUMNS, one row per crop, in the crops manifest's order."""
    table = pd.DataFrame(rows, index=crops.index)
    table.insert(0, "id", crops["id"].astype(str))
    table["face_size"] = [face_size(box, crop_box, detector, margin) for box, crop_box, detector
                          in zip(crops["box"], crops["crop_box"], crops["detector"])]
    no_size = table["face_size"].isna() & crops["detector"].map(is_ready_crop)
    table.loc[no_size, "problem"] = [_joined(problem, NO_SOURCE_SIZE) for problem in table.loc[no_size, "problem"]]
    table = table[MEASUREMENT_COLUMNS].reset_index(drop=True)
    floats = [column for column in MEASUREMENT_COLUMNS if column not in ("id", "skin_pixels", "problem")]
    table[floats] = table[floats].astype("float64")
    table["skin_pixels"] = table["skin_pixels"].astype("Int64")
    table["problem"] = table["problem"].astype(object).where(table["problem"].notna(), None)
    return table


def _joined(problem, extra: str) -> str:
    return extra if problem is None or (isinstance(problem, float) and np.isnan(problem)) else f"{problem}; {extra}"


def problem_counts(table: pd.DataFrame) -> dict[str, int]:
    """How many faces got each reason (a face may have two)."""
    reasons = table["problem"].dropna().str.split("; ").explode()
    return {str(reason): int(count) for reason, count in reasons.value_counts().items()}
