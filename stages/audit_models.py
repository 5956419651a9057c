"""Stage `audit_models`: every published model listed in params `audit_models`, run on the test faces
of the evaluate-role datasets and evaluated as an experiment is.

    python -m stages.audit_models

One stage for the whole list, not one per model (dvc.yaml's foreach reads params.yaml's top level, so
a profile's list would never reach it). Per model, params.paths.audit/<model>/: its predictions, card,
evaluation per test set and headline metrics (stages/lib/evaluation/published_audit.py). The family
the features pass already ran as its published model does (the backbone's `published_model`:
faceres) is read from that pass, not run again: its rows are the `published` experiment's, face for
face. An empty list writes an empty folder. An unknown name or a missing weights file is one line naming the fix.
"""

from __future__ import annotations

import argparse
import shutil
import sys

from stages.lib.backbones import published
from stages.lib.backbones.registry import describe
from stages.lib.backbones.store import open_features
from stages.lib.core.cli import run_stage
from stages.lib.core.params import ParamsError, load_params
from stages.lib.evaluation.audit_results import FROM_PASS
from stages.lib.evaluation.published_audit import audit_model, faces_to_audit, stored_predictions, write_audit


def summary_line(name: str, dataset: str, figures: dict) -> str:
    age = (f"MAE {figures['mae']:.2f}" if figures.get("mae") is not None
           else f"band accuracy {figures['band_accuracy']:.1%}" if figures.get("band_accuracy") is not None
           else "age in bands only")
    gender = figures.get("gender_accuracy")
    return (f"{name} on {dataset} (in-sample: {figures['in_sample']}): n={figures['n']:,} {age}"
            + (f", gender accuracy {gender:.1%}" if gender is not None else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    return run_stage("audit_models", _run)


def _run() -> None:
    """Every audit_models entry's predictions and evaluation, in paths.audit."""
    params = load_params()
    for name in params.audit_models:
        if name not in published.names():   # the params stage checks it first; this is the one line again
            raise ParamsError(f"params.yaml: audit_models: {name!r} is not a registered published model; "
                              f"registered: {', '.join(published.names())}")
    params.paths.audit.mkdir(parents=True, exist_ok=True)
    for stale in [p for p in params.paths.audit.iterdir() if p.is_dir() and p.name not in params.audit_models]:
        shutil.rmtree(stale)
    faces = faces_to_audit(params) if params.audit_models else None
    from_pass = describe(params.backbone).published_model
    for name in params.audit_models:
        if name == from_pass:   # the features pass read and framed each face as this model does
            predicted = stored_predictions(open_features(params.paths.features), faces["id"])
            headlines = write_audit(published.card(name), predicted, params, faces, read_from=FROM_PASS)
        else:
            headlines = audit_model(published.load(name, params.paths.weights), params, faces)
        for dataset, figures in headlines.items():
            if isinstance(figures, dict):
                print(f"audit_models: {summary_line(name, dataset, figures)}")
    if not params.audit_models:
        print(f"audit_models: no model listed in params audit_models; {params.paths.audit} left empty")


if __name__ == "__main__":
    sys.exit(main())
