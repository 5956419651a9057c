"""Stage `compare`: is the bias in the embedding? The same heads trained alike on each backbone.

    python -m stages.compare

For each entry of params' `compare_backbones` (a label and the `backbone` keys it changes): the
features of every crop through that backbone (the features stage's own cache when the entry is the
pipeline's backbone, else data/compare/<label>/features: resumable, and persisted, so that a change
to the heads' training or the evaluation never runs that backbone again), then age and gender heads from
the same seeded random start with the same budget (params.train) on the finetune dataset's grouped
train split, evaluated on the test split of each evaluate dataset with bootstrap CIs:
    reports/compare/<label>/evaluation/<dataset>/...   as the evaluate stage writes them
    reports/compare/<label>/spec.json                  the backbone's spec and params
    reports/compare/<label>/predictions.parquet        the heads' test predictions (the probe stage pairs
                                                       them with balanced heads on the same faces)
The report sets them side by side. data/compare/backbones.json lists the compared configurations (an
empty `compare_backbones` compares nothing).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from stages.lib.backbones.vgg_face import set_precision_for_device
from stages.lib.backbones.registry import describe
from stages.lib.backbones.store import run_features
from stages.lib.evaluation.groups import evaluate
from stages.lib.evaluation.results import bootstrap_from, write_evaluation
from stages.lib.core.params import Params, load_params
from stages.lib.core.timing import start_timing
from stages.lib.heads.sampling import training_plan
from stages.lib.core.schema import read_manifest
from stages.lib.backbones.store import open_features
from stages.lib.heads.training import configure_determinism, predict_heads, role_splits, train_heads
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


def compare_one(label: str, params: Params) -> dict:
    """Train and evaluate one compared backbone; returns {dataset: overall metrics}."""
    compared = params.model_copy(update={"backbone": params.compared_backbone(label)})
    configure_determinism(params.seed)
    features = open_features(features_for(label, params, compared))
    manifest = read_manifest(params.paths.manifest)
    train, val = role_splits(manifest, params.roles.finetune, "finetune")
    plan = training_plan(train["age"].to_numpy(), [], "none", params.age_bands)
    models, _ = train_heads(compared, features, train, val, "random", plan)
    evaluated = manifest[manifest["dataset"].isin(params.roles.evaluate) & (manifest["split"] == "test")]
    predictions = predict_heads(models, features, evaluated, params.train.batch_size, label)
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
    (out / "spec.json").write_text(json.dumps({"spec": spec, "backbone": compared.backbone.model_dump(),
                                               "init": "random", "train": params.train.model_dump()}, indent=2) + "\n")
    return overall


def main() -> None:
    timing = start_timing("compare")
    params = load_params()
    set_precision_for_device()
    reports_out, data_out = params.paths.compare_reports, params.paths.compare_features
    shutil.rmtree(reports_out, ignore_errors=True)
    reports_out.mkdir(parents=True)
    data_out.mkdir(parents=True, exist_ok=True)
    for stale in [p for p in data_out.iterdir() if p.is_dir() and p.name not in params.compare_backbones]:
        shutil.rmtree(stale)  # a backbone no longer compared
    (data_out / "backbones.json").write_text(json.dumps(
        {label: params.compared_backbone(label).model_dump() for label in params.compare_backbones}, indent=2) + "\n")
    for label in params.compare_backbones:
        for dataset, figures in compare_one(label, params).items():
            print(f"compare: {label} on {dataset}: n={figures['n']:,} MAE {figures['mae']:.2f}"
                  + (f", gender accuracy {figures['gender_accuracy']:.1%}" if figures.get("gender_accuracy") is not None else ""))
    if not params.compare_backbones:
        print("compare: no compare_backbones in params.yaml; nothing to compare")
    timing.finish()


if __name__ == "__main__":
    main()
