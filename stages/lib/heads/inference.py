"""Age and gender for new photos with a trained experiment: find faces, crop, embed, apply the heads.

The same steps, in the same code, as the pipeline: the crop geometry of the crop stage
(`faces.square_region` with crop.margin, `faces.cut_square` to crop.size), the params' backbone
(`backbones.load`: resize to its input size, then its own alignment and network) and the heads the
train stage saved in models/<experiment>/. One difference: the pipeline stores crops as JPEG
(quality 95) before the features pass; here the crop goes to the backbone directly.

Faces are framed as the heads' training faces were (heads/framing.py): `stages.predict` reads the
framing recorded beside the heads and passes it here as a detector (or none, for chips) and a margin.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import keras
import numpy as np
import pandas as pd

from stages.lib.backbones.vgg_face import resize_uint8
from stages.lib.backbones.registry import BackboneSpec, Embed, embed_parts
from stages.lib.faces.detect import Detector
from stages.lib.faces.geometry import Detection, Region, cut_square, largest_first, square_region
from stages.lib.faces.images import FaceRejected, read_image
from stages.lib.heads.model import HeadWeightsError, argmax_age, expected_age, predicted_gender, prob_female

RESULT_COLUMNS = ["photo", "face", "x", "y", "w", "h", "score", "age", "age_argmax", "gender", "p_female", "problem"]


@dataclass(frozen=True)
class FoundFace:
    detection: Detection
    region: Region
    crop_rgb: np.ndarray  # uint8 (size, size, 3)


def photo_faces(image_bgr: np.ndarray, detector: Detector | None, margin: float, size: int) -> list[FoundFace]:
    """Every face in the photo, largest first, each cut as the crop stage cuts it.

    With `detector` None the photo is taken as one ready face crop (padded square, no margin), as
    the crop stage treats UTKFace's aligned or FairFace's faces.
    """
    height, width = image_bgr.shape[:2]
    if detector is None:
        detections = [Detection((0.0, 0.0, float(width), float(height)), 1.0)]
        regions = [square_region((0, 0, width, height), 0.0)]
    else:
        detections = largest_first(detector.detect(image_bgr))
        regions = [square_region(d.box, margin) for d in detections]
    return [FoundFace(d, r, cv2.cvtColor(cut_square(image_bgr, r, size), cv2.COLOR_BGR2RGB))
            for d, r in zip(detections, regions)]


def check_heads(heads: dict[str, keras.Model], spec: BackboneSpec, source: Path) -> None:
    """HeadWeightsError (a user's mistake, a ValueError) naming the fix when the saved heads do not take
    this backbone's features."""
    widths = {spec.feature_dim, spec.published_outputs, spec.published_inputs} - {0}
    for task, model in heads.items():
        width = int(model.input_shape[-1])
        if width not in widths:
            raise HeadWeightsError(
                f"{source}/{task}.keras takes features {width} wide, but the params' backbone "
                f"({spec.name}, input {spec.input_size}) gives {spec.feature_dim}: params.yaml changed since "
                "these heads were trained; run `dvc repro` (or `dvc exp apply` the experiment that made them)")


def load_heads(models_dir: Path) -> dict[str, keras.Model]:
    """The age and gender heads the train stage saved in `models_dir`."""
    heads = {}
    for task in ("age", "gender"):
        path = Path(models_dir) / f"{task}.keras"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: train the experiment first (`dvc repro train@{Path(models_dir).name}`)")
        heads[task] = keras.models.load_model(path, compile=False)
    return heads


def predict_crops(crops_rgb: Sequence[np.ndarray], margins: Sequence[float], backbone: tuple[BackboneSpec, Embed],
                  heads: dict[str, keras.Model]) -> pd.DataFrame:
    """age (expected value), age_argmax, gender and p_female for each uint8 RGB face crop (each cut
    with its `margin`, NaN for a ready face crop), through the (spec, embed) `backbone`. Each head
    reads the part of `embed`'s output as wide as its input (`registry.embed_parts`: the feature row,
    or the published model's own outputs or inputs)."""
    if not len(crops_rgb):
        return pd.DataFrame(columns=["age", "age_argmax", "gender", "p_female"])
    spec, embed = backbone
    batch = resize_uint8(np.stack(crops_rgb), spec.input_size)
    parts = embed_parts(spec, np.asarray(embed(batch, np.asarray(margins, dtype=float)), dtype=np.float32))
    by_width = {part.shape[1]: part for part in parts.values()}
    # Called, not `.predict`: predict builds a tf.data pipeline and a function per call (~0.25 s), more
    # than the heads' arithmetic on a block of faces.
    age_probs = np.asarray(heads["age"](by_width[heads["age"].input_shape[-1]], training=False), dtype=np.float32)
    gender_probs = np.asarray(heads["gender"](by_width[heads["gender"].input_shape[-1]], training=False),
                              dtype=np.float32)
    return pd.DataFrame({
        "age": expected_age(age_probs),
        "age_argmax": argmax_age(age_probs).astype(int),
        "gender": predicted_gender(gender_probs),
        "p_female": prob_female(gender_probs).astype(float),
    })


@dataclass(frozen=True)
class Cutting:
    """How faces are found and cut from a photo: the detector (None: the photo is one ready face crop),
    the margin grown around its box, and the crop side (the crop stage's)."""

    detector: Detector | None
    margin: float
    size: int


def predict_photos(paths: Sequence[Path], cutting: Cutting, backbone: tuple[BackboneSpec, Embed],
                   heads: dict[str, keras.Model], *, batch_size: int = 64, keep_found: bool = True
                   ) -> tuple[pd.DataFrame, dict[Path, tuple[np.ndarray, list[FoundFace]]]]:
    """One row per face found (RESULT_COLUMNS); a photo with no face, or one that cannot be read, gets
    one row with `problem` set instead of vanishing. Also each readable photo and its faces (to annotate;
    empty with `keep_found` False, so that an audit of thousands of photos does not hold them all).

    The photos go through in blocks of `batch_size`: the faces of a block are embedded and classified
    in one batch (one at a time, the backbone and Keras' per-call overhead would cap the rate at a
    fraction of the features stage's), while a reader thread reads and detects the next block."""
    blocks = [list(paths[start:start + batch_size]) for start in range(0, len(paths), batch_size)]
    rows, found = [], {}
    with ThreadPoolExecutor(max_workers=1) as reader:  # one thread: the detector is used by one thread only
        upcoming = reader.submit(_read_block, blocks[0], cutting) if blocks else None
        for number in range(len(blocks)):
            block = upcoming.result()
            if number + 1 < len(blocks):
                upcoming = reader.submit(_read_block, blocks[number + 1], cutting)
            if keep_found:
                found.update({path: (image, faces) for path, image, faces, _ in block if image is not None})
            rows.extend(_block_rows(block, cutting, backbone, heads))
    return pd.DataFrame(rows, columns=RESULT_COLUMNS), found


def _read_block(paths: Sequence[Path], cutting: Cutting) -> list[tuple[Path, np.ndarray | None, list[FoundFace], str | None]]:
    """(path, image, faces, problem) of each photo: image None and the reason when it cannot be read."""
    block = []
    for path in paths:
        try:
            image = read_image(str(path), upright=True)
        except FaceRejected as rejected:
            block.append((Path(path), None, [], rejected.reason))
            continue
        block.append((Path(path), image, photo_faces(image, cutting.detector, cutting.margin, cutting.size), None))
    return block


def _block_rows(block, cutting: Cutting, backbone: tuple[BackboneSpec, Embed], heads: dict[str, keras.Model]
                ) -> list[dict]:
    """The result rows of a block of read photos, its faces predicted in one batch."""
    crops = [face.crop_rgb for _, _, faces, _ in block for face in faces]
    margin_used = np.nan if cutting.detector is None else cutting.margin
    predictions = iter(predict_crops(crops, [margin_used] * len(crops), backbone, heads).to_dict("records"))
    rows = []
    for path, image, faces, problem in block:
        if image is None:
            rows.append({"photo": str(path), "problem": problem})
        elif not faces:
            rows.append({"photo": str(path), "problem": f"no_face: {cutting.detector.name} found no face"})
        for number, face in enumerate(faces, start=1):
            x, y, w, h = (round(v) for v in face.detection.box)
            rows.append({"photo": str(path), "face": number, "x": x, "y": y, "w": w, "h": h,
                         "score": round(face.detection.score, 3), **next(predictions)})
    return rows


def format_table(results: pd.DataFrame) -> str:
    """A plain-text table: one line per face, or per photo with a problem."""
    lines = [f"{'photo':<40} {'face':>4} {'box (x, y, w, h)':<22} {'age':>5} {'argmax':>6} {'gender':<6} {'P(female)':>9}"]
    for row in results.to_dict("records"):
        photo = row["photo"] if len(row["photo"]) <= 40 else "..." + row["photo"][-37:]
        if isinstance(row["problem"], str):
            lines.append(f"{photo:<40} {'-':>4} {row['problem']}")
            continue
        box = f"{row['x']}, {row['y']}, {row['w']}, {row['h']}"
        lines.append(f"{photo:<40} {row['face']:>4} {box:<22} {row['age']:>5.1f} {row['age_argmax']:>6} "
                     f"{row['gender']:<6} {row['p_female']:>9.2f}")
    return "\n".join(lines)


def annotate(image_bgr: np.ndarray, faces: Sequence[FoundFace], results: pd.DataFrame) -> np.ndarray:
    """A copy of the photo with each face's box and `age, gender` drawn on it."""
    out = image_bgr.copy()
    thickness = max(1, round(max(out.shape[:2]) / 400))
    for face, row in zip(faces, results.to_dict("records")):
        x, y, w, h = (round(v) for v in face.detection.box)
        colour = (60, 60, 230) if row["gender"] == "female" else (230, 140, 40)
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, thickness)
        label = f"{row['age']:.0f} {row['gender']} ({row['p_female']:.2f})"
        scale = max(0.4, w / 250)
        (text_w, text_h), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        top = max(y - text_h - base - 4, 0)
        cv2.rectangle(out, (x, top), (x + text_w + 4, top + text_h + base + 4), colour, cv2.FILLED)
        cv2.putText(out, label, (x + 2, top + text_h + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                    thickness, cv2.LINE_AA)
    return out
