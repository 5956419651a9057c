"""The two plain ways of getting heads: the published heads as they are (`as_published`, the baseline)
and `plain` fitting with the experiment's oversampling / re-weighting plan, early stopping on val
(`train_heads`, which the mitigations that resample rows fit with too)."""

from __future__ import annotations

import keras
import numpy as np

from stages.lib.core.params import Experiment
from stages.lib.heads.data import Budget, FittedHeads, HeadData, TaskRows, TrainingPlan, require_rows
from stages.lib.heads.joint import JointHeads, joint_labels, shared_layers, tie
from stages.lib.heads.loop import Reshuffled, RowBatches, Shown, fit_loop
from stages.lib.heads.model import TASKS, Init
from stages.lib.heads.published import published_output_heads
from stages.lib.heads.sampling import training_plan
from stages.lib.heads.starts import start_head


def as_published(data: HeadData, experiment: Experiment) -> FittedHeads:
    """The published heads, untrained. A backbone that stores its model's own outputs (the features
    stage's `published.npy`) gets heads that select them; any other gets the pretrain stage's heads."""
    if data.features.published is not None:
        heads = published_output_heads(data.features.published.shape[1], data.params.labels.max_age)
        return FittedHeads(heads, summary={"heads": "the published model's own outputs (features stage)"},
                           reads="published_outputs")
    return FittedHeads({task: start_head(data, task, experiment.init) for task in TASKS})


def fit(data: HeadData, experiment: Experiment) -> FittedHeads:
    plan = training_plan(data.train["age"].to_numpy(), experiment.oversample, experiment.reweight,
                         data.params.age_bands)
    return train_heads(data, experiment.init, plan)


def fit_head(model: keras.Model, features: np.ndarray, train: TaskRows, val: TaskRows, *, budget: Budget,
             sample_weight: np.ndarray | None = None, shown: Shown = Shown()) -> dict[str, list[float]]:
    """Train `model` in place on the cross-entropy of `train` (each row weighted by `sample_weight`),
    every row once per epoch in a seeded shuffle; keep the epoch of lowest val loss (patience
    `budget.patience`). Returns Keras' history: {'loss': [...], 'val_loss': [...]}."""
    require_rows(len(train.rows), len(val.rows))
    batches = RowBatches(features, train, budget.batch_size, Reshuffled(budget.seed),
                         extra=None if sample_weight is None else "weights", weights=sample_weight)
    return fit_loop(model, batches, budget=budget, validation=RowBatches(features, val, budget.batch_size),
                    shown=shown)


def train_heads(data: HeadData, init: Init, plan: TrainingPlan) -> FittedHeads:
    """Build, initialise and fit the age and the gender head on `data`'s train rows as `plan` picks and
    weighs them, early stopping on val. Heads whose published start shares its leading layers (FaceRes'
    `feats`) are fitted as one model on one copy of them (`fit_joint`); any other, task by task."""
    indices = plan.rows_of(len(data.train))
    heads = {task: start_head(data, task, init) for task in TASKS}
    shared = shared_layers(heads) if init == "published" else []
    if shared:
        heads = tie(heads, shared)
        histories = {"joint": fit_joint(heads, data, plan)}
    else:
        histories = {}
        for task in TASKS:
            train = data.task_rows(task, data.train).take(indices)
            histories[task] = fit_head(heads[task], data.features.array, train, data.task_rows(task, data.val),
                                       budget=data.budget, sample_weight=plan.weights, shown=Shown(f"train {task}", None))
    return FittedHeads(heads, histories, trained_on={"train_rows": len(indices)}, reads=data.reads)


def fit_joint(heads: dict[str, keras.Model], data: HeadData, plan: TrainingPlan) -> dict[str, list[float]]:
    """Train the tied `heads` in place as one model on the rows `plan` picks (joint.JointHeads: the sum
    of both tasks' losses, each row weighted as the per-task fit weighs it), in the per-task fit's row
    order, keeping the epoch of lowest summed val loss. Both tasks read the same rows: every training
    row has both labels (`task_labels` refuses a row without one)."""
    def both(frame) -> TaskRows:
        age, gender = (data.task_rows(task, frame) for task in TASKS)
        return TaskRows(age.rows, joint_labels(age.labels, gender.labels))

    train, val = both(data.train).take(plan.rows_of(len(data.train))), both(data.val)
    require_rows(len(train.rows), len(val.rows))
    batches = RowBatches(data.features.array, train, data.budget.batch_size, Reshuffled(data.budget.seed),
                         extra=None if plan.weights is None else "weights", weights=plan.weights)
    return fit_loop(JointHeads(heads), batches, budget=data.budget,
                    validation=RowBatches(data.features.array, val, data.budget.batch_size),
                    shown=Shown("train age+gender", None))
