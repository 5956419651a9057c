"""IMDB-Wiki (Rothe et al.): the `wiki.mat` / `imdb.mat` metadata of the `*_crop` releases.

The .mat holds one 1x1 struct (`wiki` or `imdb`) whose fields are 1xN arrays, one entry per photo:
`dob` (MATLAB serial date number of the birth date), `photo_taken` (year), `full_path` (cell of paths
relative to the .mat's folder), `gender` (1 male, 0 female, NaN unknown: the opposite of UTKFace's
codes), `name`, `face_location` (cell of 1x4 [x1 y1 x2 y2]), `face_score` (-inf when no face was
found), `second_face_score` (NaN when there is no second face), and for imdb `celeb_id`.

Age is the dataset authors' definition: year the photo was taken minus the year of birth.
Identity: `celeb_id` for imdb; wiki has none, so the person's name when it is given.
Box: [x, y, w, h] from `face_location`; `cropped` is False so the crop stage cuts the face from the
box with its own margin (the released crops carry a 40% margin around that box).

Reason codes, checked in this order: bad_date, age_out_of_range, gender_missing, no_face,
face_score_low, second_face, image_missing, image_empty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm import tqdm

from stages.lib.datasets.common import (
    AdapterResult, DatasetError, DatasetFolder, Options, Rejected, check_age, check_image_file, find_one, list_files,
    manifest_row, project_path, reject_row, unique_ids,
)
from stages.lib.core.labels import normalise_gender
from stages.lib.core.params import Labels

# IMDB-Wiki's own codes (not UTKFace's): 1 is male, 0 is female.
IMDB_WIKI_GENDERS = {1: "male", 0: "female"}
FIELDS = ("dob", "photo_taken", "full_path", "gender", "name", "face_location", "face_score", "second_face_score")
# MATLAB's datenum counts days from year 0 (datenum 1 = 1 Jan of year 0); Python's ordinals from year 1.
_MATLAB_ORDINAL_OFFSET = 366


class ImdbWikiOptions(Options):
    variant: Literal["imdb", "wiki"]
    # Photos whose face detector score is below this are refused (the usual cut for these crops).
    min_face_score: float = 1.0
    # None (default): refuse every photo in which a second face was found at all (second_face_score is
    # not NaN), since the label could belong to either face. A number: refuse only when the second
    # face scores above it.
    max_second_face_score: float | None = None


@dataclass(frozen=True)
class MatRecord:
    """One photo's entry of the .mat struct, fields as read (not yet checked)."""

    index: int
    dob: float
    photo_taken: float
    full_path: str
    gender: float
    name: str
    face_location: tuple[float, ...]
    face_score: float
    second_face_score: float
    celeb_id: int | None


def birth_year(datenum: float) -> int:
    """The year of a MATLAB serial date number; ValueError when it is not a valid date."""
    if not math.isfinite(datenum) or datenum < _MATLAB_ORDINAL_OFFSET + 1:
        raise ValueError(f"date number {datenum!r} is not a valid date")
    try:
        return (datetime.fromordinal(int(datenum)) - timedelta(days=_MATLAB_ORDINAL_OFFSET)).year
    except (OverflowError, ValueError):
        raise ValueError(f"date number {datenum!r} is not a valid date") from None


def _text(cell) -> str:
    """A MATLAB string cell (array(['x']), an empty array, or a plain str) as a Python str."""
    if isinstance(cell, str):
        return cell
    values = np.ravel(cell)
    return str(values[0]) if values.size else ""


def _numbers(cell) -> tuple[float, ...]:
    return tuple(float(v) for v in np.ravel(cell).astype(float))


def records_from_mat(mat: dict, variant: str) -> list[MatRecord]:
    """The rows of `mat[variant]` (a `scipy.io.loadmat` result); DatasetError when the struct is not there."""
    if variant not in mat:
        structs = sorted(k for k in mat if not k.startswith("__"))
        raise DatasetError(f"the .mat has no struct {variant!r} (it has {structs}); check options.variant")
    struct = np.ravel(mat[variant])[0]
    names = struct.dtype.names or ()
    required = FIELDS + (("celeb_id",) if variant == "imdb" else ())
    missing = [f for f in required if f not in names]
    if missing:
        raise DatasetError(f"the {variant} struct lacks fields {missing}; it has {list(names)}")
    columns = {f: np.ravel(struct[f]) for f in FIELDS}
    celeb_ids = np.ravel(struct["celeb_id"]) if variant == "imdb" else None
    count = len(columns["full_path"])
    if any(len(values) != count for values in columns.values()):
        raise DatasetError(f"the {variant} struct's fields have different lengths: " + ", ".join(
            f"{f} {len(v)}" for f, v in columns.items()))
    return [
        MatRecord(
            index=i,
            dob=float(columns["dob"][i]),
            photo_taken=float(columns["photo_taken"][i]),
            full_path=_text(columns["full_path"][i]),
            gender=float(columns["gender"][i]),
            name=_text(columns["name"][i]).strip(),
            face_location=_numbers(columns["face_location"][i]),
            face_score=float(columns["face_score"][i]),
            second_face_score=float(columns["second_face_score"][i]),
            celeb_id=None if celeb_ids is None else int(celeb_ids[i]),
        )
        for i in range(count)
    ]


def age_of(record: MatRecord) -> int:
    """photo_taken - year of birth; Rejected(bad_date) when either date is unusable."""
    try:
        born = birth_year(record.dob)
    except ValueError as error:
        raise Rejected("bad_date", f"dob: {error}") from None
    if not math.isfinite(record.photo_taken) or record.photo_taken < 1:
        raise Rejected("bad_date", f"photo_taken {record.photo_taken!r} is not a year")
    return int(record.photo_taken) - born


def classify(record: MatRecord, rel: str, files: dict[str, int], options: ImdbWikiOptions, *, labels: Labels) -> dict:
    """The labels of one photo (image `rel` among `files`), or Rejected with the first reason that refuses it."""
    age = check_age(age_of(record), labels)
    if record.gender not in IMDB_WIKI_GENDERS:  # NaN (unknown) included
        raise Rejected("gender_missing", f"gender {record.gender!r} is not 1 (male) or 0 (female)", age=age)
    gender = normalise_gender(IMDB_WIKI_GENDERS[int(record.gender)])
    if not np.isfinite(record.face_score):
        raise Rejected("no_face", f"face_score {record.face_score}: no face was found", age=age, gender=gender)
    if record.face_score < options.min_face_score:
        raise Rejected("face_score_low", f"face_score {record.face_score:.2f} < options.min_face_score "
                       f"{options.min_face_score:g}", age=age, gender=gender)
    if not math.isnan(record.second_face_score):
        limit = options.max_second_face_score
        if limit is None or record.second_face_score > limit:
            allowed = "none allowed" if limit is None else f"> options.max_second_face_score {limit:g}"
            raise Rejected("second_face", f"second_face_score {record.second_face_score:.2f} ({allowed})",
                           age=age, gender=gender)
    if len(record.face_location) != 4:
        raise Rejected("no_face", f"face_location {record.face_location} is not [x1 y1 x2 y2]", age=age, gender=gender)
    try:
        check_image_file(rel, files)
    except Rejected as missing:
        raise Rejected(missing.code, missing.detail, age=age, gender=gender) from None
    return {"age": age, "gender": gender}


def box_of(face_location: tuple[float, ...]) -> list[float]:
    """[x1, y1, x2, y2] -> [x, y, w, h]."""
    x1, y1, x2, y2 = face_location
    return [x1, y1, x2 - x1, y2 - y1]


def rows_from_records(
    records: list[MatRecord], folder: DatasetFolder, image_dir: str, *, files: dict[str, int],
) -> AdapterResult:
    """Manifest and reject rows of every record; `files` lists root's files (relative path -> size).

    `image_dir` is the .mat's folder relative to `root`, which `full_path` is relative to.
    """
    root, dataset, options, labels = folder.root, folder.name, folder.options, folder.labels
    result = AdapterResult()
    prefix = f"{image_dir}/" if image_dir else ""
    for record in tqdm(records, desc=f"prepare {dataset}", unit="row", disable=None):
        rel = prefix + record.full_path
        try:
            found = classify(record, rel, files, options, labels=labels)
        except Rejected as rejected:
            result.rejects.append(reject_row(dataset, project_path(root, rel), rejected))
            continue
        identity = str(record.celeb_id) if record.celeb_id is not None else (record.name or None)
        result.rows.append(manifest_row(
            dataset, root, rel, **found, race=None, identity=identity, box=box_of(record.face_location),
            cropped=False, source_meta=f"{options.variant}.mat row {record.index}; face_score "
            f"{record.face_score:.2f}; name {record.name or '?'}",
        ))
    unique_ids(result.rows)
    return result


def read(folder: DatasetFolder) -> AdapterResult:
    """Find `<variant>.mat` under `root` (any depth), load it, and check every row against the files."""
    root, options = folder.root, folder.options
    from scipy.io import loadmat

    files = list_files(root)
    mat_rel = find_one(files, f"{options.variant}.mat", root, hint=(
        f"it ships inside {options.variant}_crop.tar; run `dvc repro download` or extract the archive there "
        f"(options.variant is {options.variant!r})"
    ))
    try:
        mat = loadmat(Path(root, mat_rel))
    except Exception as error:  # scipy raises several types for a damaged or v7.3 (HDF5) file
        raise DatasetError(
            f"{Path(root, mat_rel)} cannot be read as a MATLAB file ({error}); download it again"
        ) from None
    records = records_from_mat(mat, options.variant)
    image_dir = mat_rel.rsplit("/", 1)[0] if "/" in mat_rel else ""
    return rows_from_records(records, folder, image_dir, files=files)
