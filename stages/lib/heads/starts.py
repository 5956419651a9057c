"""Where a head's weights start, by init (`published`, `backbone`, `random`).

Starting weights come from the `pretrain` stage's folder, so that `train` never reads a published
weights file itself:
- `<pretrain_dir>/age.keras`, `gender.keras`: the baseline heads. With VGG-Face and its published
  weights they are the published age/gender models' heads, converted; otherwise (a random VGG-Face in
  the offline demo, or another backbone: no published files fit its features) they are heads trained
  from a seeded start on the pretrain-role dataset's train split, as the published models were trained
  on another dataset than UTKFace.
- `<pretrain_dir>/vgg_face.keras` (published VGG-Face weights only): VGG-Face's own fc6/fc7 (and
  its identity softmax), the study's starting point for retraining.
Init `published` takes all of a baseline head; init `backbone` takes fc6/fc7 from `vgg_face.keras`,
or, with a random backbone, from the baseline head of the same task.

A backbone whose published heads are its own model's output layers (spec.published_outputs:
wide_resnet_imdb) has no hidden layers to start from: its retrained heads start from the seeded
random init (`start_for`).
"""

from __future__ import annotations

from pathlib import Path

import keras

from stages.lib.backbones.registry import describe, uses_published_weights
from stages.lib.heads.data import HeadData
from stages.lib.heads.model import FC_LAYERS, Init, build_head, init_head, layer_weights, task_classes


def starting_weights(init: Init, head: str, pretrain_dir: str | Path | None, published_backbone: bool):
    """The starting hidden-layer weights for init `backbone` of `head` ('age' | 'gender'); None for
    `random` (init `published` starts from the whole published head: `start_head`).

    See the module docstring for where each init's weights come from.
    """
    if init == "random":
        return None
    if pretrain_dir is None:
        raise ValueError(f"init {init!r} starts from the pretrain stage's heads: give their folder")
    pretrain_dir = Path(pretrain_dir)
    source = pretrain_dir / ("vgg_face.keras" if published_backbone else f"{head}.keras")
    return layer_weights(_load_head(source), FC_LAYERS)


def start_for(init: Init, backbone) -> Init:
    """The init a retrained head really starts from: `random` where the backbone's published heads are
    its model's own output layers (nothing hidden to start from), else `init` itself."""
    if init == "backbone" and describe(backbone).published_outputs:
        return "random"
    return init


def _load_head(path: Path) -> keras.Model:
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the pretrain stage first (`dvc repro pretrain`)")
    return keras.models.load_model(path, compile=False)


def start_head(data: HeadData, task: str, init: Init) -> keras.Model:
    """A new `task` head for `data`'s features, holding `init`'s starting weights: for init `published`
    the pretrain stage's published head itself (its own layers: fc6, fc7 and output for VGG-Face's, the
    one output layer on the flatten for the WideResNet's), else a `build_head` head."""
    if init == "published":
        if data.pretrain_dir is None:
            raise ValueError("init 'published' starts from the pretrain stage's heads: give their folder")
        return _load_head(Path(data.pretrain_dir) / f"{task}.keras")
    params = data.params
    model = build_head(data.features.dim, params.backbone.fc_width, task_classes(task, params.labels.max_age),
                       params.train.dropout, name=task, seed=params.seed)
    start = start_for(init, params.backbone)
    return init_head(model, start, starting_weights(start, task, data.pretrain_dir,
                                                    uses_published_weights(params.backbone)))
