"""The crop runner: every manifest row to a square face crop, in worker processes.

Each manifest row takes one of three routes (`route_of`), recorded in the `detector` column:

- `dataset_box`: the dataset gives the face box (IMDB-Wiki's face_location, UTKFace in-the-wild's
  landmark box); the crop is that box plus the margin.
- `precropped`: the image is already a face crop (UTKFace aligned, FairFace): it is only resized
  (made square first by padding when it is not; no detection, no margin).
- `yunet` / `haar`: an OpenCV detector finds the face; the largest one found is taken (the labelled
  person is the photo's subject) and `faces_found` says how many there were.

With `detect_precropped` (crop.detect_precropped), each detector named there also runs on every
`precropped` photo and `found_by_<detector>` records how many faces it found (0: it missed the face);
the row is kept either way. So the detector's bias is measured on real faces that were cropped already.

Geometry is `geometry.py`'s, detectors `detect.py`'s, image reading `images.py`'s. Boxes refer to the
pixels as stored: a row with a dataset box is read ignoring any EXIF orientation (the box was
measured that way); a row that is detected is read upright (EXIF applied).

A row that cannot be cropped is rejected with a reason `<code>: <detail>`, code one of image_missing,
image_empty, image_unreadable, image_truncated, box_invalid, box_outside, no_face; `stats.crop_quality`
counts the codes and the keep and detection rates by race, gender and age band.

Layout: `route_of` is pure; `crop_row` is the I/O edge for one row (reads the photo, writes the crop);
`crop_manifest` runs the rows in worker processes, each with its own detector (OpenCV detectors
cannot cross processes).
"""

from __future__ import annotations

import hashlib
import multiprocessing
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from stages.lib.core.progress import progress as show_progress
from stages.lib.core.schema import rejects_frame
from stages.lib.faces.detect import DETECTORS, CropError, Detector, make_detector
from stages.lib.faces.geometry import Region, choose_face, cut_square, has_box, square_region, valid_box, visible_part
from stages.lib.faces.images import FaceRejected, read_image

ROUTES = ("dataset_box", "precropped", *DETECTORS)
JPEG_QUALITY = 95


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
    found_by: dict[str, int] = field(default_factory=dict)  # detect_precropped: faces each detector found


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
    return crop_image(task, read_task_image(task), detector, margin=margin, size=size)


def read_task_image(task: CropTask) -> np.ndarray | FaceRejected:
    """The task's photo (upright unless the dataset's box is in the file's own pixels), or why it cannot be read."""
    try:
        return read_image(task.source, upright=task.route != "dataset_box")
    except FaceRejected as rejected:
        return rejected


def crop_image(task: CropTask, image: np.ndarray | FaceRejected, detector: Detector | None, *, margin: float,
               size: int) -> CropOutcome:
    """Crop the task's decoded photo to `task.target` (a photo that could not be read: its rejection)."""
    try:
        if isinstance(image, FaceRejected):
            raise image
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
    ssd_files: tuple[Path, Path] | None = None  # the SSD detector's (model, config)
    detect_precropped: tuple[str, ...] = ()  # detectors also run on ready crops, recording what they find


class RowCropper:
    """Crops rows with one set of settings; creates its detector on first need, once per process
    (OpenCV detectors cannot be shared between processes)."""

    def __init__(self, settings: CropSettings):
        self.settings = settings
        self._detectors: dict[str, Detector] = {}

    def detector(self, name: str | None = None) -> Detector:
        name = name or self.settings.detector
        if name not in self._detectors:
            self._detectors[name] = make_detector(name, self.settings.yunet_model, self.settings.min_score,
                                                  ssd_files=self.settings.ssd_files)
        return self._detectors[name]

    def crop_all(self, tasks: list[CropTask]) -> list[CropOutcome]:
        """Each task's outcome, in order: every photo is cropped, then the ready crops are shown to the
        detectors of detect_precropped, one detector over all of them before the next (`found_by`). The
        ready crops' decoded photos are held until then: the tasks come in runs of at most 64 (`run_tasks`)."""
        outcomes, measured = [], []
        for task in tasks:
            detector = self.detector() if task.route in DETECTORS else None
            image = read_task_image(task)   # decoded once: cropped, then shown to the detectors of detect_precropped
            outcome = crop_image(task, image, detector, margin=self.settings.margin, size=self.settings.size)
            if task.route == "precropped" and outcome.reason is None and self.settings.detect_precropped:
                measured.append((len(outcomes), image))
            outcomes.append(outcome)
        for (position, _), found in zip(measured, self.found_by([image for _, image in measured])):
            outcomes[position] = replace(outcomes[position], found_by=found)
        return outcomes

    def found_by(self, images: list[np.ndarray]) -> list[dict[str, int]]:
        """How many faces each detector of detect_precropped finds in each ready crop.

        Detector after detector rather than photo after photo: each network's weights stay in the CPU's
        caches across the photos, about 4% less time (bench/bench_crop_detect.py); every count is the same."""
        counts = {name: [len(self.detector(name).detect(image)) for image in images]
                  for name in self.settings.detect_precropped}
        return [{name: found[i] for name, found in counts.items()} for i in range(len(images))]


_worker_cropper: RowCropper | None = None


def _start_worker(settings: CropSettings) -> None:
    global _worker_cropper
    cv2.setNumThreads(1)  # one process per core already; OpenCV's own threads would oversubscribe
    _worker_cropper = RowCropper(settings)


def _crop_in_worker(tasks: list[CropTask]) -> list[CropOutcome]:
    return _worker_cropper.crop_all(tasks)


def batches(tasks: list[CropTask], size: int) -> list[list[CropTask]]:
    """The tasks in consecutive runs of `size` (the last one shorter)."""
    return [tasks[start:start + size] for start in range(0, len(tasks), size)]


def run_tasks(tasks: list[CropTask], settings: CropSettings, workers: int, progress: bool | None = None) -> list[CropOutcome]:
    """Every task's outcome, in task order; `workers` > 1 crops in that many processes.

    progress: None shows a bar on a terminal and a line now and then elsewhere (`core.progress`)."""
    chunk = max(1, min(64, len(tasks) // (max(1, workers) * 8)))
    with show_progress(len(tasks), "crop", "img", show=progress) as bar:
        if workers <= 1 or len(tasks) < 2:
            cropper = RowCropper(settings)
            return [outcome for batch in batches(tasks, chunk) for outcome in _counted(cropper.crop_all(batch), bar)]
        # spawn: a fresh interpreter per worker, safe whatever threads the parent has started
        with multiprocessing.get_context("spawn").Pool(workers, _start_worker, (settings,)) as pool:
            return [outcome for done in pool.imap(_crop_in_worker, batches(tasks, chunk)) for outcome in _counted(done, bar)]


def _counted(outcomes: list[CropOutcome], bar) -> list[CropOutcome]:
    bar.update(len(outcomes))
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
    *, root: Path = Path("."), progress: bool | None = None,
) -> CropResult:
    """Crop every row of `manifest` into `root/out_root/<dataset>/`; every row is kept or rejected.

    Paths in the manifest (and the crop paths written) are relative to `root` unless absolute.
    CropError before any work when a detector is needed but cannot be created (no YuNet model)."""
    manifest = manifest.reset_index(drop=True)
    tasks, crop_paths = plan_tasks(manifest, out_root, settings.detector, root)
    if any(task.route in DETECTORS for task in tasks):
        make_detector(settings.detector, settings.yunet_model, settings.min_score,
                      ssd_files=settings.ssd_files)  # fail now, not in a worker
    for name in settings.detect_precropped:
        make_detector(name, settings.yunet_model, settings.min_score, ssd_files=settings.ssd_files)
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
    for name in settings.detect_precropped:
        cropped[f"found_by_{name}"] = pd.array([o.found_by.get(name) for o in outcomes if o.reason is None],
                                               dtype="Int64")
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
