"""Stage `train@<experiment>`: fit the age and gender heads of one experiment on the cached features.

    python -m stages.train EXPERIMENT

Reads params.yaml once, the split manifest, the features memmap and the pretrain stage's heads
(`models/_pretrain/`, see stages/lib/heads/starts.py for which init starts from what; a backbone
whose published heads are its own output layers gives init `published` the outputs the features
stage stored, and saves heads that select them, for `stages.predict`). Trains on the
finetune-role dataset's train split (the grouped split, or the study's naive one with `split: naive`)
with the experiment's oversampling / re-weighting or mitigation (stages/lib/heads/methods.py), stops
on the val split's loss (group DRO and last-layer refits: the worst group's; with `protocol: study`, the
study's way instead: stages/lib/heads/protocol.py), and writes:
    models/<exp>/age.keras, gender.keras      the heads (init `published`: the baseline, untrained)
    models/<exp>/history.csv                  epoch, age_loss, val_age_loss, gender_loss, val_gender_loss
                                              (heads fine-tuned on a shared published layer: joint_loss,
                                              val_joint_loss, the two tasks' losses summed)
    models/<exp>/framing.json                 how the training faces were framed (stages.predict frames alike)
    models/<exp>/live/                        dvclive: loss curves per head, metrics.json summary
    models/<exp>/mitigation.json              what the mitigation did (rows, held-out rows, DRO's group weights), and
                                              `heads`: start, budget, weight shapes (what its twin must share)
    reports/<exp>/predictions.parquet         every face of every evaluate-role dataset, all splits
"""

from __future__ import annotations

import argparse
import sys

from stages.lib.backbones.registry import describe
from stages.lib.backbones.store import open_features
from stages.lib.core.params import load_params
from stages.lib.core.cli import run_stage
from stages.lib.core.files import write_json
from stages.lib.core.schema import read_manifest
from stages.lib.heads.framing import heads_framing, write_framing
from stages.lib.heads.data import HeadData, role_splits, with_split
from stages.lib.heads.loop import configure_determinism
from stages.lib.heads.methods import fit_experiment
from stages.lib.heads.predicting import predict_fitted
from stages.lib.heads.saving import heads_signature, save_heads


def run(experiment_name: str) -> int:
    """Load, pick the experiment's method from the heads registry, fit, save (paths relative to the cwd);
    returns how many faces it predicted."""
    params = load_params()
    experiment, paths = params.experiment(experiment_name), params.paths
    configure_determinism(params.seed)
    manifest = with_split(read_manifest(paths.manifest), experiment.split)
    features = open_features(paths.features)
    train, val = role_splits(manifest, params.roles.finetune, "finetune")
    finetune = manifest[manifest["dataset"] == params.roles.finetune]
    data = HeadData(params, features, train, val, paths.pretrain, test=finetune[finetune["split"] == "test"])
    fitted = fit_experiment(data, experiment)
    out = paths.models / experiment_name
    summary = {"init": experiment.init, "method": experiment.method, **fitted.summary}
    if fitted.histories:
        summary.update(train_faces=len(train), train_rows=fitted.trained_on["train_rows"], val_faces=len(val))
    save_heads(fitted.heads, fitted.histories, out, summary)
    write_json({"method": experiment.method, **fitted.trained_on,
                "heads": heads_signature(fitted, experiment.init, params, experiment.split)}, out / "mitigation.json")
    write_framing(out, heads_framing(experiment, train, params))
    evaluated = manifest[manifest["dataset"].isin(params.roles.evaluate)]
    predictions = predict_fitted(fitted, features, evaluated, batch_size=params.train.batch_size,
                                 experiment=experiment_name, male_at=describe(params.backbone).male_at)
    table = paths.experiments / experiment_name / "predictions.parquet"
    table.parent.mkdir(parents=True, exist_ok=True)
    predictions.to_parquet(table, index=False)
    print(f"{experiment_name}: {len(predictions)} predictions -> {table}")
    return len(predictions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="a key of params.yaml's `experiments`")
    experiment = parser.parse_args(argv).experiment
    return run_stage("train", lambda: run(experiment), key=experiment)


if __name__ == "__main__":
    sys.exit(main())
