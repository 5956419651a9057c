"""Stage `pretrain`: the heads every experiment starts from, once, in models/_pretrain/.

    python -m stages.pretrain

- VGG-Face with its published weights: the published files' heads in dense form (no training):
  `age.keras`, `gender.keras` from data/raw/weights/age.h5 and gender.h5 (init `published`, the
  study's baseline) and `vgg_face.keras` from vgg_face.h5 (init `backbone` takes its fc6/fc7);
  whatever the experiments' inits (so that editing an experiment never re-runs this stage).
- any other backbone (dlib_resnet, VGG-Face with backbone.weights = random: no published files fit
  their features): `age.keras` and `gender.keras` trained
  from a seeded start on the pretrain-role dataset's train split (early stopping on its val split),
  standing in for the published models, which were trained on another dataset than the finetune one.
  Init `published` starts from them; init `backbone` from their fc6/fc7.
- a backbone whose published heads are its own model's output layers (wide_resnet_imdb): those
  layers as published (one Dense layer without bias and a softmax per task, on the 131,072-wide
  flatten the features stage stores), which init `published` fine-tunes from; the published model
  used as it is reads the outputs the features stage stored (the train stage saves heads that select
  them); init `backbone` starts from the seeded random init (no hidden layers were published).
Also writes history.csv, live/ (dvclive) and framing.json (how the heads' training faces were framed)
as the train stage does.
"""

from __future__ import annotations

import sys

from stages.lib.backbones.registry import describe, published_output_layers, uses_published_weights
from stages.lib.core.params import load_params
from stages.lib.core.cli import run_stage
from stages.lib.heads.framing import published_framing, training_framing, write_framing
from stages.lib.core.schema import read_manifest
from stages.lib.backbones.store import open_features
from stages.lib.heads.data import HeadData, role_splits
from stages.lib.heads.loop import configure_determinism
from stages.lib.heads.methods import FROM_RANDOM, fit_experiment
from stages.lib.heads.published import published_heads, published_layer_heads
from stages.lib.heads.saving import save_heads

STARTS = ("age", "gender", "vgg_face")  # the published files a head can start from


def main() -> int:
    return run_stage("pretrain", _run)


def _run() -> None:
    """The heads every experiment starts from, their history and framing, in paths.pretrain."""
    params = load_params()
    paths = params.paths
    configure_determinism(params.seed)
    features = open_features(paths.features)
    spec = describe(params.backbone)
    if spec.published_outputs:
        models, histories = published_layer_heads(published_output_layers(params.backbone, paths.weights)), {}
        summary = {"source": "the published model's own output layers", "heads": list(models)}
        framing = published_framing()
    elif uses_published_weights(params.backbone):
        models, histories = published_heads(paths.weights, STARTS, features.dim, params), {}
        summary = {"source": "published weights", "heads": list(STARTS)}
        framing = published_framing()
    else:
        train, val = role_splits(read_manifest(paths.manifest), params.roles.pretrain, "pretrain")
        fitted = fit_experiment(HeadData(params, features, train, val), FROM_RANDOM)
        models, histories = fitted.heads, fitted.histories
        summary = {"source": f"trained on {params.roles.pretrain}", "train_faces": len(train), "val_faces": len(val)}
        framing = training_framing(train, params.crop.margin, params.roles.pretrain)
    save_heads(models, histories, paths.pretrain, summary)
    write_framing(paths.pretrain, framing)
    print(f"pretrain: {', '.join(models) or 'no heads'} -> {paths.pretrain} ({summary['source']})")


if __name__ == "__main__":
    sys.exit(main())
