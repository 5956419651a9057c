"""Small synthetic data and params the heads' tests share: planted group effects, a tiny experiment."""

import copy

import numpy as np
import pandas as pd

from stages.lib.core.params import validate
from stages.lib.heads.training import Budget, Features, TaskRows, cross_entropy, predict_probs

DIM = 6
BUDGET = Budget(epochs=40, patience=40, batch_size=64, learning_rate=0.01, seed=0)


def planted_imbalance(n_major=600, n_minor=40, seed=0):
    """Two groups with opposite rules: the label is x0 > 0 in the large group and x0 < 0 in the small one
    (x1 says which group a row is in). Plain training fits the large group's rule first."""
    rng = np.random.default_rng(seed)
    groups = np.repeat([0, 1], [n_major, n_minor])
    features = rng.normal(size=(len(groups), DIM)).astype(np.float16)
    features[:, 1] = groups * 2.0
    labels = ((features[:, 0] > 0) ^ (groups == 1)).astype(np.int64)
    return features, TaskRows(np.arange(len(groups)), labels, groups)


def group_losses(model, features, data):
    losses = cross_entropy(predict_probs(model, features, data.rows, 256), data.labels)
    return [losses[data.groups == g].mean() for g in (0, 1)]


def with_experiment(raw, entry):
    changed = copy.deepcopy(raw)
    changed["experiments"]["x"] = entry
    return changed


def tiny_params(raw, mitigation):
    changed = with_experiment({**raw, "profile": "demo"}, {"init": "random", "mitigation": mitigation,
                                                         "reference": "retrained_random"})   # its twin: same init
    changed["profiles"]["demo"]["train"] = {"epochs": 2, "patience": 2, "batch_size": 32, "learning_rate": 0.01}
    changed["profiles"]["demo"]["backbone"]["fc_width"] = 8
    changed["labels"]["max_age"] = 30
    return validate(changed)


def tiny_split(n=120, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"id": [f"f{i}" for i in range(n)], "age": rng.integers(1, 30, n),
                          "gender": rng.choice(["female", "male"], n), "race": rng.choice(["black", "white", None], n)})
    features = Features(rng.normal(size=(n, DIM)).astype(np.float16), pd.Series(np.arange(n), index=frame["id"]))
    return features, frame.iloc[:90], frame.iloc[90:]



def against_the_rule(data: TaskRows, every: int = 10) -> TaskRows:
    """`data` judged on two groups: every `every`-th row of group 0 with its label flipped (group 1, whose
    loss grows as the rule is learnt), and the rest (group 0). Its worst group is far from its mean."""
    flipped = np.isin(data.rows, data.rows[data.groups == 0][::every])
    return TaskRows(data.rows, np.where(flipped, 1 - data.labels, data.labels), flipped.astype(np.int64))
