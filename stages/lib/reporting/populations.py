"""Which population each figure of the report is about: how much of a published dataset this run read
(`sample_sentence`: "5,002 of UTKFace's 23,708 aligned faces"), the study's R2 population (UTKFace
aligned from age 1, pooled from the sets one folder was cut into: `study_r2`), and R10's two views,
by predicted and by true age (`r10_views`)."""

from __future__ import annotations

import json
from typing import Mapping

import numpy as np
import pandas as pd

from stages.lib.core.labels import age_band, band_labels
from stages.lib.core.params import Params
from stages.lib.datasets import ADAPTERS
from stages.lib.evaluation.intervals import Bootstrap, mean_interval
from stages.lib.reporting.markdown import with_interval


def _read_counts(params: Params, name: str) -> tuple[int, int] | None:
    path = params.paths.interim / name / "quality.json"
    if not path.exists():
        return None
    quality = json.loads(path.read_text())
    return int(quality.get("rows_in", 0)), int(quality.get("kept", 0))


def sample_sentence(params: Params) -> str:
    """How much of each published dataset the run read, per source folder (the sets cut from one
    folder, e.g. UTKFace's adults and children, named together); '' where no size is known."""
    by_source: dict[tuple, list[str]] = {}
    order = [params.roles.finetune, *params.roles.evaluate, params.roles.pretrain]
    for name in dict.fromkeys(order):
        dataset = params.datasets[name]
        key = (dataset.adapter, json.dumps([s.model_dump() for s in dataset.sources], sort_keys=True),
               dataset.options.get("version"))
        by_source.setdefault(key, []).append(name)
    parts = []
    for (adapter, _, _), names in by_source.items():
        published = ADAPTERS[adapter].published_size(params.datasets[names[0]].options) if adapter in ADAPTERS else None
        counts = {name: c for name in names if (c := _read_counts(params, name)) is not None}
        if published is None or not counts:
            continue
        label, size = published
        read = max(rows_in for rows_in, _ in counts.values())
        kept = ", ".join(f"{name} {k:,}" for name, (_, k) in counts.items())
        share = "all of" if read >= size else f"a sample, {read / size:.0%} of"
        parts.append(f"{' and '.join(names)}: {read:,} of {label} ({share} them; kept: {kept})")
    return ("**Data.** " + "; ".join(parts) + ".") if parts else ""


def pooled_from_one(params: Params, evaluated: list[str], main: str) -> list[str]:
    """The evaluated sets cut from the main set's source folder by age (the study's population from
    age 1: e.g. `utkface` 17+ with `utkface_children`); [main] where it was not cut."""
    if main not in params.datasets:
        return [main]
    sources = params.datasets[main].sources
    same = [name for name in evaluated if name in params.datasets and params.datasets[name].sources == sources
            and params.datasets[name].adapter == params.datasets[main].adapter]
    return list(dict.fromkeys([main, *same]))


def study_r2(rows: pd.DataFrame | None, sets: list[str], bootstrap: Bootstrap) -> str:
    """R2: the published model's MAE on the test faces of `sets` pooled (UTKFace aligned from age 1),
    with its interval and youngest age; '' without rows."""
    if rows is None or rows.empty:
        return ""
    chosen = rows[rows["dataset"].isin(sets) & rows["age"].notna() & rows["age_pred"].notna()]
    if chosen.empty:
        return ""
    errors = (chosen["age_pred"].astype(float) - chosen["age"].astype(float)).abs().to_numpy()
    low, high = mean_interval(errors, bootstrap, "r2:" + "+".join(sets))
    return (f"{' + '.join(sets)} (ages {int(chosen['age'].min())}–{int(chosen['age'].max())}): MAE "
            f"{with_interval(float(errors.mean()), low, high)} (n={len(errors):,})")


def r10_views(rows: pd.DataFrame | None, edges, bootstrap: Bootstrap) -> str:
    """R10: mean (predicted − true) of the oldest band, first by predicted age, then by true age."""
    if rows is None or rows.empty:
        return ""
    rows = rows[rows["age"].notna() & rows["age_pred"].notna()]
    error = rows["age_pred"].astype(float) - rows["age"].astype(float)
    oldest = band_labels(edges)[-1]
    views = []
    for view, column in (("predicted", "age_pred"), ("true", "age")):
        chosen = error[np.asarray(age_band(rows[column].astype(float), edges).astype(str)) == oldest].to_numpy()
        if len(chosen) < 2:
            continue
        low, high = mean_interval(chosen, bootstrap, f"r10:{view}")
        views.append(f"{view} age {oldest}: {with_interval(float(np.mean(chosen)), low, high)} years (n={len(chosen):,})")
    if not views:
        return ""
    return ("mean (predicted − true) at " + "; at ".join(views)
            + (" (by true age, regression to the mean alone pulls even a calibrated estimate below 0)"
               if len(views) == 2 else ""))
