"""Mitigation `group_dro` (Sagawa et al. 2020): a loop minimising Σ_g q_g · loss_g, where loss_g is group
g's mean loss in the batch and the group weights follow exponentiated-gradient ascent,
q_g ← q_g · exp(step_size · loss_g), renormalised to sum 1 after every batch. The epoch kept is the one
whose worst group's validation loss is lowest (the groups being the mitigation's own)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from stages.lib.core.params import Experiment
from stages.lib.heads.data import Budget, FittedHeads, HeadData, TaskRows, require_rows
from stages.lib.heads.groups import group_means, joint_group_codes, worst_group_loss
from stages.lib.heads.loop import Permuted, RowBatches, Trainer, fit_loop
from stages.lib.heads.model import TASKS
from stages.lib.heads.predicting import cross_entropy, predict_probs
from stages.lib.heads.starts import start_head


def exponentiated_update(q: tf.Tensor, group_loss: tf.Tensor, step_size: float) -> tf.Tensor:
    """Group DRO's weights after one batch: q_g · exp(step_size · loss_g), renormalised to sum 1."""
    weights = q * tf.exp(step_size * group_loss)
    return weights / tf.reduce_sum(weights)


class GroupDRO(Trainer):
    """A head trained on batches (features, labels, group index) by online group DRO. `q` (the group
    weights) is no model weight: early stopping restores the head, and `q` ends as the last batch left it."""

    def __init__(self, head: keras.Model, n_groups: int, step_size: float):
        super().__init__(head)
        self.n_groups, self.step_size = n_groups, step_size
        self.q = tf.Variable(tf.fill([n_groups], 1.0 / n_groups), trainable=False)

    def train_step(self, data):
        x, y, groups = data
        with tf.GradientTape() as tape:
            losses = keras.losses.sparse_categorical_crossentropy(y, self.head(x, training=True))
            group_loss = group_means(losses, groups, self.n_groups)
            weights = exponentiated_update(self.q, tf.stop_gradient(group_loss), self.step_size)
            objective = tf.reduce_sum(weights * group_loss)
        self.q.assign(weights)
        self.apply(tape, objective, self.head.trainable_variables)
        return self.record(objective, tf.shape(y)[0])


def fit_group_dro(model: keras.Model, features: np.ndarray, train: TaskRows, val: TaskRows, *, n_groups: int,
                  step_size: float, budget: Budget) -> tuple[dict[str, list[float]], np.ndarray]:
    """Fit `model` in place by online group DRO; returns (history, the final group weights q).

    History: 'loss' is the weighted objective per epoch, 'val_loss' the worst group's mean validation
    cross-entropy, on which the best epoch is chosen."""
    require_rows(len(train.rows), len(val.rows))
    trainer = GroupDRO(model, n_groups, step_size)

    def validate() -> dict[str, float]:
        probs = predict_probs(model, features, val.rows, budget.batch_size, desc="val")
        return {"val_loss": worst_group_loss(cross_entropy(probs, val.labels), val.groups)}

    batches = RowBatches(features, train, budget.batch_size, Permuted(budget.seed), extra="groups")
    history = fit_loop(trainer, batches, budget=budget, figures=[validate])
    return history, trainer.q.numpy()


def fit(data: HeadData, experiment: Experiment) -> FittedHeads:
    """Both heads by group DRO over the mitigation's groups; the summary keeps each head's final weights."""
    mitigation = experiment.mitigation
    train_codes, val_codes, names = joint_group_codes(data.train, data.val, mitigation.groups, data.params.age_bands)
    heads, histories, trained_on = {}, {}, {"train_rows": len(data.train)}
    for task in TASKS:
        heads[task] = start_head(data, task, experiment.init)
        histories[task], weights = fit_group_dro(
            heads[task], data.features.array, data.task_rows(task, data.train, train_codes),
            data.task_rows(task, data.val, val_codes), n_groups=len(names), step_size=mitigation.step_size,
            budget=data.budget)
        trained_on[f"{task}_group_weights"] = {name: round(float(w), 4) for name, w in zip(names, weights)}
    return FittedHeads(heads, histories, trained_on=trained_on)
