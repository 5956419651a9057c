"""Stage `compare`: is the bias in the embedding? The same heads trained alike on each backbone.

    python -m stages.compare

For each entry of params' `compare_backbones` (a label and the `backbone` keys it changes): the
features of every crop through that backbone (the features stage's own cache when the entry is the
pipeline's backbone, else data/compare/<label>/features: resumable, and persisted, so that a change
to the heads' training or the evaluation never runs that backbone again), then age and gender heads from
the same seeded random start with the same budget (params.train) on the finetune dataset's grouped
train split, evaluated on the test split of each evaluate dataset with bootstrap CIs. On the pipeline's
own backbone those heads are the `retrained` experiment's wherever it starts from the same random start
(same_heads_experiment): its predictions are read, not trained again (spec.json `read_from_experiment`).
    reports/compare/<label>/evaluation/<dataset>/...   as the evaluate stage writes them
    reports/compare/<label>/spec.json                  the backbone's spec and params
    reports/compare/<label>/predictions.parquet        the heads' test predictions (the probe stage pairs
                                                       them with balanced heads on the same faces)
The report sets them side by side. data/compare/backbones.json lists the compared configurations (an
empty `compare_backbones` compares nothing).
"""

from __future__ import annotations

import sys

import shutil
from pathlib import Path

import pandas as pd

from stages.lib.backbones.vgg_face import set_precision_for_device
from stages.lib.backbones.registry import describe
from stages.lib.backbones.store import run_features
from stages.lib.evaluation.groups import evaluate
from stages.lib.evaluation.results import bootstrap_from, headline_line, write_evaluation
from stages.lib.core.files import write_json
from stages.lib.core.params import Params, load_params
from stages.lib.core.cli import run_stage
from stages.lib.core.schema import read_manifest
from stages.lib.backbones.store import open_features
from stages.lib.evaluation.worst_groups import RANDOM_START
from stages.lib.heads.data import HeadData, role_splits
from stages.lib.heads.loop import configure_determinism
from stages.lib.heads.methods import FROM_RANDOM, fit_experiment
from stages.lib.heads.predicting import predict_heads
from stages.lib.heads.starts import start_for
from stages.lib.splitting.identity import holds_features_of



def features_for(label: str, params: Params, compared: Params) -> Path:
    """The features folder of a compared backbone, computing it unless it is the pipeline's own or the
    identity stage's dlib pass (~9 minutes on 8,000 faces, not run twice)."""
    if compared.backbone == params.backbone:
        return params.paths.features
    if holds_features_of(params, compared.backbone):
        return params.paths.identity
    folder = params.paths.compare_features / label / "features"
    run_features(read_manifest(params.paths.crops_manifest), compared, folder, show_progress=False)
    return folder


def same_heads_experiment(params: Params) -> str | None:
    """The experiment that already trained the heads this stage would train on the pipeline's own
    backbone (RANDOM_START, where it starts from the same seeded random start, plainly, on the grouped
    split), so that they are read, not trained again; None where there is none."""
    experiment = params.experiments.get(RANDOM_START)
    if experiment is None or start_for(experiment.init, params.backbone) != "random":
        return None
    plain = experiment.method == "plain" and not experiment.oversample and experiment.reweight == "none"
    return RANDOM_START if plain and experiment.split == "grouped" else None


def compare_one(label: str, params: Params) -> dict:
    """Train (or, for the pipeline's own backbone, read from the experiment that trained the same heads)
    and evaluate one compared backbone; returns {dataset: overall metrics}."""
    compared = params.model_copy(update={"backbone": params.compared_backbone(label)})
    configure_determinism(params.seed)
    manifest = read_manifest(params.paths.manifest)
    evaluated = manifest[manifest["dataset"].isin(params.roles.evaluate) & (manifest["split"] == "test")]
    same = same_heads_experiment(params) if compared.backbone == params.backbone else None
    stored = params.paths.experiments / str(same) / "predictions.parquet"
    if same and stored.exists():
        predictions = pd.read_parquet(stored)
        predictions = predictions[predictions["id"].isin(evaluated["id"])].assign(experiment=label)
    else:
        same = None
        features = open_features(features_for(label, params, compared))
        train, val = role_splits(manifest, params.roles.finetune, "finetune")
        models = fit_experiment(HeadData(compared, features, train, val), FROM_RANDOM).heads
        predictions = predict_heads(models, features, evaluated, batch_size=params.train.batch_size,
                                    experiment=label)
    out = params.paths.compare_reports / label
    out.mkdir(parents=True, exist_ok=True)
    predictions.to_parquet(out / "predictions.parquet", index=False)
    overall = {}
    for dataset, rows in predictions.groupby("dataset", sort=False):
        evaluation = evaluate(rows, params.age_bands, bootstrap_from(params), params.evaluate.min_group_size,
                              series=f"{label} on {dataset}")
        write_evaluation(evaluation, out / "evaluation" / str(dataset))
        overall[str(dataset)] = evaluation.overall
    spec = describe(compared.backbone).as_dict()
    write_json({"spec": spec, "backbone": compared.backbone.model_dump(), "init": "random",
                "train": params.train.model_dump(), "read_from_experiment": same}, out / "spec.json")
    return overall


def main() -> int:
    return run_stage("compare", _run)


def _run() -> None:
    """Each compare_backbones entry's heads, evaluated, in paths.compare_reports."""
    params = load_params()
    set_precision_for_device()
    reports_out, data_out = params.paths.compare_reports, params.paths.compare_features
    shutil.rmtree(reports_out, ignore_errors=True)
    reports_out.mkdir(parents=True)
    data_out.mkdir(parents=True, exist_ok=True)
    for stale in [p for p in data_out.iterdir() if p.is_dir() and p.name not in params.compare_backbones]:
        shutil.rmtree(stale)  # a backbone no longer compared
    write_json({label: params.compared_backbone(label).model_dump() for label in params.compare_backbones},
               data_out / "backbones.json")
    for label in params.compare_backbones:
        for dataset, figures in compare_one(label, params).items():
            print(f"compare: {label} on {dataset}: n={figures['n']:,} {headline_line(figures)}"
                  + (f", gender accuracy {figures['gender_accuracy']:.1%}" if figures.get("gender_accuracy") is not None else ""))
    if not params.compare_backbones:
        print("compare: no compare_backbones in params.yaml; nothing to compare")


if __name__ == "__main__":
    sys.exit(main())
