"""Stage `train@<experiment>`: fit the age and gender heads of one experiment on the cached features.

    python -m stages.train EXPERIMENT

Reads params.yaml once, the split manifest, the features memmap and the pretrain stage's heads
(`models/_pretrain/`, see stages/lib/heads/training.py for which init starts from what; a backbone
whose published heads are its own output layers gives init `published` the outputs the features
stage stored, and saves heads that select them, for `stages.predict`). Trains on the
finetune-role dataset's train split (the grouped split, or the study's naive one with `split: naive`)
with the experiment's oversampling / re-weighting or mitigation (stages/lib/heads/mitigation.py), stops
on the val split's loss (group DRO and last-layer refits: the worst group's; with `protocol: study`, the
study's way instead: stages/lib/heads/protocol.py), and writes:
    models/<exp>/age.keras, gender.keras      the heads (init `published`: the baseline, untrained)
    models/<exp>/history.csv                  epoch, age_loss, val_age_loss, gender_loss, val_gender_loss
    models/<exp>/framing.json                 how the training faces were framed (stages.predict frames alike)
    models/<exp>/live/                        dvclive: loss curves per head, metrics.json summary
    models/<exp>/mitigation.json              what the mitigation did (rows, held-out rows, DRO's group weights)
    reports/<exp>/predictions.parquet         every face of every evaluate-role dataset, all splits
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stages.lib.backbones.store import FeaturesError, open_features
from stages.lib.core.params import ParamsError, load_params
from stages.lib.core.timing import start_timing
from stages.lib.core.schema import read_manifest
from stages.lib.heads.framing import Framing, read_framing, training_framing, write_framing
from stages.lib.heads.mitigation import MitigationError, train_experiment_heads
from stages.lib.heads.model import HeadWeightsError
from stages.lib.heads.protocol import train_heads_study
from stages.lib.heads.sampling import SamplingError, training_plan
from stages.lib.heads.training import (configure_determinism, predict_heads, published_output_heads,
                                       published_output_predictions, role_splits, save_heads, with_split)


def heads_framing(init: str, train, params) -> Framing:
    """The framing of the faces the heads learned from: the pretrain stage's for init `published`
    (the heads are used as they are), else the finetune dataset's training faces'."""
    if init != "published":
        return training_framing(train, params.crop.margin, params.roles.finetune)
    framing = read_framing(params.paths.pretrain)
    if framing is None:
        raise FileNotFoundError(f"{params.paths.pretrain}/framing.json not found: run the pretrain stage first "
                                "(`dvc repro pretrain`)")
    return framing


def fit_experiment(params, experiment, manifest, features, train, val) -> tuple[dict, dict, dict, dict]:
    """The heads, their histories, what the summary adds, and what they were trained on
    (`train_rows`, and the mitigation's details), by the experiment's protocol. The study's picks its
    checkpoint on the finetune dataset's test split; the summary's `selection` says how much that
    flatters the test figures. Init `published` on a backbone that stores its model's own outputs:
    heads that select them, untrained."""
    if experiment.init == "published" and features.published is not None:
        heads = published_output_heads(features.published.shape[1], params.labels.max_age)
        return heads, {}, {"heads": "the published model's own outputs (features stage)"}, {}
    if experiment.protocol == "study":
        plan = training_plan(train["age"].to_numpy(), experiment.oversample, experiment.reweight, params.age_bands)
        finetune = manifest[manifest["dataset"] == params.roles.finetune]
        models, histories, selection = train_heads_study(params, features, train, val,
                                                         finetune[finetune["split"] == "test"], experiment.init,
                                                         plan, params.paths.pretrain)
        return models, histories, {"protocol": "study", "selection": selection}, {"train_rows": len(plan[0])}
    models, histories, trained_on = train_experiment_heads(params, features, train, val, experiment,
                                                           params.paths.pretrain)
    return models, histories, {}, trained_on


def run(experiment_name: str) -> int:
    """Train one experiment's heads and write its models and predictions (paths relative to the cwd);
    returns how many faces it predicted."""
    params = load_params()
    if experiment_name not in params.experiments:
        raise ParamsError(f"experiment {experiment_name!r} is not in params.yaml's experiments: "
                          f"{', '.join(params.experiments)}")
    experiment, paths = params.experiments[experiment_name], params.paths
    configure_determinism(params.seed)
    manifest = with_split(read_manifest(paths.manifest), experiment.split)
    features = open_features(paths.features)
    train, val = role_splits(manifest, params.roles.finetune, "finetune")
    models, histories, extra, trained_on = fit_experiment(params, experiment, manifest, features, train, val)
    method = experiment.mitigation.method if experiment.mitigation else "none"
    summary = {"init": experiment.init, "mitigation": method, **extra}
    if histories:
        summary.update(train_faces=len(train), train_rows=trained_on["train_rows"], val_faces=len(val))
    save_heads(models, histories, paths.models / experiment_name, summary)
    write_json({"mitigation": method, **trained_on}, paths.models / experiment_name / "mitigation.json")
    write_framing(paths.models / experiment_name, heads_framing(experiment.init, train, params))
    evaluated = manifest[manifest["dataset"].isin(params.roles.evaluate)]
    predictions = (published_output_predictions(features, evaluated, experiment_name)
                   if experiment.init == "published" and features.published is not None
                   else predict_heads(models, features, evaluated, params.train.batch_size, experiment_name))
    out = paths.experiments / experiment_name / "predictions.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    predictions.to_parquet(out, index=False)
    print(f"{experiment_name}: {len(predictions)} predictions -> {out}")
    return len(predictions)


def write_json(data: dict, path: Path) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="a key of params.yaml's `experiments`")
    experiment = parser.parse_args(argv).experiment
    timing = start_timing("train", key=experiment)
    try:
        timing.finish(faces=run(experiment))
    except (ParamsError, SamplingError, MitigationError, FeaturesError, HeadWeightsError, FileNotFoundError) as exc:
        raise SystemExit(f"train@{experiment}: {exc}") from None


if __name__ == "__main__":
    main()
