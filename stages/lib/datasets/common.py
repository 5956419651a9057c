"""What every dataset adapter shares: the result it returns, how it rejects a row, and the file listing.

An adapter turns one dataset's raw files into manifest rows (`stages.lib.schema.MANIFEST_COLUMNS`,
plus any extra columns it documents) and reject rows (`dataset, path, stage, reason`). A row's
classification is pure: it raises `Rejected` with a short reason code, which the adapter's loop
turns into a reject row. A reason reads `<code>: <detail>`; the code (before the colon) is what the
data-quality summary counts, the detail says what was wrong with that row.

Reject rows may also carry the labels that could be read before the row was refused (`age`,
`gender`, `race`), so the data-quality summary can show which groups lose rows. They are dropped
when rejects.csv is written (its contract has four columns).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from stages.lib.core.params import Labels

STAGE = "prepare"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class DatasetError(ValueError):
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


@dataclass
class AdapterResult:
    """What an adapter returns: every input row lands in exactly one of the two lists."""

    rows: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)


def reject_row(dataset: str, path: str, rejected: Rejected) -> dict:
    return {"dataset": dataset, "path": path, "stage": STAGE, "reason": rejected.reason, **rejected.labels}


def check_age(age: int, labels: Labels, **known) -> int:
    """`age` when it lies in [labels.min_age, labels.max_age]; Rejected(age_out_of_range) otherwise."""
    if not labels.min_age <= age <= labels.max_age:
        raise Rejected(
            "age_out_of_range",
            f"age {age} is outside labels.min_age..max_age = {labels.min_age}..{labels.max_age}",
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


def list_files(root: Path) -> dict[str, int]:
    """Every file under `root` (recursively, links followed) as `posix path relative to root -> size`."""
    root = Path(root)
    listing: dict[str, int] = {}
    for folder, dirs, names in os.walk(root, followlinks=True):
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
    """Base of every adapter's options model: unknown keys are refused, so typos fail loudly."""

    model_config = ConfigDict(extra="forbid", frozen=True)
