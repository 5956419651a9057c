"""Datasets that no model trains on are evaluated on all their rows (issue 17, point 4)."""

import numpy as np
import pandas as pd

from stages.lib.backbones.registry import pretrain_trains_heads
from stages.lib.core.params import Backbone
from stages.lib.splitting.split import SplitPlan, all_to_test, evaluated_whole, follow_shared_photos, split_manifest

FRACTIONS = {"train": 0.6, "val": 0.1, "test": 0.3}
EDGES = [0, 16, 31, 46, 61]


def test_evaluate_only_datasets_are_the_ones_nothing_trains_on():
    # real-offline: the WideResNet's published heads are its own outputs, so pretrain trains on nothing
    assert evaluated_whole("fairface", "utkface", ["utkface", "fairface"], pretrain_trains=False) == ["fairface"]
    # a backbone whose heads pretrain trains on roles.pretrain's dataset: that one is trained on
    assert evaluated_whole("fairface", "utkface", ["utkface", "fairface"], pretrain_trains=True) == []
    assert evaluated_whole("wiki", "utkface_wild", ["wiki", "imdb", "utkface", "utkface_wild"],
                           pretrain_trains=False) == ["wiki", "imdb", "utkface"]


def test_pretrain_trains_heads_only_where_nothing_published_fits():
    assert not pretrain_trains_heads(Backbone(name="wide_resnet_imdb", fc_width=256))
    assert not pretrain_trains_heads(Backbone(name="vgg_face", weights="vgg_face"))
    assert pretrain_trains_heads(Backbone(name="vgg_face", weights="random"))


def test_every_row_of_an_evaluate_only_dataset_is_tested_and_shared_photos_still_follow_the_finetune_split():
    rng = np.random.default_rng(0)
    photos = [f"p{i}" for i in range(300)]
    frame = pd.concat([
        pd.DataFrame({"dataset": "utkface", "photo": photos, "age": rng.integers(17, 90, 300)}),
        pd.DataFrame({"dataset": "aligned", "photo": photos[:100], "age": rng.integers(17, 90, 100)}),
        pd.DataFrame({"dataset": "fairface", "photo": None, "age": rng.integers(1, 90, 200)}),
    ], ignore_index=True)
    split = split_manifest(frame, SplitPlan(FRACTIONS, EDGES, seed=0))
    whole = evaluated_whole("fairface", "utkface", ["utkface", "aligned", "fairface"], pretrain_trains=False)
    final = follow_shared_photos(frame, all_to_test(frame, split, whole), ["fairface", "utkface", "aligned", "fairface"])
    assert (final[frame["dataset"] == "fairface"] == "test").all() and (frame["dataset"] == "fairface").sum() == 200
    assert final[frame["dataset"] == "utkface"].equals(split[frame["dataset"] == "utkface"])   # still split
    aligned = frame["dataset"] == "aligned"
    assert (final[aligned].to_numpy() == split[frame["dataset"] == "utkface"].to_numpy()[:100]).all()
    assert (final[aligned] == "train").any()      # a photo trained on is never a test face in its other copy
