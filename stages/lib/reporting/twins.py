"""Each experiment against its twin: the reference params name for it (`experiments.<name>.reference`,
validated by core/params.py to differ from it only in its treatment), else `retrained`, the study's
reference.

The evaluate stage measures every change against `retrained` (worst_groups.csv); the report's
mitigation section measures each experiment against its own twin instead, recomputing the paired,
group-stratified bootstrap of evaluation/worst_groups.py from the two experiments' predictions. Beside
the params' check, the twins' saved heads are compared (models/<exp>/mitigation.json, `heads`: start,
what they read, split, budget, weight shapes): a pair that differs there is named in the report.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Mapping

import pandas as pd

from stages.lib.core.params import Params
from stages.lib.core.schema import PREDICTION_COLUMNS
from stages.lib.evaluation.predictions import normalise_predictions
from stages.lib.evaluation.results import bootstrap_from, read_predictions
from stages.lib.evaluation.worst_groups import REFERENCE, against_reference

HEADS_KEY = "heads"   # models/<exp>/mitigation.json: the saved heads' signature (heads/training.heads_signature)


def twin_of(params: Params, name: str) -> str | None:
    """The experiment `name` is measured against: its params reference, else `retrained` (None for
    `retrained` itself)."""
    if name == REFERENCE:
        return None
    return params.experiment(name).reference or REFERENCE


def compared_pairs(params: Params, names: list[str]) -> dict[str, str]:
    """{experiment: its twin} for `names` (every one but the study's reference)."""
    return {name: twin for name in names if (twin := twin_of(params, name)) is not None}


def _predictions(params: Params, name: str) -> pd.DataFrame | None:
    path = params.paths.experiments / name / "predictions.parquet"
    if not path.exists():
        return None
    table = read_predictions(path)
    return normalise_predictions(table, {f: f for f in PREDICTION_COLUMNS if f in table.columns},
                                 experiment=name).frame


def twin_summary(params: Params, names: list[str], confidence: float | None = None) -> pd.DataFrame:
    """worst_groups' rows (evaluation.worst_groups.SUMMARY_COLUMNS) of each of `names` against its twin,
    with the twin in `reference` ('' for retrained itself); intervals at `confidence` (default: params')."""
    bootstrap = bootstrap_from(params)
    bootstrap = bootstrap if confidence is None else replace(bootstrap, confidence=confidence)
    frames = {name: _predictions(params, name) for name in names}
    parts = []
    for name, frame in frames.items():
        if frame is None:
            continue
        twin = twin_of(params, name)
        twin_frame = frames.get(twin) if twin in frames else (_predictions(params, twin) if twin else None)
        rows = against_reference(frame, twin_frame, name, bootstrap, min_group_size=params.evaluate.min_group_size,
                                 reference=twin or name)
        parts.append(rows.assign(reference=twin or ""))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def signature(models: Path, name: str) -> dict | None:
    """The saved heads' signature of experiment `name` (None: not trained, or trained before it was kept)."""
    path = models / name / "mitigation.json"
    if not path.exists():
        return None
    return json.loads(path.read_text()).get(HEADS_KEY)


def signature_differences(mine: Mapping, theirs: Mapping, *, treatments: tuple[str, ...] = ()) -> list[str]:
    """What two saved heads' signatures differ in besides what the experiment's treatments change
    (a `split` treatment: the split)."""
    return [f"{key} {mine.get(key)!r} vs {theirs.get(key)!r}" for key in sorted(set(mine) | set(theirs))
            if key not in treatments and mine.get(key) != theirs.get(key)]


def saved_mismatches(params: Params, pairs: Mapping[str, str]) -> dict[str, list[str]]:
    """{experiment: differences} for the pairs whose saved heads are not twins (both saved)."""
    found = {}
    for name, twin in pairs.items():
        if params.experiment(name).reference is None:
            continue    # no twin named: compared with the study's reference, and said to be so
        mine, theirs = signature(params.paths.models, name), signature(params.paths.models, twin)
        if mine is not None and theirs is not None:
            differences = signature_differences(mine, theirs, treatments=params.experiment(name).treatments)
            if differences:
                found[name] = differences
    return found
