"""Photos through a published model (`stages.predict --model`): every face found, or each photo whole
as one ready face crop, predicted with the model's own framing; every photo accounted for.

One record per face: photo, face (1 = largest), its box, age (years; None for a band model),
age_band (a band model's most probable band, e.g. "25-32"; else the band of the age in params'
age_bands), gender (by the card's decision rule), p_female, problem (None, or why the photo has no
prediction); and age_own, the model's own age reading, where its card has one beside the study's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from stages.lib.backbones.cards import FacePredictions, ModelCard, PublishedModel, whole_image_boxes
from stages.lib.core.labels import age_band
from stages.lib.faces.detect import Detector
from stages.lib.faces.geometry import largest_first
from stages.lib.faces.images import FaceRejected, read_image

RECORD_FIELDS = ("photo", "face", "x", "y", "w", "h", "age", "age_band", "gender", "p_female", "problem")


def band_names(card: ModelCard, predictions: FacePredictions, age_edges: Sequence[int]) -> list[str | None]:
    """Each face's age band: the band model's most probable one, else its age's band in `age_edges`."""
    if card.age_bands is not None:
        return [f"{low}-{high}" for low, high in (card.age_bands[i] for i in np.argmax(predictions.band_probs, axis=1))]
    bands = age_band(predictions.age, age_edges)
    return [None if isinstance(band, float) else str(band) for band in bands]


def face_records(card: ModelCard, predictions: FacePredictions, boxes: np.ndarray,
                 age_edges: Sequence[int]) -> list[dict]:
    """The prediction fields of one photo's faces, in face order."""
    bands = band_names(card, predictions, age_edges)
    genders = card.genders(predictions.p_female)
    own = [None] * len(boxes) if predictions.age_own is None else [round(float(a), 2) for a in predictions.age_own]
    records = []
    for number, (box, age, band, gender, p_female, age_own) in enumerate(
            zip(boxes, predictions.age, bands, genders, predictions.p_female, own), 1):
        x, y, w, h = (int(round(v)) for v in box)
        records.append({"face": number, "x": x, "y": y, "w": w, "h": h,
                        "age": None if np.isnan(age) else round(float(age), 2), "age_band": band,
                        "gender": gender, "p_female": round(float(p_female), 4), "problem": None}
                       | ({} if age_own is None else {"age_own": age_own}))
    return records


def photo_boxes(image: np.ndarray, detector: Detector | None) -> np.ndarray:
    """The faces' boxes, largest first; the whole photo when `detector` is None (a ready crop)."""
    if detector is None:
        return whole_image_boxes([image])
    return np.array([d.box for d in largest_first(detector.detect(image))], dtype=float).reshape(-1, 4)


def predict_photos(model: PublishedModel, paths: Sequence[Path], detector: Detector | None,
                   age_edges: Sequence[int]) -> list[dict]:
    """One record per face (RECORD_FIELDS); a photo that cannot be read or has no face gets one record
    with `problem` set instead of vanishing."""
    records = []
    for path in paths:
        blank = dict.fromkeys(RECORD_FIELDS) | {"photo": str(path)}
        try:
            image = read_image(str(path), upright=True)
        except FaceRejected as rejected:
            records.append(blank | {"problem": rejected.reason})
            continue
        boxes = photo_boxes(image, detector)
        if not len(boxes):
            records.append(blank | {"problem": f"no_face: {detector.name} found no face"})
            continue
        predictions = model.predict([image] * len(boxes), boxes)
        records += [blank | record for record in face_records(model.card, predictions, boxes, age_edges)]
    return records


def format_records(records: Sequence[dict]) -> str:
    """A plain-text table: one line per face, or per photo with a problem."""
    lines = [f"{'photo':<40} {'face':>4} {'box (x, y, w, h)':<22} {'age':>5} {'band':>7} {'gender':<6} {'P(female)':>9}"]
    for row in records:
        photo = row["photo"] if len(row["photo"]) <= 40 else "..." + row["photo"][-37:]
        if row["problem"] is not None:
            lines.append(f"{photo:<40} {'-':>4} {row['problem']}")
            continue
        box = f"{row['x']}, {row['y']}, {row['w']}, {row['h']}"
        age = "-" if row["age"] is None else f"{row['age']:.1f}"
        lines.append(f"{photo:<40} {row['face']:>4} {box:<22} {age:>5} {row['age_band'] or '-':>7} "
                     f"{row['gender']:<6} {row['p_female']:>9.2f}")
    return "\n".join(lines)


def format_cards(cards: Sequence[ModelCard]) -> str:
    """--list-models: one block per model, its name, family, source and training data."""
    blocks = []
    for card in cards:
        output = "age bands " + ", ".join(f"{low}-{high}" for low, high in card.age_bands) if card.age_bands else "age in years"
        blocks.append(f"{card.name}\n  family:     {card.family}\n  source:     {card.source}\n"
                      f"  trained on: {card.trained_on}\n  predicts:   {output}, P(female)\n"
                      f"  gender:     {card.decision_rule}\n  age:        {card.age_reading}\n"
                      + (f"  framing:    {card.framing}\n" if card.framing else "")
                      + (f"  audited as: {card.contrast} contrast only\n" if card.contrast else "")
                      + f"  weights:    {', '.join(card.weights)}")
    return "\n".join(blocks)
