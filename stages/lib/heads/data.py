"""What every way of fitting heads reads and returns, and the plan of the rows it trains on.

Features are read from the float16 memmap the features stage writes (`features.read_features`) a
batch of rows at a time, and turned into float32 only batch by batch (heads/loop.py): the real pool5
features are 25,088 wide, so 20k faces are 1 GB in float16 and twice that in float32.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from stages.lib.backbones.store import Features
from stages.lib.core.params import Params
from stages.lib.heads.model import Init, task_labels

Histories = dict[str, dict[str, list[float]]]


@dataclass(frozen=True)
class Budget:
    """How long and how fast heads train, and the seed: ours from params.train, the study's its own
    (heads/protocol.py). Training stops after `patience` epochs without a better monitored loss."""

    epochs: int
    patience: int
    batch_size: int
    learning_rate: float
    seed: int

    @classmethod
    def from_params(cls, params: Params) -> "Budget":
        train = params.train
        return cls(train.epochs, train.patience, train.batch_size, train.learning_rate, params.seed)


@dataclass(frozen=True)
class TrainingPlan:
    """Which training rows a fit reads, and how much each weighs: `indices` into the train rows (a row
    may repeat: oversampling, group balancing; None: every row once, in order) and a loss weight per
    index (None: all weigh 1). Built by heads/sampling.py."""

    indices: np.ndarray | None = None
    weights: np.ndarray | None = None

    def rows_of(self, n: int) -> np.ndarray:
        """The indices into `n` training rows this plan trains on."""
        return np.arange(n, dtype=np.int64) if self.indices is None else self.indices


NO_RESAMPLING = TrainingPlan()   # every training row once, unweighted


@dataclass(frozen=True)
class TaskRows:
    """Rows to fit or judge one head on: features rows, class labels and, for the mitigations, a group
    index per row and a class index per adversary attribute (-1 where unknown)."""

    rows: np.ndarray
    labels: np.ndarray
    groups: np.ndarray | None = None
    attributes: dict[str, np.ndarray] | None = None

    def take(self, positions: np.ndarray) -> "TaskRows":
        pick = (lambda values: None if values is None else values[positions])
        attributes = None if self.attributes is None else {k: v[positions] for k, v in self.attributes.items()}
        return TaskRows(self.rows[positions], self.labels[positions], pick(self.groups), attributes)


@dataclass(frozen=True)
class HeadData:
    """What every way of fitting heads reads: the params, the cached features, the finetune dataset's
    train and val rows (manifest rows), the pretrain stage's folder (starting weights) and, for the
    study's protocol only, its test rows (it picks its checkpoint on them)."""

    params: Params
    features: Features
    train: pd.DataFrame
    val: pd.DataFrame
    pretrain_dir: Path | None = None
    test: pd.DataFrame | None = None
    reads: str = "features"   # which of the features' arrays the heads read (Features.reading)

    @property
    def budget(self) -> Budget:
        return Budget.from_params(self.params)

    def for_heads_from(self, init: Init) -> "HeadData":
        """This data as heads starting from `init` read it: the published heads of a backbone whose
        published heads are its own output layers read what those layers read (the WideResNet's
        flatten, `Features.published_inputs`); every other head reads the cached feature rows."""
        if init == "published" and self.features.published_inputs is not None:
            return replace(self, features=self.features.reading("published_inputs"), reads="published_inputs")
        return self

    def task_rows(self, task: str, frame: pd.DataFrame, groups: np.ndarray | None = None,
                  attributes: dict[str, np.ndarray] | None = None) -> TaskRows:
        """`frame`'s features rows and `task` labels (with `groups`/`attributes` where a mitigation needs them)."""
        return TaskRows(self.features.rows_for(frame["id"]), task_labels(task, frame, self.params.labels.max_age),
                        groups, attributes)


@dataclass(frozen=True)
class FittedHeads:
    """What every way of fitting heads returns: the heads, each trained head's history, what the
    training summary records (models/<exp>/live/metrics.json), what the heads were trained on
    (models/<exp>/mitigation.json: rows, held-out rows, group weights, ...), and what they read:
    `features` (the cached feature rows) or `published_outputs` (the published model's own outputs,
    stored by the features stage) or `published_inputs` (what those published heads read)."""

    heads: dict[str, keras.Model]
    histories: Histories = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    trained_on: dict = field(default_factory=dict)
    reads: str = "features"


def require_rows(train: int, val: int) -> None:
    """Training needs rows in both splits: say which is empty and what to check."""
    if train == 0 or val == 0:
        raise ValueError(f"training needs rows in both train ({train}) and val ({val}) splits: check split.val "
                         "and the finetune dataset's size")


def with_split(manifest: pd.DataFrame, split: str) -> pd.DataFrame:
    """The manifest with `split` set to the split an experiment trains and is evaluated on:
    `grouped` (the split stage's `split` column) or `naive` (its `split_naive`)."""
    if split == "grouped":
        return manifest
    if "split_naive" not in manifest.columns:
        raise ValueError("the split manifest has no `split_naive` column: re-run `dvc repro split`")
    return manifest.assign(split=manifest["split_naive"])


def role_splits(manifest: pd.DataFrame, dataset: str, role: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The train and val rows of `dataset` (the dataset playing `role`) in the split manifest."""
    rows = manifest[manifest["dataset"] == dataset]
    if rows.empty:
        raise ValueError(f"roles.{role} names dataset {dataset!r}, but the split manifest has no rows of it: "
                         f"it has {sorted(manifest['dataset'].unique())}; re-run `dvc repro split`")
    return rows[rows["split"] == "train"], rows[rows["split"] == "val"]
