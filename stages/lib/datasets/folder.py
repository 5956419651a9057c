"""A researcher's own photos: a folder in UTKFace naming, or any folder plus a CSV of labels.

- No `options.csv`: every image under the folder is named `{age}_{gender}_{race}_{anything}.jpg`
  (or .jpeg/.png/.bmp, or UTKFace's `.jpg.chip.jpg`), codes as UTKFace's (gender 0 male, 1 female;
  race 0..4) or words (`25_female_black_holiday.jpg`).
- `options.csv: labels.csv` (relative to the folder): columns `path` (relative to the CSV's folder),
  `age`, `gender`, and optionally `race` (an empty cell: unknown) and `identity` (a person id, so
  that the split keeps a person's photos together). Numeric gender/race codes follow UTKFace.

`options.cropped` (default false) says whether the images are already face crops; when false the
crop stage detects the face. There is no box either way.

Reason codes: not_an_image, name_unparsed, label_invalid, age_out_of_range, image_missing, image_empty.
"""

from __future__ import annotations

import math
from pathlib import Path, PurePosixPath

from pydantic import field_validator

from stages.lib.sources.archives import is_archive
from stages.lib.datasets.common import (
    AdapterResult, DatasetError, DatasetFolder, Options, Rejected, check_age, check_image_file, is_image_name,
    list_files, manifest_row, project_path, read_csv_with_columns, reject_row,
)
from stages.lib.datasets.utkface import parse_utkface_name
from stages.lib.core.labels import LabelError, normalise_age, normalise_gender, normalise_race
from stages.lib.core.params import Labels

CSV_COLUMNS = ("path", "age", "gender")


class FolderOptions(Options):
    csv: str | None = None  # labels file, relative to the folder; none: labels come from UTKFace-style names
    cropped: bool = False   # the images are already face crops

    @field_validator("csv")
    @classmethod
    def _inside_folder(cls, value: str | None) -> str | None:
        if value is not None and (PurePosixPath(value).is_absolute() or ".." in PurePosixPath(value).parts):
            raise ValueError(f"must be a path inside the dataset's folder, got {value!r}")
        return value


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == ""


def labels_from_csv_row(row: dict[str, str], labels: Labels) -> dict:
    """Normalised age, gender, race (None when blank or absent) and identity of one CSV row."""
    try:
        age = normalise_age(row.get("age"))
        gender = normalise_gender(row.get("gender"))
        race = None if _blank(row.get("race")) else normalise_race(row["race"])
    except LabelError as error:
        raise Rejected("label_invalid", str(error)) from None
    check_age(age, labels, gender=gender, race=race)
    identity = None if _blank(row.get("identity")) else str(row["identity"]).strip()
    return {"age": age, "gender": gender, "race": race, "identity": identity}


def rows_from_csv(csv_rel: str, files: dict[str, int], folder: DatasetFolder) -> AdapterResult:
    """Manifest and reject rows of every line of the labels file (`csv_rel`: its path relative to root)."""
    root, dataset, options, labels = folder.root, folder.name, folder.options, folder.labels
    csv_rows = read_csv_with_columns(Path(root, csv_rel), CSV_COLUMNS,
                                     "it needs path, age, gender, and optionally race and identity")
    csv_dir = PurePosixPath(csv_rel).parent
    result = AdapterResult()
    for line, row in enumerate(csv_rows, start=2):
        path_field = (row.get("path") or "").strip().replace("\\", "/")
        rel = (csv_dir / path_field).as_posix() if path_field else f"{csv_rel}:{line}"
        try:
            if not path_field:
                raise Rejected("label_invalid", f"{csv_rel} line {line} has an empty `path`")
            found = labels_from_csv_row(row, labels)
            try:
                check_image_file(rel, files)
            except Rejected as missing:
                raise Rejected(missing.code, missing.detail, age=found["age"], gender=found["gender"],
                               race=found["race"]) from None
        except Rejected as rejected:
            result.rejects.append(reject_row(dataset, project_path(root, rel), rejected))
            continue
        result.rows.append(manifest_row(
            dataset, root, rel, **found, box=None, cropped=options.cropped, source_meta=f"{csv_rel} line {line}",
        ))
    return result


def rows_from_names(files: dict[str, int], folder: DatasetFolder) -> AdapterResult:
    """Rows of every listed file, labels read from UTKFace-style names; archives are skipped."""
    root, dataset, options, labels = folder.root, folder.name, folder.options, folder.labels
    result = AdapterResult()
    for rel, size in files.items():
        if is_archive(rel):
            continue
        try:
            parsed = parse_utkface_name(rel.rsplit("/", 1)[-1])
            if size == 0:
                raise Rejected("image_empty", f"{rel} has zero bytes", age=parsed.age, gender=parsed.gender,
                               race=parsed.race)
            check_age(parsed.age, labels, gender=parsed.gender, race=parsed.race)
        except Rejected as rejected:
            result.rejects.append(reject_row(dataset, project_path(root, rel), rejected))
            continue
        result.rows.append(manifest_row(
            dataset, root, rel, age=parsed.age, gender=parsed.gender, race=parsed.race, identity=None, box=None,
            cropped=options.cropped, source_meta="labels from the file name",
        ))
    return result


def read(folder: DatasetFolder) -> AdapterResult:
    root, dataset, options = folder.root, folder.name, folder.options
    files = list_files(root)
    if options.csv is None:
        if not any(is_image_name(rel) for rel in files):
            raise DatasetError(f"no images under {root}: put the photos there (UTKFace-style names, or set "
                               f"datasets.{dataset}.options.csv to a labels file)")
        return rows_from_names(files, folder)
    csv_rel = PurePosixPath(options.csv).as_posix()
    if csv_rel not in files:
        raise DatasetError(f"{Path(root, csv_rel)} not found (datasets.{dataset}.options.csv): put the labels "
                           "file there, or fix the path (it is relative to the dataset's folder)")
    return rows_from_csv(csv_rel, files, folder)
