"""UTKFace (Zhang, Song, Qi 2017): labels live in the file names, `{age}_{gender}_{race}_{datetime}`.

Two releases, chosen by `options.version`:
- `aligned`: the aligned & cropped faces, `{...}.jpg.chip.jpg` (UTKFace.tar.gz). Already face crops:
  `cropped` is True and there is no box.
- `wild`: the in-the-wild photos, `{...}.jpg` (part1/2/3.tar.gz), with `landmark_list_part*.txt`
  (a line per photo: its file name, then 68 landmarks as 136 integers x1 y1 x2 y2 ...). The box is the
  landmarks' bounding box (x, y, w, h; it can reach past the image edge), `cropped` is False. A photo
  without (readable) landmarks keeps a null box and the crop stage detects its face.

Both releases hold the same photos, so each row also carries `photo`, the photo's name without
`.chip.jpg`: the split stage gives a photo found in two datasets (the two releases side by side) one
split, so that heads trained on one release are never tested on the same photo in the other.

Codes: gender 0 male, 1 female; race 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others (labels.py).
A few real names lack a field (`39_1_20170116174525125.jpg.chip.jpg`): which one is missing cannot be
told, so they are rejected, like every name that does not parse.

Reason codes: not_an_image (a file that is neither an image nor a known companion: archives and
landmark lists are skipped), wrong_version (an aligned name in the wild release or the reverse),
name_unparsed, label_invalid, image_empty, age_out_of_range. Unreadable image bytes are left to the
crop stage, which decodes every image anyway.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from stages.lib.sources.archives import is_archive
from stages.lib.datasets.common import (
    AdapterResult, DatasetError, DatasetFolder, Options, Rejected, check_age, is_image_name, list_files, manifest_row,
    project_path, reject_row,
)
from stages.lib.core.labels import LabelError, normalise_age, normalise_gender, normalise_race
from stages.lib.core.params import Labels

ALIGNED_SUFFIX = ".jpg.chip.jpg"
LANDMARK_LIST = re.compile(r"^landmark_list.*\.txt$", re.IGNORECASE)
LANDMARK_COUNT = 68
# The published archives' faces per version (UTKFace.tar.gz: 23,708 aligned & cropped chips).
PUBLISHED_FACES = {"aligned": 23_708}


def published_size(options: dict) -> tuple[str, int] | None:
    """(the whole published version in words, its faces) for these options; None for a version not counted here."""
    version = options.get("version", "aligned")
    if version not in PUBLISHED_FACES:
        return None
    return f"UTKFace's {PUBLISHED_FACES[version]:,} {version} faces", PUBLISHED_FACES[version]


class UTKFaceOptions(Options):
    version: Literal["aligned", "wild"] = "aligned"


@dataclass(frozen=True)
class UTKName:
    age: int
    gender: str
    race: str
    taken: str  # the datetime field, kept as text
    aligned: bool  # the name ends in .jpg.chip.jpg


def name_fields(stem: str) -> list[str]:
    """The fields of a UTKFace file name without its suffix: age, gender, race, datetime (fewer when
    the name is malformed; the real dataset has a few without race). The one place the name is split:
    the prepare stage rejects a name with a missing field, the audit keeps its age and gender."""
    return stem.split("_", 3)


def parse_utkface_name(name: str) -> UTKName:
    """Labels from a UTKFace file name (no folders); Rejected(not_an_image | name_unparsed | label_invalid).

    Accepts `{age}_{gender}_{race}_{rest}` followed by `.jpg.chip.jpg` (aligned) or an image suffix
    (in the wild, or a user's folder). Gender and race are codes or words, normalised by labels.py.
    """
    if name.lower().endswith(ALIGNED_SUFFIX):
        stem, aligned = name[: -len(ALIGNED_SUFFIX)], True
    elif is_image_name(name):
        stem, aligned = name.rsplit(".", 1)[0], False
    else:
        raise Rejected("not_an_image", f"{name!r} is not an image file (.jpg, .jpeg, .png, .bmp)")
    fields = name_fields(stem)
    if len(fields) < 4 or not fields[3]:
        raise Rejected("name_unparsed", f"{name!r} has {len([f for f in fields if f])} of the 4 fields "
                       "age_gender_race_datetime (a label field is missing)")
    age_text, gender_text, race_text, taken = fields
    if not (age_text.isascii() and age_text.isdigit()):  # isdigit alone takes superscripts, which int() refuses
        raise Rejected("label_invalid", f"{name!r}: age field {age_text!r} is not a whole number")
    age = normalise_age(age_text)
    try:
        gender = normalise_gender(gender_text)
    except LabelError as error:
        raise Rejected("label_invalid", f"{name!r}: {error}", age=age) from None
    try:
        race = normalise_race(race_text)
    except LabelError as error:
        raise Rejected("label_invalid", f"{name!r}: {error}", age=age, gender=gender) from None
    return UTKName(age=age, gender=gender, race=race, taken=taken, aligned=aligned)


def parse_landmark_line(line: str) -> tuple[str, np.ndarray]:
    """`name x1 y1 ... x68 y68` -> (name, 68x2 array); ValueError when it is not that."""
    parts = line.split()
    if len(parts) != 1 + 2 * LANDMARK_COUNT:
        raise ValueError(f"expected a file name and {2 * LANDMARK_COUNT} numbers, got {len(parts)} fields")
    try:
        points = np.array([float(v) for v in parts[1:]]).reshape(LANDMARK_COUNT, 2)
    except ValueError:
        raise ValueError("the landmark coordinates are not all numbers") from None
    return parts[0], points


def landmark_box(points: np.ndarray) -> list[float]:
    """The landmarks' bounding box [x, y, w, h]."""
    low, high = points.min(axis=0), points.max(axis=0)
    return [float(low[0]), float(low[1]), float(high[0] - low[0]), float(high[1] - low[1])]


def landmark_key(name: str) -> str:
    """Landmark lists name the photo `x.jpg`; strip `.chip.jpg` so either spelling finds it."""
    return name[: -len(".chip.jpg")] if name.lower().endswith(ALIGNED_SUFFIX) else name


def parse_landmark_list(text: str, source: str) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Boxes by photo name, and the problems of lines that could not be read (by name where known)."""
    boxes: dict[str, list[float]] = {}
    problems: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            name, points = parse_landmark_line(line)
        except ValueError as error:
            problems[landmark_key(line.split()[0])] = f"{source} line {number}: {error}"
            continue
        boxes[landmark_key(name)] = landmark_box(points)
    return boxes, problems


def is_companion(rel: str) -> bool:
    """Files shipped with the images that are not images themselves: archives and landmark lists."""
    name = rel.rsplit("/", 1)[-1]
    return is_archive(name) or bool(LANDMARK_LIST.match(name))


def classify(rel: str, size: int, version: str, labels: Labels) -> UTKName:
    """The parsed name of one listed file, or Rejected with the reason it cannot be a manifest row."""
    name = rel.rsplit("/", 1)[-1]
    parsed = parse_utkface_name(name)
    if parsed.aligned != (version == "aligned"):
        expected = ALIGNED_SUFFIX if version == "aligned" else ".jpg (without .chip.jpg)"
        raise Rejected("wrong_version", f"{name!r} does not end in {expected}, as options.version "
                       f"{version!r} expects", age=parsed.age, gender=parsed.gender, race=parsed.race)
    if size == 0:
        raise Rejected("image_empty", f"{rel} has zero bytes", age=parsed.age, gender=parsed.gender, race=parsed.race)
    check_age(parsed.age, labels, gender=parsed.gender, race=parsed.race)
    return parsed


def rows_from_files(
    files: dict[str, int], folder: DatasetFolder, *,
    boxes: dict[str, list[float]] | None = None, landmark_problems: dict[str, str] | None = None,
) -> AdapterResult:
    """Manifest and reject rows for every listed file except the companions (archives, landmark lists)."""
    root, dataset, options, labels = folder.root, folder.name, folder.options, folder.labels
    boxes, landmark_problems = boxes or {}, landmark_problems or {}
    result = AdapterResult()
    for rel, size in files.items():
        if is_companion(rel):
            continue
        try:
            parsed = classify(rel, size, options.version, labels)
        except Rejected as rejected:
            result.rejects.append(reject_row(dataset, project_path(root, rel), rejected))
            continue
        key = landmark_key(rel.rsplit("/", 1)[-1])  # the photo's name in either release
        box = boxes.get(key) if options.version == "wild" else None
        meta = f"utkface {options.version}; taken {parsed.taken}"
        if options.version == "wild" and box is None:
            meta += "; " + landmark_problems.get(key, "no landmarks listed")
        result.rows.append(manifest_row(
            dataset, root, rel, age=parsed.age, gender=parsed.gender, race=parsed.race, identity=None,
            box=box, cropped=options.version == "aligned", source_meta=meta, photo=key,
        ))
    return result


def read(folder: DatasetFolder) -> AdapterResult:
    """Every file under `root` (any depth), with the landmark lists' boxes for the wild release."""
    root, options = folder.root, folder.options
    files = list_files(root)
    boxes: dict[str, list[float]] = {}
    problems: dict[str, str] = {}
    if options.version == "wild":
        for rel in sorted(rel for rel in files if LANDMARK_LIST.match(rel.rsplit("/", 1)[-1])):
            found, bad = parse_landmark_list(Path(root, rel).read_text(errors="replace"), rel)
            boxes.update(found)
            problems.update(bad)
    if not any(is_image_name(rel) for rel in files):
        expected = ALIGNED_SUFFIX if options.version == "aligned" else ".jpg in part1/2/3"
        raise DatasetError(f"no UTKFace images (*{expected}) under {root}: run `dvc repro download`, or extract "
                           f"UTKFace's archives there (options.version is {options.version!r})")
    return rows_from_files(files, folder, boxes=boxes, landmark_problems=problems)
