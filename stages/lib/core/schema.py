"""The contracts between stages: the manifest, the rejects and the predictions table.

Manifest (one row per face, parquet):
    id          stable string id, `<dataset>/<path relative to the dataset root>` (+ `#k` for a k-th face)
    dataset     the dataset's name in params.yaml
    path        the image file, relative to the project root
    age         int, years
    gender      'male' | 'female'
    race        one of labels.RACES, or null where the dataset has no race
    identity    person id where the dataset knows it (IMDB-Wiki celeb_id), else null
    box         [x, y, w, h] face box in the image's pixels, or null
    cropped     the image is already a face crop (UTKFace aligned, FairFace): crop only resizes it
    source_meta free text: what the adapter read the row from
Later stages add columns (crop: crop_path, crop_box, detector; split: split) and keep the others.

Rejects (CSV): dataset, path, stage, reason. Every row entering a stage leaves it in one or the other.

Predictions (parquet/CSV): id, dataset, split, age, age_pred, age_pred_argmax, gender,
gender_prob_female, gender_pred, race, experiment. The age band is derived from params, never stored.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from stages.lib.core.errors import UserError

MANIFEST_COLUMNS = ["id", "dataset", "path", "age", "gender", "race", "identity", "box", "cropped", "source_meta"]
REJECT_COLUMNS = ["dataset", "path", "stage", "reason"]
PREDICTION_COLUMNS = [
    "id", "dataset", "split", "age", "age_pred", "age_pred_argmax",
    "gender", "gender_prob_female", "gender_pred", "race", "experiment",
]
# The measure stage's table (data/measurements/measurements.parquet), one row per crop, keyed by `id`:
# apparent skin colour (L* 0-100, h* degrees), photo quality, face size in the source photo (pixels),
# head pose (degrees); null where not measurable, and then `problem` says why (docs/measurements.md).
MEASUREMENT_COLUMNS = [
    "id", "skin_lightness", "skin_hue", "skin_pixels", "clipped_dark", "clipped_bright", "background_luminance",
    "contrast", "sharpness", "face_size", "yaw", "pitch", "roll", "problem",
]
# Written after those: the labelled age band of datasets that give bands only (FairFace: `20-29`; then
# `age` is the band's midpoint), null elsewhere; evaluation judges band accuracy on it. Optional on input.
BAND_COLUMN = "age_band_source"
# Also written after those, optional on input: the face's resampling cluster (faces that are not
# independent: one person, or look-alikes the split keeps together), null for a face on its own. The
# bootstrap and permutation tests draw clusters, not faces (evaluation/intervals.py).
CLUSTER_COLUMN = "cluster"


def resampling_clusters(rows: pd.DataFrame) -> pd.Series:
    """Each manifest row's resampling cluster: its identity where the dataset knows it (one person),
    else its look-alike cluster from the split (`cluster`), else null (a face on its own)."""
    none = pd.Series(None, index=rows.index, dtype=object)
    dataset = rows["dataset"].astype(str) if "dataset" in rows.columns else pd.Series("", index=rows.index)
    identity = rows["identity"].astype(object) if "identity" in rows.columns else none
    labelled = dataset + ":identity:" + identity.astype(str)
    look_alike = rows[CLUSTER_COLUMN].astype(object) if CLUSTER_COLUMN in rows.columns else none
    return labelled.where(identity.notna(), look_alike).rename(CLUSTER_COLUMN)


class SchemaError(UserError, ValueError):
    """A table that does not follow its contract."""


def empty_manifest() -> pd.DataFrame:
    return pd.DataFrame({column: pd.Series(dtype=object) for column in MANIFEST_COLUMNS})


def empty_rejects() -> pd.DataFrame:
    return pd.DataFrame({column: pd.Series(dtype=object) for column in REJECT_COLUMNS})


def manifest_frame(rows: list[dict]) -> pd.DataFrame:
    """A manifest from row dicts, columns in contract order, dtypes fixed."""
    if not rows:
        return empty_manifest()
    frame = pd.DataFrame(rows)
    require_columns(frame, MANIFEST_COLUMNS, "manifest")
    frame = frame[MANIFEST_COLUMNS + [c for c in frame.columns if c not in MANIFEST_COLUMNS]]
    frame["age"] = frame["age"].astype("int64")
    frame["cropped"] = frame["cropped"].astype(bool)
    return frame


def rejects_frame(rows: list[dict]) -> pd.DataFrame:
    if not rows:
        return empty_rejects()
    frame = pd.DataFrame(rows)
    require_columns(frame, REJECT_COLUMNS, "rejects")
    return frame[REJECT_COLUMNS]


def require_columns(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SchemaError(f"{what} lacks columns {missing}; it has {list(frame.columns)}")


def write_manifest(frame: pd.DataFrame, path: Path) -> None:
    require_columns(frame, MANIFEST_COLUMNS, f"manifest {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)


def read_manifest(path: Path) -> pd.DataFrame:
    if not Path(path).exists():
        raise FileNotFoundError(f"{path} not found: run the stage that writes it first (`dvc repro`)")
    frame = pd.read_parquet(path)
    require_columns(frame, MANIFEST_COLUMNS, f"manifest {path}")
    return frame


def write_rejects(frame: pd.DataFrame, path: Path) -> None:
    require_columns(frame, REJECT_COLUMNS, f"rejects {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
