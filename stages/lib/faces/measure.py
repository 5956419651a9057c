"""Every face's measurements: apparent skin colour (`skin.py`), photo quality (`quality.py`) and head
pose (`pose.py`), from a square face crop and the face square it holds (`landmarks.FaceSquare`).

One face (`measure_face`): the 68 landmarks are those the dataset gives (drawn faces) or dlib's,
started from the face square; the crop is then resized so that the face square is `face_scale` pixels
wide, and everything after is measured at that scale (a 64-pixel demo crop and a 224-pixel photo crop
alike, and KMeans sees a few thousand pixels, not tens of thousands). A face gets a reason, never a
made-up value, where a measure cannot be taken (`problem`, reasons joined by "; "):

- `unreadable photo (<code>)`: the crop cannot be decoded; nothing is measured;
- `all-dark crop` / `all-white crop`: `all_clipped` or more of the face square is clipped; only the
  exposure measures are kept;
- `no landmarks (...)`: the dlib extra is missing; photo quality is kept, skin colour and pose are null;
- `skin mask below N pixels`: too little skin between the landmarks; skin colour is null;
- `grey-scale photo: no hue`: L* is kept, h* is null.

Many faces (`measure_faces`): in `workers` processes, each loading dlib's landmark model once.
"""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass, field

import cv2
import numpy as np
import sklearn
from threadpoolctl import threadpool_limits

from stages.lib.core.progress import progress as show_progress
from stages.lib.faces.detect import Detector
from stages.lib.faces.geometry import cut_square, largest_first, square_region
from stages.lib.faces.images import FaceRejected, read_image
from stages.lib.faces.landmarks import FaceSquare, Landmarker, LandmarksUnavailable
from stages.lib.faces.pose import head_pose
from stages.lib.faces.quality import face_scaled, is_greyscale, photo_quality, scaled_square
from stages.lib.faces.skin import SkinMethod, skin_colour, skin_mask

MEASURED = ("skin_lightness", "skin_hue", "skin_pixels", "clipped_dark", "clipped_bright", "background_luminance",
            "contrast", "sharpness", "yaw", "pitch", "roll")


@dataclass(frozen=True)
class MeasureSettings:
    """params.yaml's `measure` section."""

    face_scale: int = 96        # the face square's side, in pixels, at which everything is measured
    min_skin_pixels: int = 300  # fewer skin pixels at that scale: no skin colour
    all_clipped: float = 0.9    # this share of the face square clipped: an all-dark (all-white) crop
    method: SkinMethod = field(default_factory=SkinMethod)


@dataclass(frozen=True)
class FaceToMeasure:
    """A crop to measure: its file, the margin its face square implies (NaN: a dataset's own face crop)
    and the landmarks the dataset gives in the crop's pixels (None: dlib finds them)."""

    crop: str
    margin: float
    landmarks: np.ndarray | None = None


def empty_row(problem: str | None = None) -> dict:
    return {**dict.fromkeys(MEASURED), "problem": problem}


def measure_face(rgb: np.ndarray, square: FaceSquare, landmarks: np.ndarray | None, *,
                 settings: MeasureSettings, missing_landmarks: str | None = None) -> dict:
    """One face's row (the columns MEASURED + problem) from a uint8 RGB crop, its face square and its
    (68, 2) landmarks in the crop's pixels (None: then `missing_landmarks` says why)."""
    scaled, factor = face_scaled(rgb, square, settings.face_scale)
    row = _photo_measures(scaled, scaled_square(square, factor, settings.face_scale), settings.all_clipped)
    if row["problem"] is None and landmarks is None:
        row["problem"] = f"no landmarks ({missing_landmarks})"
    if row["problem"] is None:
        row.update(_landmark_measures(scaled, np.asarray(landmarks, dtype=float) * factor, settings))
    return row


def _photo_measures(scaled: np.ndarray, face: FaceSquare, all_clipped: float) -> dict:
    """The quality columns; only the clipped shares, and the reason, for an all-dark or all-white crop."""
    quality = photo_quality(scaled, face)
    row = empty_row(_clipped_problem(quality.clipped_dark, quality.clipped_bright, all_clipped))
    row.update(clipped_dark=quality.clipped_dark, clipped_bright=quality.clipped_bright)
    if row["problem"] is None:
        row.update(background_luminance=quality.background_luminance, contrast=quality.contrast,
                   sharpness=quality.sharpness)
    return row


def _landmark_measures(scaled: np.ndarray, points: np.ndarray, settings: MeasureSettings) -> dict:
    """Head pose, the skin mask's size and the skin colour (or the reason there is none)."""
    pose = head_pose(points, scaled.shape[0])
    row = {} if pose is None else {"yaw": pose.yaw, "pitch": pose.pitch, "roll": pose.roll}
    mask = skin_mask(points, scaled.shape[:2])
    row["skin_pixels"] = int(mask.sum())
    if row["skin_pixels"] < settings.min_skin_pixels:
        return row | {"problem": f"skin mask below {settings.min_skin_pixels} pixels"}
    colour = skin_colour(scaled, mask, settings.method)
    if is_greyscale(scaled):
        return row | {"skin_lightness": colour.lightness, "problem": "grey-scale photo: no hue"}
    return row | {"skin_lightness": colour.lightness, "skin_hue": colour.hue}


def _clipped_problem(dark: float, bright: float, limit: float) -> str | None:
    if dark >= limit:
        return "all-dark crop"
    if bright >= limit:
        return "all-white crop"
    return None


class FaceMeasurer:
    """Measures `FaceToMeasure`s with one set of settings; loads dlib's landmarks on first need, once
    per process, and remembers why it could not."""

    def __init__(self, settings: MeasureSettings):
        self.settings = settings
        # KMeans sees a few thousand points per face: threads cost more than they save, and the checks
        # of its arguments cost as much as the clustering. Both set once, for this process.
        threadpool_limits(1)
        sklearn.set_config(skip_parameter_validation=True)
        self._landmarker: Landmarker | None = None
        self._missing: str | None = None

    def landmarks(self, rgb: np.ndarray, square: FaceSquare) -> np.ndarray | None:
        if self._landmarker is None and self._missing is None:
            try:
                self._landmarker = Landmarker()
            except LandmarksUnavailable as missing:
                self._missing = str(missing)
        return None if self._landmarker is None else self._landmarker(rgb, square)

    def __call__(self, face: FaceToMeasure) -> dict:
        try:
            bgr = read_image(face.crop, upright=False)
        except FaceRejected as rejected:
            return empty_row(f"unreadable photo ({rejected.code})")
        return self.measure_crop(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), face.margin, face.landmarks)

    def measure_crop(self, rgb: np.ndarray, margin: float, landmarks: np.ndarray | None = None) -> dict:
        """A square uint8 RGB crop's row; its landmarks are dlib's unless given."""
        square = FaceSquare.central(rgb.shape[0], margin)
        landmarks = landmarks if landmarks is not None else self.landmarks(rgb, square)
        return measure_face(rgb, square, landmarks, settings=self.settings, missing_landmarks=self._missing)

    def measure_photo(self, bgr: np.ndarray, detector: Detector | None, *, margin: float, size: int) -> list[dict]:
        """Each face of a photo, largest first (as predict numbers them), cut as the crop stage cuts it:
        a row of face (1-based), x, y, w, h (the face box in the photo) and the measurements. With
        `detector` None the photo is one ready face crop (a square of its whole)."""
        height, width = bgr.shape[:2]
        if detector is None:  # the whole photo, squared without a margin, as the crop stage's ready crops
            boxes, margins = [(0.0, 0.0, float(width), float(height))], [np.nan]
        else:
            boxes = [found.box for found in largest_first(detector.detect(bgr))]
            margins = [margin] * len(boxes)
        rows = []
        for number, (box, face_margin) in enumerate(zip(boxes, margins), start=1):
            region = square_region(box, 0.0 if np.isnan(face_margin) else face_margin)
            crop = cv2.cvtColor(cut_square(bgr, region, size), cv2.COLOR_BGR2RGB)
            placed = dict(zip(("x", "y", "w", "h"), (round(float(v), 1) for v in box)))
            rows.append({"face": number, **placed, **self.measure_crop(crop, face_margin)})
        return rows


_worker: FaceMeasurer | None = None


def _start_worker(settings: MeasureSettings) -> None:
    global _worker
    _worker = FaceMeasurer(settings)


def _measure_in_worker(face: FaceToMeasure) -> dict:
    return _worker(face)


def measure_faces(faces: list[FaceToMeasure], settings: MeasureSettings, *, workers: int,
                  progress: bool | None = None) -> list[dict]:
    """Every face's row, in order; `workers` > 1 measures in that many processes (spawned: safe
    whatever threads the parent runs)."""
    rows: list[dict] = []
    with show_progress(len(faces), "measure", "face", show=progress) as bar:
        if workers <= 1 or len(faces) < 2:
            measurer = FaceMeasurer(settings)
            for face in faces:
                rows.append(measurer(face))
                bar.update(1)
            return rows
        chunk = max(1, min(32, len(faces) // (workers * 8)))
        pool = multiprocessing.get_context("spawn").Pool(workers, _start_worker, (settings,))
        try:
            for row in pool.imap(_measure_in_worker, faces, chunksize=chunk):
                rows.append(row)
                bar.update(1)
            pool.close()
        finally:
            pool.terminate()  # after close: waits for the idle workers (their CPU time is then counted)
            pool.join()
    return rows


# --------------------------------------------------------------------------------------------------
# predict --measure: a face's measurements as predict prints them

PREDICT_FIELDS = ("skin_lightness", "skin_hue", "exposure", "sharpness", "yaw", "pitch", "roll")


def predict_fields(row: dict) -> dict:
    """The measurements predict adds to a face's record: exposure is the clipped shares."""
    exposure = None if row["clipped_dark"] is None else {"clipped_dark": row["clipped_dark"],
                                                         "clipped_bright": row["clipped_bright"]}
    return {**{key: _rounded(row.get(key)) for key in PREDICT_FIELDS if key != "exposure"},
            "exposure": exposure and {key: round(value, 4) for key, value in exposure.items()}}


def _rounded(value):
    return None if value is None else round(float(value), 2)


def format_measurements(records: list[dict]) -> str:
    """A plain-text table of measurement records: one line per face, or per photo with its problem."""
    lines = [f"{'photo':<40} {'face':>4} {'L*':>6} {'h*':>6} {'dark':>5} {'white':>5} {'sharp':>7} "
             f"{'yaw':>6} {'pitch':>6} {'roll':>6}  problem"]
    for row in records:
        photo = row["photo"] if len(row["photo"]) <= 40 else "..." + row["photo"][-37:]
        exposure = row.get("exposure") or {}
        cells = [(row.get("skin_lightness"), 6, 1), (row.get("skin_hue"), 6, 1), (exposure.get("clipped_dark"), 5, 2),
                 (exposure.get("clipped_bright"), 5, 2), (row.get("sharpness"), 7, 1), (row.get("yaw"), 6, 1),
                 (row.get("pitch"), 6, 1), (row.get("roll"), 6, 1)]
        shown = " ".join(f"{'-' if value is None else f'{value:.{digits}f}':>{width}}" for value, width, digits in cells)
        face = "-" if row.get("face") is None else str(row["face"])
        lines.append(f"{photo:<40} {face:>4} {shown}  {row.get('problem') or ''}".rstrip())
    return "\n".join(lines)


def measure_photos(paths, detector: Detector | None, *, margin: float, size: int,
                   settings: MeasureSettings) -> list[dict]:
    """predict --measure: one record per face (photo, face, x, y, w, h, PREDICT_FIELDS, problem); a photo
    that cannot be read or has no face gets one record with its problem."""
    measurer, records = FaceMeasurer(settings), []
    for path in paths:
        blank = {"photo": str(path), "face": None, **dict.fromkeys(("x", "y", "w", "h", *PREDICT_FIELDS))}
        try:
            bgr = read_image(str(path), upright=True)
        except FaceRejected as rejected:
            records.append(blank | {"problem": rejected.reason})
            continue
        rows = measurer.measure_photo(bgr, detector, margin=margin, size=size)
        if not rows:
            records.append(blank | {"problem": f"no_face: {detector.name} found no face"})
        records += [blank | {key: row[key] for key in ("face", "x", "y", "w", "h")} | predict_fields(row)
                    | {"problem": row["problem"]} for row in rows]
    return records


def with_measurements(records: list[dict], measured: list[dict]) -> list[dict]:
    """Prediction records (photo, face, ...) with each face's measurements added (PREDICT_FIELDS, and
    `measure_problem` where they could not all be taken); faces match on photo and face number."""
    by_face = {(row["photo"], row["face"]): row for row in measured if row["face"] is not None}
    blank = dict.fromkeys(PREDICT_FIELDS) | {"measure_problem": None}
    out = []
    for record in records:
        row = by_face.get((record["photo"], record.get("face")))
        extra = blank if row is None else {**{key: row[key] for key in PREDICT_FIELDS}, "measure_problem": row["problem"]}
        out.append(record | extra)
    return out
