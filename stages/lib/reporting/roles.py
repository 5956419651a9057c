"""Which experiment each section of the report describes: chosen by its role, never by its test score.

- The published model (init `published`): R1–R3, R11, R12, as in the study.
- The study's models: heads retrained on the fine-tuning set, plain or rebalanced (oversampled,
  reweighted), neither a mitigation nor a control. R4–R10 and R14 describe them.
- Controls (`experiments.<name>.control: true` in params.yaml: the naive split, the study's protocol)
  exist to measure something about another experiment; they are never "the best model".
- The best of the study's models is the one with the lowest MAE on the fine-tuning set's VAL split
  (the split training already stops on), so that picking it does not flatter its test figures; its
  lead over the runner-up comes with a paired bootstrap interval on the val faces both predicted.
  The sentence names the candidates it was chosen among, and every control or mitigation whose val
  MAE is lower than the best's (`outsiders`), with the paired interval of that difference: "best"
  means the best of the study's models, never the best head the run trained.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping

import numpy as np
import pandas as pd

from stages.lib.core.params import Experiment
from stages.lib.evaluation.intervals import Bootstrap, Gap, direction, paired_mean_gap

SELECTION_SPLIT = "val"


def published_model(experiments: Mapping[str, Experiment]) -> str | None:
    """The first experiment that keeps the published heads as they are."""
    return next((name for name, e in experiments.items() if e.is_baseline), None)


def controls(experiments: Mapping[str, Experiment]) -> list[str]:
    return [name for name, e in experiments.items() if e.control]


def study_models(experiments: Mapping[str, Experiment]) -> list[str]:
    """Experiments that retrain the heads the study's way or rebalanced, without a mitigation, not controls."""
    return [name for name, e in experiments.items()
            if not e.is_baseline and e.mitigation is None and not e.control]


@dataclass(frozen=True)
class Outsider:
    """A control or mitigation whose val MAE is below the best candidate's."""

    name: str
    kind: str                                 # control | mitigation
    val_mae: float
    val_faces: int
    difference: Gap | None                    # outsider − best val MAE on the val faces both predicted
    shared_faces: int


@dataclass(frozen=True)
class Selection:
    """The best of the study's models on the val split, and how far it leads the runner-up."""

    best: str
    runner_up: str | None
    val_mae: dict[str, tuple[float, int]]     # candidate -> (val MAE, val faces)
    lead: Gap | None                          # best − runner-up val MAE on shared val faces (negative: best lower)
    shared_faces: int
    dataset: str
    candidates: tuple[str, ...] = ()          # what `best` was chosen among
    outsiders: tuple[Outsider, ...] = ()      # controls and mitigations lower on val than `best`

    def lead_supported(self) -> bool:
        """True when the interval of best − runner-up lies below zero."""
        return self.lead is not None and direction(self.lead.difference_ci_low, self.lead.difference_ci_high) == "below"


def _val_rows(predictions: pd.DataFrame | None, dataset: str) -> pd.DataFrame:
    if predictions is None or not {"split", "dataset", "age", "age_pred"} <= set(predictions.columns):
        return pd.DataFrame(columns=["id", "age", "age_pred"])
    rows = predictions[(predictions["split"] == SELECTION_SPLIT) & (predictions["dataset"] == dataset)]
    return rows[rows["age"].notna() & rows["age_pred"].notna()]


def select_best(predictions: Mapping[str, pd.DataFrame | None], candidates: list[str], dataset: str,
                bootstrap: Bootstrap) -> Selection | None:
    """The candidate with the lowest val MAE on `dataset`; None when no candidate has val predictions.

    The lead is best − runner-up over the val faces both predicted (matched by id), paired bootstrap."""
    val = {name: _val_rows(predictions.get(name), dataset) for name in candidates}
    val = {name: rows for name, rows in val.items() if not rows.empty}
    if not val:
        return None
    mae = {name: (float((rows["age_pred"] - rows["age"]).abs().mean()), len(rows)) for name, rows in val.items()}
    ranked = sorted(mae, key=lambda name: (mae[name][0], candidates.index(name)))
    best, runner_up = ranked[0], (ranked[1] if len(ranked) > 1 else None)
    named = tuple(name for name in candidates if name in mae)
    if runner_up is None:
        return Selection(best, None, mae, None, 0, dataset, named)
    lead, shared = _paired_val_gap(val[best], val[runner_up], bootstrap, f"selection:{best}-{runner_up}")
    return Selection(best, runner_up, mae, lead, shared, dataset, named)


def _paired_val_gap(first: pd.DataFrame, second: pd.DataFrame, bootstrap: Bootstrap, key: str
                    ) -> tuple[Gap | None, int]:
    """first − second val MAE over the faces both predicted (matched by id), paired bootstrap."""
    merged = first[["id", "age", "age_pred"]].merge(second[["id", "age_pred"]], on="id", suffixes=("", "_second"))
    truth = merged["age"].to_numpy(dtype=float)
    if merged.empty:
        return None, 0
    return paired_mean_gap(np.abs(merged["age_pred"].to_numpy(dtype=float) - truth),
                           np.abs(merged["age_pred_second"].to_numpy(dtype=float) - truth), bootstrap, key), len(merged)


def with_outsiders(selection: Selection | None, predictions: Mapping[str, pd.DataFrame | None],
                   kinds: Mapping[str, str], bootstrap: Bootstrap) -> Selection | None:
    """`selection` with every experiment of `kinds` ({name: control | mitigation}) whose val MAE on the
    selection's dataset is below the best's, each with the paired interval of the difference."""
    if selection is None:
        return None
    best_rows = _val_rows(predictions.get(selection.best), selection.dataset)
    best_mae = selection.val_mae[selection.best][0]
    found = []
    for name, kind in kinds.items():
        rows = _val_rows(predictions.get(name), selection.dataset)
        if rows.empty:
            continue
        mae = float((rows["age_pred"] - rows["age"]).abs().mean())
        if mae < best_mae:
            gap, shared = _paired_val_gap(rows, best_rows, bootstrap, f"outsider:{name}-{selection.best}")
            found.append(Outsider(name, kind, mae, len(rows), gap, shared))
    return replace(selection, outsiders=tuple(sorted(found, key=lambda o: o.val_mae)))


def selection_sentence(selection: Selection, excluded: list[str]) -> str:
    """What the choice rests on, in words: the val MAEs, the lead's interval, what was left out."""
    best_mae, best_n = selection.val_mae[selection.best]
    among = f" (candidates: {', '.join(selection.candidates)})" if selection.candidates else ""
    text = (f"**{selection.best}** is the study's model{among} with the lowest MAE on {selection.dataset}'s "
            f"{SELECTION_SPLIT} split ({best_mae:.2f} years, n={best_n:,}); chosen there, never on the test split.")
    if selection.runner_up is not None:
        runner_mae, _ = selection.val_mae[selection.runner_up]
        text += f" Runner-up: {selection.runner_up} ({runner_mae:.2f})."
        lead = selection.lead
        if lead is not None and not np.isnan(lead.difference_ci_low):
            verdict = ("lower" if selection.lead_supported()
                       else "not shown to be lower: the interval holds 0, so either would do")
            text += (f" Best − runner-up on the {selection.shared_faces:,} {SELECTION_SPLIT} faces both predicted: "
                     f"{lead.difference:+.2f} [{lead.difference_ci_low:+.2f}, {lead.difference_ci_high:+.2f}] "
                     f"years ({verdict}).")
        elif lead is not None:
            text += f" Best − runner-up: {lead.difference:+.2f} years, without an interval."
    if excluded:
        text += f" Not candidates: {', '.join(excluded)} (controls and mitigations are not the study's models)."
    return text + "".join(" " + outsider_sentence(o, selection) for o in selection.outsiders)


def outsider_sentence(outsider: Outsider, selection: Selection) -> str:
    """A control or mitigation below the best on val, with the paired interval of its difference."""
    text = (f"**{outsider.name}** (a {outsider.kind}, not a candidate) has a lower {SELECTION_SPLIT} MAE than "
            f"{selection.best}: {outsider.val_mae:.2f} years (n={outsider.val_faces:,})")
    gap = outsider.difference
    if gap is None or np.isnan(gap.difference_ci_low):
        return text + (f", {gap.difference:+.2f} years without an interval." if gap is not None
                       else ", on other val faces: no paired difference.")
    lower = direction(gap.difference_ci_low, gap.difference_ci_high) == "below"
    return (text + f"; {outsider.name} − {selection.best} on the {outsider.shared_faces:,} {SELECTION_SPLIT} faces "
            f"both predicted: {gap.difference:+.2f} [{gap.difference_ci_low:+.2f}, {gap.difference_ci_high:+.2f}] "
            "years (" + ("lower: the best of the study's models is not the best head this run trained)." if lower
                         else "not shown to be lower: the interval holds 0)."))


def outsider_kinds(experiments: Mapping[str, Experiment]) -> dict[str, str]:
    """{name: control | mitigation} for the experiments that are never candidates (the baseline aside)."""
    return {name: "control" if e.control else "mitigation" for name, e in experiments.items()
            if not e.is_baseline and (e.control or e.mitigation is not None)}
