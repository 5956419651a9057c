"""What every dataset adapter shares: the result it returns, how it rejects a row, and the file listing.

An adapter turns one dataset's raw files into manifest rows (`stages.lib.schema.MANIFEST_COLUMNS`,
plus any extra columns it documents) and reject rows (`dataset, path, stage, reason`). A row's
classification is pure: it raises `Rejected` with a short reason code, which the adapter's loop
turns into a reject row. A reason reads `<code>: <detail>`; the code (before the colon) is what the
data-quality summary counts, the detail says what was wrong with that row.

Reject rows may also carry the labels that could be read before the row was refused (`age`,
`gender`, `race`), so the data-quality summary can show which groups lose rows. They are dropped
when rejects.csv is written (its contract has four columns).

Options every adapter takes (`Options`, the base of each adapter's options model):
- `min_age`, `max_age`: the dataset's own age range, inside labels.min_age..max_age by default.
  Datasets differ: the study kept UTKFace in the wild from 17 (its published tables hold no one
  younger), the aligned faces from 1, and serengil's IMDB-Wiki filter keeps 0 < age <= 100.
- `sample`, `sample_seed`: keep a seeded random `sample` of the rows that pass every check (a large
  dataset, e.g. IMDB, evaluated on a share of its faces); the others are rejected as `not_sampled`.
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from stages.lib.core.errors import UserError
from stages.lib.core.params import Labels

STAGE = "prepare"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class DatasetError(UserError, ValueError):
    """Raw files an adapter cannot read at all (no label file, wrong layout); the message says the fix."""


class Rejected(Exception):
    """One row refused: `code` is a short stable reason, `detail` what was wrong, `labels` what was read."""

    def __init__(self, code: str, detail: str, **labels):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.labels = {key: value for key, value in labels.items() if value is not None}

    @property
    def reason(self) -> str:
        return f"{self.code}: {self.detail}"


@dataclass(frozen=True)
class DatasetFolder:
    """One dataset as its adapter reads it: the folder its files are in, its name in params, its
    validated options and its own age range (`dataset_labels`)."""

    root: Path
    name: str
    options: Options
    labels: Labels


@dataclass
class AdapterResult:
    """What an adapter returns: every input row lands in exactly one of the two lists."""

    rows: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)


def reject_row(dataset: str, path: str, rejected: Rejected) -> dict:
    return {"dataset": dataset, "path": path, "stage": STAGE, "reason": rejected.reason, **rejected.labels}


def check_age(age: int, labels: Labels, **known) -> int:
    """`age` when it lies in [labels.min_age, labels.max_age] (the dataset's range, see `dataset_labels`);
    Rejected(age_out_of_range) otherwise."""
    if not labels.min_age <= age <= labels.max_age:
        raise Rejected(
            "age_out_of_range",
            f"age {age} is outside this dataset's age range {labels.min_age}..{labels.max_age}",
            age=age, **known,
        )
    return age


def check_image_file(rel: str, files: dict[str, int]) -> None:
    """Rejected when the image `rel` is not among the listed files, or has zero bytes."""
    if rel not in files:
        raise Rejected("image_missing", f"{rel} is not in the dataset folder")
    if files[rel] == 0:
        raise Rejected("image_empty", f"{rel} has zero bytes")


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def project_path(root: Path, rel: str) -> str:
    """The path stored in the manifest: `root / rel`, relative to the project root when `root` is."""
    return (Path(root) / rel).as_posix()


def manifest_row(
    dataset: str, root: Path, rel: str, *, age: int, gender: str, race: str | None, identity: str | None,
    box: list[float] | None, cropped: bool, source_meta: str, **extra,
) -> dict:
    """A manifest row; `id` is `<dataset>/<rel>`, stable wherever the raw folder lives."""
    return {
        "id": f"{dataset}/{rel}", "dataset": dataset, "path": project_path(root, rel), "age": int(age),
        "gender": gender, "race": race, "identity": identity,
        "box": None if box is None else [float(v) for v in box], "cropped": bool(cropped),
        "source_meta": source_meta, **extra,
    }


def unique_ids(rows: list[dict]) -> list[dict]:
    """Suffix `#k` to the k-th repeat of an id (a second face of the same photo), in row order."""
    seen: Counter = Counter()
    for row in rows:
        base = row["id"]
        if seen[base]:
            row["id"] = f"{base}#{seen[base]}"
        seen[base] += 1
    return rows


def read_csv_with_columns(path: Path, columns: list[str], what: str) -> list[dict[str, str]]:
    """The rows of a label file (UTF-8, a BOM allowed) as dicts; DatasetError naming the file when a
    required column is missing. `what` says what the file should be, for that message."""
    reader = csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8-sig")))
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
        raise DatasetError(f"{path} lacks columns {missing} (it has {reader.fieldnames}); {what}")
    return list(reader)


def list_files(root: Path) -> dict[str, int]:
    """Every file under `root` (recursively, links followed) as `posix path relative to root -> size`.

    Each real folder is listed once: a link back to an ancestor would otherwise list its photos again
    under every detour (the same face as many rows), and two such links make the walk explode."""
    root = Path(root)
    listing: dict[str, int] = {}
    listed: set[str] = set()
    for folder, dirs, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in listed:
            dirs.clear()
            continue
        listed.add(real)
        dirs.sort()
        rel_folder = Path(folder).relative_to(root).as_posix()
        prefix = "" if rel_folder == "." else f"{rel_folder}/"
        for name in sorted(names):
            try:
                listing[prefix + name] = os.stat(os.path.join(folder, name)).st_size
            except OSError:  # a dangling link: listed as empty, so it is rejected rather than lost
                listing[prefix + name] = 0
    return listing


def find_one(files: dict[str, int], name: str, root: Path, hint: str) -> str:
    """The one listed file called `name` (at any depth); DatasetError when there is none or several."""
    matches = sorted(rel for rel in files if rel.rsplit("/", 1)[-1] == name)
    if not matches:
        raise DatasetError(f"{name} not found under {root}: {hint}")
    if len(matches) > 1:
        raise DatasetError(f"{name} found more than once under {root} ({', '.join(matches)}): keep one copy")
    return matches[0]


class Options(BaseModel):
    """Base of every adapter's options model: unknown keys are refused, so typos fail loudly.

    The fields here are the options every adapter takes (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_age: int | None = Field(None, ge=0)   # None: labels.min_age
    max_age: int | None = Field(None, ge=0)   # None: labels.max_age; never above it (the age head's classes)
    sample: int | None = Field(None, ge=1)    # keep this many of the rows that pass every check; None: all
    sample_seed: int = Field(0, ge=0)


def dataset_labels(options: Options, labels: Labels) -> Labels:
    """labels.min_age..max_age narrowed to the dataset's own `min_age`/`max_age` options.

    ValueError when the range is empty or reaches past labels.max_age: the age head has
    labels.max_age + 1 classes, so no dataset can hold an older label."""
    low = labels.min_age if options.min_age is None else options.min_age
    high = labels.max_age if options.max_age is None else options.max_age
    if high > labels.max_age:
        raise ValueError(f"max_age {high} is above labels.max_age {labels.max_age} (the age head's oldest class)")
    if low >= high:
        raise ValueError(f"min_age {low} must be below max_age {high}")
    return Labels(min_age=low, max_age=high)


def sample_rows(result: AdapterResult, dataset: str, size: int, seed: int) -> AdapterResult:
    """A seeded random `size` of `result.rows` (in their order); the others become `not_sampled` rejects
    carrying their labels. All rows are kept when there are no more than `size`."""
    if len(result.rows) <= size:
        return result
    drawn = np.zeros(len(result.rows), dtype=bool)
    drawn[np.random.default_rng(seed).choice(len(result.rows), size=size, replace=False)] = True
    detail = f"options.sample keeps {size:,} of the {len(result.rows):,} rows that passed every check (seed {seed})"
    left_out = [
        reject_row(dataset, row["path"], Rejected("not_sampled", detail, age=row["age"], gender=row["gender"],
                                                  race=row["race"]))
        for row, keep in zip(result.rows, drawn) if not keep
    ]
    return AdapterResult([row for row, keep in zip(result.rows, drawn) if keep], result.rejects + left_out)
