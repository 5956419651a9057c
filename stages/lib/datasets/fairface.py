"""FairFace (Kärkkäinen & Joo 2021): the official label CSVs and the 0.25-padding images.

`fairface_label_val.csv` / `fairface_label_train.csv` (columns file, age, gender, race, service_test)
name images like `val/2.jpg`, relative to the folder the archive was unpacked in. The images are
224x224 face crops with 25% padding: `cropped` is True and there is no box.

Age is a band only. `age` stores the band's midpoint, (low + high) // 2 (`0-2` -> 1, `3-9` -> 6,
`10-19` -> 14, `20-29` -> 24 ... `60-69` -> 64), and the open band `more than 70` stores
`options.top_band_age` (default 75); the band itself is kept in `age_band_source`, so evaluation
judges FairFace age as band accuracy, not MAE. The labels.min_age..max_age range is applied to the
stored midpoint. Race: FairFace's seven fold into five (East and Southeast Asian -> asian; Middle
Eastern and Latino_Hispanic -> others); the original is kept in `race_source`.

`options.split`: `val`, `train`, or `both` (default): every label file that is present, at least one.

Reason codes: label_invalid, age_out_of_range, image_missing, image_empty.
"""

from __future__ import annotations

import math
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import Field

from stages.lib.datasets.common import (
    AdapterResult, DatasetError, DatasetFolder, Options, Rejected, check_age, list_files, manifest_row, project_path,
    read_csv_with_columns, reject_row,
)
from stages.lib.core.labels import LabelError, labelled_band_bounds, normalise_gender, normalise_race
from stages.lib.core.params import Labels

LABEL_FILES = {"val": "fairface_label_val.csv", "train": "fairface_label_train.csv"}
COLUMNS = ("file", "age", "gender", "race")
PUBLISHED_FACES = 97_698   # the released train (86,744) and val (10,954) label files


def published_size(options: dict) -> tuple[str, int]:
    """(the released FairFace in words, its faces), whatever the options."""
    return f"FairFace's {PUBLISHED_FACES:,} released faces", PUBLISHED_FACES


class FairFaceOptions(Options):
    split: Literal["val", "train", "both"] = "both"
    top_band_age: int = Field(75, ge=0)  # the age stored for the open band `more than 70`


def band_age(band: str, top_band_age: int) -> int:
    """The age stored for a FairFace band: the midpoint of `a-b`, `top_band_age` for `more than N`."""
    low, high = labelled_band_bounds(band)
    return top_band_age if math.isinf(high) else (low + int(high)) // 2


def tail_index(files: dict[str, int], depth: int) -> dict[str, str]:
    """Listed paths by their last `depth` components (`val/2.jpg`), the shortest path winning a tie."""
    index: dict[str, str] = {}
    for rel in sorted(files, key=len, reverse=True):
        parts = rel.split("/")
        if len(parts) >= depth:
            index["/".join(parts[-depth:])] = rel
    return index


class ImageFinder:
    """Finds a label file's `file` entry: beside the label file first, else anywhere it ends a listed path.

    The fallback covers a label file kept apart from the unpacked images (labels in the dataset's
    folder, the images one folder down, as the download stage unpacks the zip beside them).
    """

    def __init__(self, files: dict[str, int]):
        self.files = files
        self._tails: dict[int, dict[str, str]] = {}

    def find(self, file_field: str, csv_dir: str) -> str | None:
        wanted = PurePosixPath(file_field.strip().replace("\\", "/"))
        beside = (PurePosixPath(csv_dir) / wanted).as_posix() if csv_dir else wanted.as_posix()
        if beside in self.files:
            return beside
        depth = len(wanted.parts)
        if depth not in self._tails:
            self._tails[depth] = tail_index(self.files, depth)
        return self._tails[depth].get(wanted.as_posix())


def classify(row: dict[str, str], labels: Labels, top_band_age: int) -> dict:
    """Normalised labels of one CSV row; Rejected(label_invalid | age_out_of_range)."""
    try:
        gender = normalise_gender(row["gender"])
        race = normalise_race(row["race"])
        age = band_age(row["age"] or "", top_band_age)
    except LabelError as error:
        raise Rejected("label_invalid", str(error)) from None
    check_age(age, labels, gender=gender, race=race)
    return {"age": age, "gender": gender, "race": race}


def rows_from_labels(label_rel: str, files: dict[str, int], folder: DatasetFolder) -> AdapterResult:
    """Manifest and reject rows of one label file (`label_rel`: its path relative to root)."""
    root, dataset, options, labels = folder.root, folder.name, folder.options, folder.labels
    label_rows = read_csv_with_columns(Path(root, label_rel), COLUMNS, "is it FairFace's official label file?")
    csv_dir = label_rel.rsplit("/", 1)[0] if "/" in label_rel else ""
    label_name = label_rel.rsplit("/", 1)[-1]
    finder = ImageFinder(files)
    result = AdapterResult()
    for line, row in enumerate(label_rows, start=2):
        file_field = (row.get("file") or "").strip()
        # Where the reject points when the image is not found: the file beside the CSV, or the CSV's line.
        rel = (PurePosixPath(csv_dir) / file_field).as_posix() if file_field else f"{label_rel}:{line}"
        try:
            if not file_field:
                raise Rejected("label_invalid", f"{label_name} line {line} has an empty `file`")
            found = classify(row, labels, options.top_band_age)
            found_rel = finder.find(file_field, csv_dir)
            if found_rel is None:
                raise Rejected("image_missing", f"{file_field} (from {label_name}) is not in the dataset folder",
                               **found)
            rel = found_rel
            if files[rel] == 0:
                raise Rejected("image_empty", f"{rel} has zero bytes", **found)
        except Rejected as rejected:
            result.rejects.append(reject_row(dataset, project_path(root, rel), rejected))
            continue
        result.rows.append(manifest_row(
            dataset, root, rel, **found, identity=None, box=None, cropped=True,
            source_meta=f"{label_name} line {line}; service_test {row.get('service_test', '?')}",
            age_band_source=row["age"], race_source=row["race"],
        ))
    return result


def label_files_for(split: str, files: dict[str, int], root: Path) -> list[str]:
    """The label files `split` asks for, as listed paths; DatasetError naming what to put where."""
    wanted = ["val", "train"] if split == "both" else [split]
    found = {}
    for part in wanted:
        matches = sorted(rel for rel in files if rel.rsplit("/", 1)[-1] == LABEL_FILES[part])
        if len(matches) > 1:
            raise DatasetError(f"{LABEL_FILES[part]} found more than once under {root} ({', '.join(matches)}): "
                               "keep one copy")
        if matches:
            found[part] = matches[0]
    if split != "both" and split not in found:
        raise DatasetError(f"{LABEL_FILES[split]} not found under {root} (options.split is {split!r}): put the "
                           "official label file there, or run `dvc repro download`")
    if not found:
        raise DatasetError(f"neither {' nor '.join(LABEL_FILES.values())} found under {root}: put FairFace's "
                           "label files and images there, or run `dvc repro download`")
    return [found[part] for part in wanted if part in found]


def read(folder: DatasetFolder) -> AdapterResult:
    root, options = folder.root, folder.options
    files = list_files(root)
    result = AdapterResult()
    for label_rel in label_files_for(options.split, files, root):
        part = rows_from_labels(label_rel, files, folder)
        result.rows += part.rows
        result.rejects += part.rejects
    return result
