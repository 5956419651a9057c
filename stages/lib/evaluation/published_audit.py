"""The audit of a published age/gender model (stage `audit_models`): predict every test face of the
evaluate-role datasets with it, then evaluate it exactly as an experiment is evaluated
(audit_results.py: what is written where, and how each kind of model is judged).

Faces: the split manifest's rows of `roles.evaluate` datasets in the test split (the rows an
experiment's evaluation reads), as the crop stage cut them. Each crop records its margin (the crop
stage's `crop.margin`; NaN for a dataset's ready crop), so the face box inside a crop is its central
square of side size / (1 + 2 margin), and a ready crop is passed whole (`face_boxes`). The model frames
and aligns the face from that box as its own code does (backbones/published.py). Every output carries,
per test set, whether its faces were in the model's training data (`card.in_sample` by the dataset's
adapter; a dataset the card does not name is `unknown`).
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from typing import Sequence

import numpy as np
import pandas as pd

from stages.lib.backbones.cards import FacePredictions, ModelCard, PublishedModel
from stages.lib.backbones.store import Features, crop_margins
from stages.lib.core.labels import age_band
from stages.lib.core.params import Params
from stages.lib.core.schema import BAND_COLUMN, read_manifest
from stages.lib.evaluation.audit_results import (AUDIT_COLUMNS, CARD_FILE, METRICS_FILE, PREDICTIONS_FILE, UNKNOWN,
                                                 evaluate_band_model, evaluate_years)
from stages.lib.evaluation.band_models import band_label
from stages.lib.core.files import write_json
from stages.lib.evaluation.results import write_skin_analyses
from stages.lib.faces.images import FaceRejected, read_image

BATCH = 64   # crops read and predicted at once


# ---------------------------------------------------------------------------------------------------
# Faces and predictions


def face_boxes(sizes: Sequence[tuple[int, int]], margins: Sequence[float]) -> np.ndarray:
    """(n, 4) x, y, w, h of the face inside each crop of (height, width) `sizes[i]`: the central square
    of side / (1 + 2 margin), the crop stage's margin undone; the whole crop where the margin is NaN."""
    heights, widths = (np.asarray([s[k] for s in sizes], dtype=float) for k in (0, 1))
    margins = np.asarray(margins, dtype=float)
    side = np.minimum(heights, widths) / (1 + 2 * np.nan_to_num(margins))
    ready = np.isnan(margins)
    return np.column_stack([np.where(ready, 0, (widths - side) / 2), np.where(ready, 0, (heights - side) / 2),
                            np.where(ready, widths, side), np.where(ready, heights, side)]).reshape(-1, 4)


def in_sample(card: ModelCard, adapter: str) -> str:
    """Were this dataset's faces in the model's training data: yes, partly, no, or unknown."""
    return card.in_sample.get(adapter, UNKNOWN)


def faces_to_audit(params: Params) -> pd.DataFrame:
    """The split manifest's test rows of the evaluate-role datasets, with each crop's margin."""
    manifest = read_manifest(params.paths.manifest)
    faces = manifest[manifest["dataset"].isin(params.roles.evaluate) & (manifest["split"] == "test")]
    return faces.assign(margin=crop_margins(faces, params.crop.margin)).reset_index(drop=True)


def predict_crops(model: PublishedModel, paths: Sequence[str], margins: Sequence[float],
                  batch: int = BATCH) -> pd.DataFrame:
    """age, band_pred, p_female and problem per crop, `batch` crops at a time; a crop that cannot be
    read gets its problem and no prediction."""
    bands = model.card.age_bands
    out = pd.DataFrame({"age": np.nan, "band_pred": -1, "p_female": np.nan, "problem": None},
                       index=range(len(paths)))
    for start in range(0, len(paths), batch):
        photos, positions = [], []
        for position in range(start, min(start + batch, len(paths))):
            try:
                photos.append(read_image(str(paths[position]), upright=False))
                positions.append(position)
            except FaceRejected as rejected:
                out.loc[position, "problem"] = rejected.reason
        if not photos:
            continue
        boxes = face_boxes([p.shape[:2] for p in photos], np.asarray(margins, dtype=float)[positions])
        predicted = model.predict(photos, boxes)
        out.loc[positions, "age"] = predicted.age
        out.loc[positions, "p_female"] = predicted.p_female
        if bands is not None:
            out.loc[positions, "band_pred"] = predicted_bands(predicted)
    return out


def stored_predictions(features: Features, ids: Sequence[str]) -> pd.DataFrame:
    """age, band_pred, p_female and problem per face from the published outputs the features pass
    stored (P(female), P(male), P(age = 0..)), read as the published model answers: the expected age,
    P(female) as 1 - P(male). For the backbone whose `embed` reads and frames each crop as its
    published model does (BackboneSpec.published_model), these are that model's answers face for face,
    and the `published` experiment's."""
    outputs = np.asarray(features.published[features.rows_for(ids)], dtype=np.float64)
    return pd.DataFrame({"age": outputs[:, 2:] @ np.arange(outputs.shape[1] - 2, dtype=np.float64),
                         "band_pred": -1, "p_female": 1.0 - outputs[:, 1], "problem": None})


def predicted_bands(predicted: FacePredictions) -> np.ndarray:
    """The most probable band of each face (-1 where the probabilities are not finite)."""
    probs = np.asarray(predicted.band_probs, dtype=float)
    finite = np.isfinite(probs).all(axis=1)
    return np.where(finite, np.nan_to_num(probs, nan=-1.0).argmax(axis=1), -1)


def predictions_table(faces: pd.DataFrame, predicted: pd.DataFrame, card: ModelCard, params: Params) -> pd.DataFrame:
    """AUDIT_COLUMNS for the faces: labels from the manifest, the model's predictions beside them."""
    p_female = predicted["p_female"].to_numpy(dtype=float)
    gender_pred = card.genders(p_female)
    band_pred = predicted["band_pred"].to_numpy(dtype=int)
    if card.age_bands is not None:
        names = [band_label(band) for band in card.age_bands]
        age_band_pred = [names[i] if i >= 0 else None for i in band_pred]
    else:
        age_band_pred = pd.Series(age_band(predicted["age"], params.age_bands)).astype(object).where(
            predicted["age"].notna().to_numpy(), None).tolist()
    adapters = {name: params.datasets[name].adapter for name in faces["dataset"].unique()}
    return pd.DataFrame({
        "id": faces["id"], "dataset": faces["dataset"], "split": faces["split"], "age": faces["age"],
        "age_pred": predicted["age"].to_numpy(dtype=float), "age_pred_argmax": np.nan, "gender": faces["gender"],
        "gender_prob_female": p_female, "gender_pred": gender_pred, "race": faces["race"], "experiment": card.name,
        BAND_COLUMN: faces[BAND_COLUMN] if BAND_COLUMN in faces.columns else None,
        "band_pred": band_pred, "age_band_pred": age_band_pred,
        "in_sample": [in_sample(card, adapters[d]) for d in faces["dataset"]],
        "problem": predicted["problem"].to_numpy(dtype=object),
    })[AUDIT_COLUMNS]


def card_record(card: ModelCard, params: Params, datasets: Sequence[str], read_from: str) -> dict:
    """The card as JSON (bands as labels, its decision rule spelled out), with the in-sample flag of
    each audited test set and where its answers were read from (`read_from`)."""
    record = {**asdict(card), "in_sample": dict(card.in_sample), "weights": list(card.weights),
              "decision_rule": card.decision_rule, "read_from": read_from}
    del record["needs"]   # what it imports: the params stage's concern, not the audit's
    record["age_bands"] = None if card.age_bands is None else [band_label(b) for b in card.age_bands]
    record["test_sets"] = {d: in_sample(card, params.datasets[d].adapter) for d in datasets}
    return record


def audit_model(model: PublishedModel, params: Params, faces: pd.DataFrame | None = None) -> dict:
    """Predict the test faces with `model`, evaluate, write params.paths.audit/<model>/ (replacing
    what an earlier audit wrote there); returns the headline figures per test set."""
    faces = faces_to_audit(params) if faces is None else faces
    predicted = predict_crops(model, faces["crop_path"].tolist(), faces["margin"].to_numpy(dtype=float))
    return write_audit(model.card, predicted, params, faces)


def write_audit(card: ModelCard, predicted: pd.DataFrame, params: Params, faces: pd.DataFrame, *,
                read_from: str = "the model, run on the crops") -> dict:
    """Evaluate `predicted` (predict_crops' or stored_predictions' columns) for the test faces, write
    params.paths.audit/<card.name>/ (replacing what an earlier audit wrote there); returns the headline
    figures per test set. `read_from`: where the answers came from (FROM_PASS: the features pass)."""
    out = params.paths.audit / card.name
    shutil.rmtree(out, ignore_errors=True)
    (out / "evaluation").mkdir(parents=True)
    table = predictions_table(faces, predicted, card, params)
    table.to_parquet(out / PREDICTIONS_FILE, index=False)
    datasets = list(dict.fromkeys(table["dataset"]))
    write_json(card_record(card, params, datasets, read_from), out / CARD_FILE)
    if card.age_bands is None:
        headlines = evaluate_years(table, card.name, params, out / "evaluation")
    else:
        headlines = evaluate_band_model(table, card.name, params, out / "evaluation", bands=card.age_bands)
    for dataset, figures in headlines.items():
        figures["in_sample"] = in_sample(card, params.datasets[dataset].adapter)
    written = pd.read_parquet(out / PREDICTIONS_FILE)   # the table as the report reads it back
    write_skin_analyses(written[written["split"] == "test"].drop(columns=["problem"]), params, out / "evaluation",
                        breakdown_only=False)
    headlines["rejected_rows"] = int(table["problem"].notna().sum())
    write_json(headlines, out / METRICS_FILE)
    return headlines

