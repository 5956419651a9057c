"""The study's headline: the one DVC metrics file (params.paths.headline), a dozen numbers at most, so
that `dvc exp show` and `dvc metrics diff` compare runs at a glance. Everything else stays in each
experiment's files (`<experiments>/<exp>/metrics.json`, `evaluation/`), which the report reads.

    <test set>.pub_mae, .pub_acc   the published model's MAE and gender accuracy on that test set
    <test set>.ret_mae, .ret_acc   the retrained heads' (`retrained`)
        (a test set whose ages are bands only, FairFace, gives age-band accuracy: pub_band, ret_band)
    worst_mae, worst_acc           the worst race x gender group's MAE and gender accuracy (retrained,
                                   main test set)
    gap_mae                        retrained's race x gender MAE gap (worst - best group), main test set
    best_fix                       the best fix's change of the worst group's MAE against retrained
                                   (negative: lower), main test set, among the experiments that change
                                   the training data or loss (mitigations, oversampling, re-weighting)
                                   and nothing else against retrained (a twin of it: same init, protocol)

The main test set (the fine-tuning dataset when evaluated) comes first, then the other evaluated sets
while the total stays within MAX_KEYS. A figure whose experiment or test set is absent is left out,
never written as a placeholder, so a key always means the same number.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from stages.lib.core.params import Experiment, Params, twin_differences
from stages.lib.core.files import write_json
from stages.lib.evaluation.worst_groups import REFERENCE

MAX_KEYS = 12
PUBLISHED = "published"
# Short names: `dvc exp show` makes a column of each key, headed by its full dotted name.
MODELS = {"pub": PUBLISHED, "ret": REFERENCE}
PER_SET = {"mae": "mae", "band": "age_band_accuracy", "acc": "gender_accuracy"}
REFERENCE_FIGURES = {"worst_mae": "worst_group_mae", "worst_acc": "worst_group_accuracy",
                     "gap_mae": "mae_gap_race_x_gender"}
FIX_CHANGE = "worst_group_mae_vs_retrained"


def headline_metrics(metrics: Mapping[str, Mapping], *, test_sets: list[str], fixes: list[str]) -> dict:
    """The headline from each experiment's metrics.json ({experiment: {test set: figures}}), the main
    test set first in `test_sets`; `fixes` names the experiments whose change may be the best fix."""
    if not test_sets:
        return {}
    main = test_sets[0]
    reference = metrics.get(REFERENCE, {}).get(main, {})
    figures = {key: reference[name] for key, name in REFERENCE_FIGURES.items() if reference.get(name) is not None}
    changes = [metrics[name][main][FIX_CHANGE] for name in fixes
               if metrics.get(name, {}).get(main, {}).get(FIX_CHANGE) is not None]
    if changes:
        figures["best_fix"] = min(changes)
    headline = {}
    for test_set in test_sets:
        entry = _per_set(metrics, test_set)
        if entry and len(figures) + _count(headline) + len(entry) <= MAX_KEYS:
            headline[test_set] = entry
    return {**headline, **figures}


def _per_set(metrics: Mapping[str, Mapping], test_set: str) -> dict:
    entry = {}
    for short, experiment in MODELS.items():
        figures = metrics.get(experiment, {}).get(test_set, {})
        entry.update({f"{short}_{key}": figures[name] for key, name in PER_SET.items()
                      if figures.get(name) is not None})
    return entry


def twin_of_reference(params: Params, experiment: Experiment) -> bool:
    """Whether `experiment`'s change against retrained (metrics.json's) is its treatment's alone: the two
    differ in nothing else (core/params.twin_differences). A mitigation of another start is left out."""
    return REFERENCE in params.experiments and not twin_differences(experiment, params.experiments[REFERENCE])


def _count(headline: Mapping) -> int:
    return sum(len(entry) for entry in headline.values())


def write_headline(params: Params) -> Path:
    """Read every evaluated experiment's metrics.json and write the headline (params.paths.headline)."""
    folder = params.paths.experiments
    metrics = {name: json.loads((folder / name / "metrics.json").read_text()) for name in params.experiments
               if (folder / name / "metrics.json").exists()}
    evaluated = {test_set for figures in metrics.values() for test_set in figures}
    order = [params.roles.finetune, *params.roles.evaluate]
    test_sets = [name for name in dict.fromkeys(order) if name in params.roles.evaluate and name in evaluated]
    fixes = [name for name, experiment in params.experiments.items()
             if (experiment.mitigation is not None or experiment.oversample or experiment.reweight != "none")
             and twin_of_reference(params, experiment)]
    write_json(headline_metrics(metrics, test_sets=test_sets, fixes=fixes), params.paths.headline)
    return params.paths.headline
