"""Face detection and crop geometry: how the crop stage turns a photo into a square face crop.

Each manifest row takes one of three routes (`route_of`), recorded in the `detector` column:

- `dataset_box`: the dataset gives the face box (IMDB-Wiki's face_location, UTKFace in-the-wild's
  landmark box); the crop is that box plus the margin.
- `precropped`: the image is already a face crop (UTKFace aligned, FairFace): it is only resized
  (made square first by padding when it is not; no detection, no margin).
- `yunet` / `haar`: an OpenCV detector finds the face; the largest one found is taken (the labelled
  person is the photo's subject) and `faces_found` says how many there were.

Geometry (`square_region`): the margin, a fraction of the box's width and height, is added on each
side (IMDB-Wiki's released crops used 40%), then the region is made square around the box's centre
with side max(width, height). Where the region leaves the image it is padded with black, as
IMDB-Wiki's own crops are, so a face at the photo's edge stays centred and unstretched.

Boxes refer to the pixels as stored: a row with a dataset box is read ignoring any EXIF orientation
(the box was measured that way); a row that is detected is read upright (EXIF applied).

A row that cannot be cropped is rejected with a reason `<code>: <detail>`, code one of image_missing,
image_empty, image_unreadable, box_invalid, box_outside, no_face; `crop_quality` counts the codes and
the keep and detection rates by race, gender and age band.

Layout: the geometry, `choose_face` and `route_of` are pure; `crop_row` is the I/O edge for one row
(reads the photo, writes the crop); `crop_manifest` runs the rows in worker processes, each with its
own detector (OpenCV detectors cannot cross processes).
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from stages.lib.core.labels import age_band
from stages.lib.datasets.quality import reason_code, summarise
from stages.lib.core.schema import rejects_frame

DETECTORS = ("yunet", "haar")
ROUTES = ("dataset_box", "precropped", *DETECTORS)
# Photos are detected at most this large (longest side, pixels): faster, and YuNet's anchors are
# sized for faces of a few to a few hundred pixels. Boxes are scaled back to the photo's pixels.
DETECT_MAX_SIDE = 640
HAAR_CASCADE = "haarcascade_frontalface_default.xml"
HAAR_SCALE_FACTOR = 1.1
HAAR_MIN_NEIGHBOURS = 5
YUNET_NMS_THRESHOLD = 0.3
JPEG_QUALITY = 95


class CropError(RuntimeError):
    """The crop stage cannot run at all (no detector model, unwritable output); the message says the fix."""


class FaceRejected(Exception):
    """One row refused: `code` is a short stable reason (counted in quality.json), `detail` the specifics."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail

    @property
    def reason(self) -> str:
        return f"{self.code}: {self.detail}"


@dataclass(frozen=True)
class Region:
    """A square region of a photo in its pixels; it may reach past the photo's edges (then padded)."""

    x: int
    y: int
    side: int

    def as_box(self) -> list[int]:
        return [self.x, self.y, self.side, self.side]


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x, y, w, h in the photo's pixels
    score: float  # the detector's confidence; Haar has none and reports 1.0


# --------------------------------------------------------------------------------------------------
# Pure geometry


def has_box(box) -> bool:
    """True when the row carries a box at all (parquet gives None, or a float NaN, for a null)."""
    return box is not None and not (isinstance(box, float) and math.isnan(box))


def valid_box(box) -> bool:
    """True for a finite [x, y, w, h] with positive width and height."""
    if not has_box(box):
        return False
    values = np.asarray(box, dtype=float).ravel()
    return values.size == 4 and bool(np.isfinite(values).all()) and values[2] > 0 and values[3] > 0


def square_region(box: Sequence[float], margin: float) -> Region:
    """The box grown by `margin` x its size on each side, then squared around its centre (integer pixels)."""
    x, y, w, h = (float(v) for v in box)
    centre_x, centre_y = x + w / 2, y + h / 2
    side = max(w, h) * (1 + 2 * margin)
    pixels = max(1, int(round(side)))
    return Region(int(math.floor(centre_x - pixels / 2 + 0.5)), int(math.floor(centre_y - pixels / 2 + 0.5)), pixels)


def visible_part(region: Region, height: int, width: int) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of the region that lies inside a `height` x `width` photo; None when none does."""
    x0, y0 = max(region.x, 0), max(region.y, 0)
    x1, y1 = min(region.x + region.side, width), min(region.y + region.side, height)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def cut_square(image: np.ndarray, region: Region, size: int) -> np.ndarray:
    """The region of `image` resized to `size` x `size`, black where the region leaves the image.

    Only the visible part is resized (into its place on a black canvas), so a region far larger than
    the photo costs no more memory than the output. ValueError when no part of the region is visible.
    """
    visible = visible_part(region, image.shape[0], image.shape[1])
    if visible is None:
        raise ValueError(f"region {region.as_box()} lies outside the {image.shape[1]}x{image.shape[0]} image")
    x0, y0, x1, y1 = visible
    scale = size / region.side
    out_x0, out_y0 = round((x0 - region.x) * scale), round((y0 - region.y) * scale)
    out_x1, out_y1 = round((x1 - region.x) * scale), round((y1 - region.y) * scale)
    canvas = np.zeros((size, size) + image.shape[2:], dtype=image.dtype)
    if out_x1 > out_x0 and out_y1 > out_y0:
        part = image[y0:y1, x0:x1]
        target = (out_x1 - out_x0, out_y1 - out_y0)
        shrinking = target[0] < part.shape[1] or target[1] < part.shape[0]
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        canvas[out_y0:out_y1, out_x0:out_x1] = cv2.resize(part, target, interpolation=interpolation).reshape(
            (target[1], target[0]) + image.shape[2:]
        )
    return canvas


def largest_first(detections: Sequence[Detection]) -> list[Detection]:
    """Detections from the largest box down (a higher score breaks a tie)."""
    return sorted(detections, key=lambda d: (d.box[2] * d.box[3], d.score), reverse=True)


def choose_face(detections: Sequence[Detection]) -> Detection | None:
    """The largest detection (higher score breaks a tie); None when there is none."""
    ordered = largest_first(detections)
    return ordered[0] if ordered else None


def route_of(box, cropped: bool, detector: str) -> str:
    """How a row is cropped: its own box first (a malformed one is rejected, not replaced by a
    detection), else as a ready crop, else by the detector."""
    if has_box(box):
        return "dataset_box"
    if cropped:
        return "precropped"
    return detector


def crop_file_name(row_id: str, dataset: str) -> str:
    """A stable, unique file name for a row's crop: the id without the dataset prefix, sanitised,
    then a hash of the whole id (two ids that sanitise alike still differ)."""
    stem = row_id[len(dataset) + 1:] if row_id.startswith(f"{dataset}/") else row_id
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in stem).strip("._")
    digest = hashlib.sha1(row_id.encode("utf-8")).hexdigest()[:10]
    return f"{safe[-80:] or 'face'}-{digest}.jpg"


# --------------------------------------------------------------------------------------------------
# Detectors


class Detector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[Detection]: ...


def _downscaled(image: np.ndarray) -> tuple[np.ndarray, float]:
    """The image shrunk to at most DETECT_MAX_SIDE on its longest side, and the factor applied."""
    longest = max(image.shape[:2])
    if longest <= DETECT_MAX_SIDE:
        return image, 1.0
    scale = DETECT_MAX_SIDE / longest
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


class YuNetDetector:
    """OpenCV's FaceDetectorYN with the YuNet ONNX model; keeps faces scoring at least `min_score`."""

    name = "yunet"

    def __init__(self, model_path: Path, min_score: float):
        if not Path(model_path).is_file():
            raise CropError(
                f"YuNet model {model_path} not found: run `python -m stages.download --only yunet` "
                "(or `dvc repro download`), or set crop.detector: haar in params.yaml"
            )
        self._model = cv2.FaceDetectorYN.create(
            str(model_path), "", (320, 320), score_threshold=min_score, nms_threshold=YUNET_NMS_THRESHOLD
        )

    def detect(self, image: np.ndarray) -> list[Detection]:
        small, scale = _downscaled(image)
        self._model.setInputSize((small.shape[1], small.shape[0]))
        _, faces = self._model.detect(small)
        if faces is None:
            return []
        return [Detection(tuple(float(v) / scale for v in face[:4]), float(face[-1])) for face in faces]


class HaarDetector:
    """OpenCV's frontal-face Haar cascade (ships with opencv-python; no download), scale 1.1, 5 neighbours."""

    name = "haar"

    def __init__(self):
        folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
        path = os.path.join(folder, HAAR_CASCADE) if folder else None
        self._cascade = cv2.CascadeClassifier(path) if path and os.path.isfile(path) else None
        if self._cascade is None or self._cascade.empty():
            raise CropError(
                f"OpenCV's {HAAR_CASCADE} was not found (OpenCV {cv2.__version__}; version 5 dropped the "
                "cascades): install opencv-python-headless<5 or set crop.detector: yunet"
            )

    def detect(self, image: np.ndarray) -> list[Detection]:
        small, scale = _downscaled(image)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
        found = self._cascade.detectMultiScale(grey, scaleFactor=HAAR_SCALE_FACTOR, minNeighbors=HAAR_MIN_NEIGHBOURS)
        return [Detection(tuple(float(v) / scale for v in box), 1.0) for box in found]


def make_detector(name: str, yunet_model: Path | None, min_score: float) -> Detector:
    if name == "yunet":
        if yunet_model is None:
            raise CropError("crop.detector is yunet but no YuNet model path was given")
        return YuNetDetector(yunet_model, min_score)
    if name == "haar":
        return HaarDetector()
    raise CropError(f"crop.detector: {name!r} is not one of {', '.join(DETECTORS)}")


# --------------------------------------------------------------------------------------------------
# One row: read, locate the face, cut, write (the I/O edge)


@dataclass(frozen=True)
class CropTask:
    index: int  # the row's position in the input manifest
    source: str  # the photo, as a path the worker can open
    target: str  # where the crop goes
    route: str  # one of ROUTES
    box: tuple[float, float, float, float] | None


@dataclass(frozen=True)
class CropOutcome:
    index: int
    crop_box: list[int] | None = None
    faces_found: int | None = None
    reason: str | None = None  # `<code>: <detail>` when the row is rejected


def read_image(path: str, upright: bool) -> np.ndarray:
    """The photo as 3-channel BGR; FaceRejected when it is missing, empty or unreadable."""
    try:
        size = os.path.getsize(path)
    except OSError:
        raise FaceRejected("image_missing", f"{path} does not exist") from None
    if size == 0:
        raise FaceRejected("image_empty", f"{path} has zero bytes")
    flags = cv2.IMREAD_COLOR if upright else cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imread(path, flags)
    if image is None or image.size == 0:
        raise FaceRejected("image_unreadable", f"OpenCV cannot decode {path} ({size} bytes)")
    return image


def locate(task: CropTask, image: np.ndarray, detector: Detector | None, margin: float) -> tuple[Region, int | None]:
    """The square region to cut and the number of faces found (None when nothing was detected)."""
    height, width = image.shape[:2]
    if task.route == "dataset_box":
        if not valid_box(task.box):
            raise FaceRejected("box_invalid", f"the dataset's box {list(task.box)} is not a finite x, y, w, h with w, h > 0")
        region, faces_found = square_region(task.box, margin), None
    elif task.route == "precropped":
        region, faces_found = square_region((0, 0, width, height), 0.0), None
    else:
        faces = detector.detect(image)
        face = choose_face(faces)
        if face is None:
            raise FaceRejected("no_face", f"{task.route} found no face")
        region, faces_found = square_region(face.box, margin), len(faces)
    if visible_part(region, height, width) is None:
        raise FaceRejected("box_outside", f"crop region {region.as_box()} lies outside the {width}x{height} image")
    return region, faces_found


def crop_row(task: CropTask, detector: Detector | None, margin: float, size: int) -> CropOutcome:
    """Crop one photo to `task.target`; a bad photo, box or a missing face becomes a rejected outcome."""
    try:
        image = read_image(task.source, upright=task.route != "dataset_box")
        region, faces_found = locate(task, image, detector, margin)
    except FaceRejected as rejected:
        return CropOutcome(task.index, reason=rejected.reason)
    crop = cut_square(image, region, size)
    if not cv2.imwrite(task.target, crop, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
        raise CropError(f"could not write {task.target}: check that its folder exists and the disk has space")
    return CropOutcome(task.index, region.as_box(), faces_found)


# --------------------------------------------------------------------------------------------------
# A whole manifest, in parallel


@dataclass(frozen=True)
class CropSettings:
    detector: str  # yunet | haar: used only for rows with neither a box nor `cropped`
    margin: float
    size: int
    min_score: float
    yunet_model: Path | None = None


class RowCropper:
    """Crops rows with one set of settings; creates its detector on first need, once per process
    (OpenCV detectors cannot be shared between processes)."""

    def __init__(self, settings: CropSettings):
        self.settings = settings
        self._detector: Detector | None = None

    def detector(self) -> Detector:
        if self._detector is None:
            self._detector = make_detector(self.settings.detector, self.settings.yunet_model, self.settings.min_score)
        return self._detector

    def __call__(self, task: CropTask) -> CropOutcome:
        detector = self.detector() if task.route in DETECTORS else None
        return crop_row(task, detector, self.settings.margin, self.settings.size)


_worker_cropper: RowCropper | None = None


def _start_worker(settings: CropSettings) -> None:
    global _worker_cropper
    cv2.setNumThreads(1)  # one process per core already; OpenCV's own threads would oversubscribe
    _worker_cropper = RowCropper(settings)


def _crop_in_worker(task: CropTask) -> CropOutcome:
    return _worker_cropper(task)


def run_tasks(tasks: list[CropTask], settings: CropSettings, workers: int, progress: bool | None = None) -> list[CropOutcome]:
    """Every task's outcome, in task order; `workers` > 1 crops in that many processes.

    progress: None shows a bar only on a terminal."""
    bar = tqdm(total=len(tasks), desc="crop", unit="img", disable=None if progress is None else not progress)
    with bar:
        if workers <= 1 or len(tasks) < 2:
            cropper = RowCropper(settings)
            outcomes = []
            for task in tasks:
                outcomes.append(cropper(task))
                bar.update()
            return outcomes
        chunk = max(1, min(64, len(tasks) // (workers * 8)))
        # spawn: a fresh interpreter per worker, safe whatever threads the parent has started
        with multiprocessing.get_context("spawn").Pool(workers, _start_worker, (settings,)) as pool:
            outcomes = []
            for outcome in pool.imap(_crop_in_worker, tasks, chunksize=chunk):
                outcomes.append(outcome)
                bar.update()
            return outcomes


@dataclass
class CropResult:
    manifest: pd.DataFrame  # the kept rows + crop_path, crop_box, detector, faces_found
    rejects: pd.DataFrame  # dataset, path, stage, reason
    outcomes: pd.DataFrame  # one row per input row (same index): route, kept, reason


def plan_tasks(manifest: pd.DataFrame, out_root: Path, detector: str, root: Path = Path(".")) -> tuple[list[CropTask], list[str]]:
    """The crop task of every row and its crop path (`out_root/<dataset>/<file>.jpg`, as given)."""
    names = [crop_file_name(row_id, dataset) for row_id, dataset in zip(manifest["id"], manifest["dataset"])]
    crop_paths = [(Path(out_root) / dataset / name).as_posix() for dataset, name in zip(manifest["dataset"], names)]
    repeated = pd.Series(crop_paths)[pd.Series(crop_paths).duplicated()]
    if len(repeated):
        raise CropError(f"manifest ids are not unique (e.g. two rows would write {repeated.iloc[0]}): re-run prepare")
    tasks = []
    for index, (path, box, cropped, crop_path) in enumerate(
        zip(manifest["path"], manifest["box"], manifest["cropped"], crop_paths)
    ):
        source = Path(path) if Path(path).is_absolute() else Path(root) / path
        target = Path(crop_path) if Path(crop_path).is_absolute() else Path(root) / crop_path
        route = route_of(box, bool(cropped), detector)
        box = tuple(float(v) for v in np.asarray(box, dtype=float).ravel()) if route == "dataset_box" else None
        tasks.append(CropTask(index, str(source), str(target), route, box))
    return tasks, crop_paths


def crop_manifest(
    manifest: pd.DataFrame, out_root: Path, settings: CropSettings, workers: int = 1,
    root: Path = Path("."), progress: bool | None = None,
) -> CropResult:
    """Crop every row of `manifest` into `root/out_root/<dataset>/`; every row is kept or rejected.

    Paths in the manifest (and the crop paths written) are relative to `root` unless absolute.
    CropError before any work when a detector is needed but cannot be created (no YuNet model)."""
    manifest = manifest.reset_index(drop=True)
    tasks, crop_paths = plan_tasks(manifest, out_root, settings.detector, root)
    if any(task.route in DETECTORS for task in tasks):
        make_detector(settings.detector, settings.yunet_model, settings.min_score)  # fail now, not in a worker
    for folder in {Path(task.target).parent for task in tasks}:
        folder.mkdir(parents=True, exist_ok=True)
    outcomes = run_tasks(tasks, settings, workers, progress)

    kept = [o.reason is None for o in outcomes]
    routes = [task.route for task in tasks]
    cropped = manifest.loc[np.array(kept, dtype=bool)].copy()
    cropped["crop_path"] = [p for p, k in zip(crop_paths, kept) if k]
    cropped["crop_box"] = [o.crop_box for o in outcomes if o.reason is None]
    cropped["detector"] = [r for r, k in zip(routes, kept) if k]
    cropped["faces_found"] = pd.array([o.faces_found for o in outcomes if o.reason is None], dtype="Int64")
    refused = manifest.loc[~np.array(kept, dtype=bool), ["dataset", "path"]]
    rejects = rejects_frame([
        {"dataset": dataset, "path": path, "stage": "crop", "reason": o.reason}
        for (dataset, path), o in zip(refused.itertuples(index=False), [o for o in outcomes if o.reason is not None])
    ])
    outcome_frame = pd.DataFrame({
        "route": routes, "kept": kept, "reason": [o.reason for o in outcomes],
        "faces_found": pd.array([o.faces_found for o in outcomes], dtype="Int64"),
    })
    return CropResult(cropped.reset_index(drop=True), rejects, outcome_frame)


# --------------------------------------------------------------------------------------------------
# Data quality: who got lost


def _rates(found: pd.Series, groups: pd.Series) -> dict:
    """{group: {in, found, rate}} over the rows of `found` (booleans), grouped by `groups`."""
    groups = pd.Series(groups).reset_index(drop=True)  # a categorical keeps its order (age bands)
    table = pd.DataFrame({"found": found.to_numpy(bool), "group": groups}).groupby("group", observed=True)["found"]
    return {
        str(group): {"in": int(n), "found": int(k), "rate": round(float(k) / n, 4)}
        for group, n, k in zip(table.size().index, table.size(), table.sum())
    }


def _bands_with_below(ages: pd.Series, edges: Sequence[int]) -> pd.Categorical:
    """Age bands in band order, ages below the first edge in a last category `below bands`."""
    bands = age_band(ages, edges).add_categories(["below bands"])
    return bands.fillna("below bands")


def _detection_by_group(frame: pd.DataFrame, found: pd.Series, edges: Sequence[int]) -> dict:
    """Detection rates by race, gender and age band (a null label reads `unknown`)."""
    return {
        "race": _rates(found, frame["race"].astype(object).where(frame["race"].notna(), "unknown")),
        "gender": _rates(found, frame["gender"].astype(object).where(frame["gender"].notna(), "unknown")),
        "age_band": _rates(found, _bands_with_below(frame["age"], edges)),
    }


def crop_quality(manifest: pd.DataFrame, outcomes: pd.DataFrame, edges: Sequence[int]) -> dict:
    """Per dataset: the summary every stage writes (`stages.lib.quality.summarise`: rows in, kept,
    rejected by reason, kept and rejection rate by gender, race, age band), plus rows per route and,
    for the rows that went through the detector, its detection rate by group (the detector's bias)."""
    manifest = manifest.reset_index(drop=True)
    report = {}
    for dataset, rows in manifest.groupby("dataset", sort=False).groups.items():
        frame, outcome = manifest.loc[rows], outcomes.loc[rows]
        kept = outcome["kept"].to_numpy(bool)
        rejects = frame.loc[~kept, ["dataset", "path", "age", "gender", "race"]].assign(
            stage="crop", reason=outcome.loc[~kept, "reason"].to_numpy())
        entry = summarise(str(dataset), frame.loc[kept], rejects, edges, stage="crop")
        entry["routes"] = {route: int(n) for route, n in outcome["route"].value_counts().sort_index().items()}
        detected = outcome["route"].isin(DETECTORS)
        if detected.any():
            # readable photos only: a file OpenCV cannot open says nothing about the detector
            codes = outcome["reason"].map(reason_code, na_action="ignore")
            attempted = detected & ~codes.isin(["image_missing", "image_empty", "image_unreadable"])
            found = outcome.loc[attempted, "kept"]
            entry["detection"] = {
                "detector": str(outcome.loc[detected, "route"].iloc[0]),
                "attempted": int(attempted.sum()),
                "found": int(found.sum()),
                "rate": round(float(found.mean()), 4) if len(found) else None,
                "several_faces": int((outcome.loc[attempted, "faces_found"] > 1).sum()),
                "by": _detection_by_group(frame[attempted], found, edges),
            }
        report[str(dataset)] = entry
    return report
