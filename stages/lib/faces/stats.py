"""Crop statistics: who got lost in the crop stage, and the detector's detection rate by group."""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from stages.lib.core.labels import age_band
from stages.lib.datasets.quality import reason_code, summarise
from stages.lib.faces.detect import DETECTORS
from stages.lib.faces.images import IMAGE_CODES


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


def precropped_detection(cropped: pd.DataFrame, detectors: Sequence[str], edges: Sequence[int]) -> dict:
    """{dataset: {detector: {attempted, found, rate, by: race, gender, age band, race x gender}}} over the
    ready crops each detector also ran on (crop.detect_precropped; the rows were kept either way)."""
    report: dict = {}
    for name in detectors:
        column = f"found_by_{name}"
        if column not in cropped.columns:
            continue
        ran = cropped[cropped[column].notna()].reset_index(drop=True)
        for dataset, rows in ran.groupby("dataset", sort=False):
            rows = rows.reset_index(drop=True)
            found = rows[column].astype(int) > 0
            labels = {key: rows[key].astype(object).where(rows[key].notna(), "unknown") for key in ("race", "gender")}
            report.setdefault(str(dataset), {})[name] = {
                "attempted": len(rows), "found": int(found.sum()), "rate": round(float(found.mean()), 4),
                "by": {**_detection_by_group(rows, found, edges),
                       "race_gender": _rates(found, labels["race"].astype(str) + " " + labels["gender"].astype(str))},
            }
    return report


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
            attempted = detected & ~codes.isin(IMAGE_CODES)
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
