"""Mitigations downstream of a frozen embedding: the heads trained on the same cached features so
that the worst-off groups fare better. Each is one experiment (`experiments.<name>.mitigation`):

- `balanced`: the training rows resampled to equal counts per group (sampling.balanced_indices), then
  the ordinary fit;
- `group_dro` (Sagawa et al. 2020): a custom loop minimising Σ_g q_g · loss_g, where loss_g is group
  g's mean loss in the batch and the group weights follow exponentiated-gradient ascent,
  q_g ← q_g · exp(step_size · loss_g), renormalised to sum 1 after every batch;
- `adversarial` (Ganin & Lempitsky's gradient reversal): small adversaries read the head's hidden
  layer (fc7) and predict race (and, for the age head, gender); their loss flows back into the head
  multiplied by −strength, so fc7 is pushed to carry less of what the adversaries can read;
- `last_layer` (deep feature re-weighting, Kirichenko et al. 2022): a group-balanced set is held out
  of the training rows (sampling.balanced_holdout), the heads are fitted as usual on the rest, then
  only the output layer is refitted on the held-out set's fc7 activations (starting from its trained
  weights; fc6 and fc7 do not move).

Model selection: `group_dro` and `last_layer` keep the epoch whose worst group's validation loss is
lowest (the groups being the mitigation's own); `balanced` and `adversarial` the epoch of lowest
validation loss, as plain training does. The heads stay plain functional Keras models (the custom
loops only drive their variables), so they are saved, loaded and predicted with as any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from stages.lib.backbones.registry import uses_published_weights
from stages.lib.core.params import Experiment, Params
from stages.lib.heads.model import HIDDEN_LAYER, TASKS, task_labels
from stages.lib.heads.sampling import balanced_holdout, balanced_indices, group_codes, training_plan
from stages.lib.heads.training import Features, fit_head, predict_probs, start_head, train_heads

Histories = dict[str, dict[str, list[float]]]


class MitigationError(ValueError):
    """A mitigation the finetune data cannot support (e.g. an adversary for a label no row has)."""


@dataclass(frozen=True)
class Budget:
    """How long and how fast a custom loop trains (params.train), and its seed."""

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
class Rows:
    """Training or validation rows: features rows, class labels, group index per row (codes) and, for
    the adversaries, a class index per attribute (-1 where unknown)."""

    rows: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    attributes: dict[str, np.ndarray] | None = None

    def take(self, positions: np.ndarray) -> "Rows":
        attributes = None if self.attributes is None else {k: v[positions] for k, v in self.attributes.items()}
        return Rows(self.rows[positions], self.labels[positions], self.groups[positions], attributes)


# ---------------------------------------------------------------------------------------------------
# The loop every custom fit shares


def shuffled_batches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Positions 0..n-1 in a fresh random order, `batch_size` at a time."""
    order = rng.permutation(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def read_batch(features: np.ndarray, data: Rows, positions: np.ndarray) -> tuple[np.ndarray, Rows]:
    """float32 features of `data` at `positions` (read in file order) and those rows of `data`."""
    positions = positions[np.argsort(data.rows[positions], kind="stable")]
    batch = data.take(positions)
    return np.asarray(features[batch.rows], dtype=np.float32), batch


def early_stopped(model: keras.Model, run_epoch: Callable[[], float], validate: Callable[[], float],
                  epochs: int, patience: int) -> dict[str, list[float]]:
    """Run epochs until `patience` of them bring no lower `validate()`, then restore `model`'s weights
    of the best epoch (Keras' EarlyStopping with restore_best_weights, for custom loops).
    Returns {'loss': training loss per epoch, 'val_loss': validation criterion per epoch}."""
    history: dict[str, list[float]] = {"loss": [], "val_loss": []}
    best, best_weights, waited = np.inf, model.get_weights(), 0
    for _ in range(epochs):
        history["loss"].append(float(run_epoch()))
        history["val_loss"].append(float(validate()))
        if history["val_loss"][-1] < best:
            best, best_weights, waited = history["val_loss"][-1], model.get_weights(), 0
        else:
            waited += 1
            if waited >= patience:
                break
    model.set_weights(best_weights)
    return history


def cross_entropy(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-row −log p(label), as Keras' sparse categorical cross-entropy clips it."""
    picked = np.asarray(probs, dtype=np.float64)[np.arange(len(labels)), labels]
    return -np.log(np.clip(picked, keras.config.epsilon(), 1.0))


def worst_group_loss(losses: np.ndarray, groups: np.ndarray) -> float:
    """The highest mean of `losses` over the groups present."""
    return float(max(losses[groups == g].mean() for g in np.unique(groups)))


def group_means(values: tf.Tensor, groups: tf.Tensor, n_groups: int) -> tf.Tensor:
    """Mean of `values` per group index 0..n_groups-1 (0 for a group absent from the batch)."""
    sums = tf.math.unsorted_segment_sum(values, groups, n_groups)
    counts = tf.math.unsorted_segment_sum(tf.ones_like(values), groups, n_groups)
    return sums / tf.maximum(counts, 1.0)


def _optimizer(variables, learning_rate: float) -> keras.optimizers.Optimizer:
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    optimizer.build(variables)
    return optimizer


def _require_rows(train: Rows, val: Rows) -> None:
    if len(train.rows) == 0 or len(val.rows) == 0:
        raise ValueError(f"training needs rows in both train ({len(train.rows)}) and val ({len(val.rows)}) "
                         "splits: check split.val and the finetune dataset's size")


# ---------------------------------------------------------------------------------------------------
# Group DRO


def exponentiated_update(q: tf.Tensor, group_loss: tf.Tensor, step_size: float) -> tf.Tensor:
    """Group DRO's weights after one batch: q_g · exp(step_size · loss_g), renormalised to sum 1."""
    weights = q * tf.exp(step_size * group_loss)
    return weights / tf.reduce_sum(weights)


def fit_group_dro(model: keras.Model, features: np.ndarray, train: Rows, val: Rows, n_groups: int,
                  step_size: float, budget: Budget) -> tuple[dict[str, list[float]], np.ndarray]:
    """Fit `model` in place by online group DRO; returns (history, the final group weights q).

    History: 'loss' is the weighted objective per epoch, 'val_loss' the worst group's mean validation
    cross-entropy, on which the best epoch is chosen."""
    _require_rows(train, val)
    keras.utils.set_random_seed(budget.seed)
    rng = np.random.default_rng(budget.seed)
    variables = model.trainable_variables
    optimizer = _optimizer(variables, budget.learning_rate)
    q = tf.Variable(tf.fill([n_groups], 1.0 / n_groups), trainable=False)

    @tf.function(reduce_retracing=True)
    def step(x, y, g):
        with tf.GradientTape() as tape:
            losses = keras.losses.sparse_categorical_crossentropy(y, model(x, training=True))
            group_loss = group_means(losses, g, n_groups)
            weights = exponentiated_update(q, tf.stop_gradient(group_loss), step_size)
            objective = tf.reduce_sum(weights * group_loss)
        q.assign(weights)
        optimizer.apply_gradients(zip(tape.gradient(objective, variables), variables))
        return objective

    def run_epoch() -> float:
        total = 0.0
        for positions in shuffled_batches(len(train.rows), budget.batch_size, rng):
            x, batch = read_batch(features, train, positions)
            total += float(step(x, batch.labels, batch.groups)) * len(positions)
        return total / len(train.rows)

    def validate() -> float:
        probs = predict_probs(model, features, val.rows, budget.batch_size, desc="val")
        return worst_group_loss(cross_entropy(probs, val.labels), val.groups)

    history = early_stopped(model, run_epoch, validate, budget.epochs, budget.patience)
    return history, q.numpy()


# ---------------------------------------------------------------------------------------------------
# Adversarial


def gradient_reversal(strength: float) -> Callable[[tf.Tensor], tf.Tensor]:
    """Identity forward; the gradient flowing back through it is multiplied by −strength."""

    @tf.custom_gradient
    def reverse(x):
        return tf.identity(x), lambda upstream: -strength * upstream

    return reverse


def build_adversary(input_dim: int, width: int, classes: int, name: str, seed: int) -> keras.Model:
    """Hidden activations -> Dense(width, relu) -> class logits."""
    inputs = keras.Input(shape=(input_dim,))
    x = keras.layers.Dense(width, activation="relu", kernel_initializer=keras.initializers.GlorotUniform(seed=seed))(inputs)
    logits = keras.layers.Dense(classes, kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 1))(x)
    return keras.Model(inputs, logits, name=name)


def masked_cross_entropy(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Mean cross-entropy over the rows whose label is known (>= 0); 0 when none is."""
    known = labels >= 0
    losses = keras.losses.sparse_categorical_crossentropy(tf.maximum(labels, 0), logits, from_logits=True)
    mask = tf.cast(known, losses.dtype)
    return tf.reduce_sum(losses * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def hidden_model(model: keras.Model) -> keras.Model:
    """The head's own layers, returning (softmax output, hidden-layer activations)."""
    return keras.Model(model.inputs, [model.output, model.get_layer(HIDDEN_LAYER).output])


def fit_adversarial(model: keras.Model, features: np.ndarray, train: Rows, val: Rows, classes: dict[str, int],
                    strength: float, adversary_width: int, budget: Budget) -> dict[str, list[float]]:
    """Fit `model` in place against one adversary per attribute of `train.attributes` (`classes`: their
    class counts), through a gradient reversal of `strength`. Returns the history: 'loss' the task's
    training loss, 'val_loss' its validation loss (the best epoch is chosen on it), 'adversary_loss'
    the adversaries' summed training loss per epoch."""
    _require_rows(train, val)
    keras.utils.set_random_seed(budget.seed)
    rng = np.random.default_rng(budget.seed)
    both = hidden_model(model)
    width = both.outputs[1].shape[-1]
    adversaries = {name: build_adversary(width, adversary_width, count, f"adversary_{name}", budget.seed + i * 10)
                   for i, (name, count) in enumerate(sorted(classes.items()))}
    variables = model.trainable_variables + [v for a in adversaries.values() for v in a.trainable_variables]
    optimizer = _optimizer(variables, budget.learning_rate)
    reverse = gradient_reversal(strength)

    @tf.function(reduce_retracing=True)
    def step(x, y, targets):
        with tf.GradientTape() as tape:
            probs, hidden = both(x, training=True)
            task = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, probs))
            reversed_hidden = reverse(hidden)
            adversary = tf.add_n([masked_cross_entropy(targets[name], net(reversed_hidden, training=True))
                                  for name, net in adversaries.items()])
            total = task + adversary
        optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
        return task, adversary

    adversary_losses = []

    def run_epoch() -> float:
        task_total = adversary_total = 0.0
        for positions in shuffled_batches(len(train.rows), budget.batch_size, rng):
            x, batch = read_batch(features, train, positions)
            task, adversary = step(x, batch.labels, {k: batch.attributes[k] for k in adversaries})
            task_total += float(task) * len(positions)
            adversary_total += float(adversary) * len(positions)
        adversary_losses.append(adversary_total / len(train.rows))
        return task_total / len(train.rows)

    def validate() -> float:
        probs = predict_probs(model, features, val.rows, budget.batch_size, desc="val")
        return float(cross_entropy(probs, val.labels).mean())

    history = early_stopped(model, run_epoch, validate, budget.epochs, budget.patience)
    return {**history, "adversary_loss": adversary_losses}


# ---------------------------------------------------------------------------------------------------
# Last layer


def hidden_activations(model: keras.Model, features: np.ndarray, rows: np.ndarray, batch_size: int) -> np.ndarray:
    """The head's hidden-layer (fc7) activations on `features[rows]`, in inference mode (no dropout)."""
    hidden = keras.Model(model.inputs, model.get_layer(HIDDEN_LAYER).output)
    return predict_probs(hidden, features, rows, batch_size, desc="hidden")


def retrain_last_layer(model: keras.Model, features: np.ndarray, holdout: Rows, val: Rows,
                       budget: Budget) -> dict[str, list[float]]:
    """Refit only `model`'s output layer on the fc7 activations of the `holdout` rows, from its current
    weights, keeping the epoch of lowest worst-group validation loss; fc6 and fc7 are left untouched."""
    _require_rows(holdout, val)
    keras.utils.set_random_seed(budget.seed)
    rng = np.random.default_rng(budget.seed)
    train_hidden = hidden_activations(model, features, holdout.rows, budget.batch_size)
    val_hidden = hidden_activations(model, features, val.rows, budget.batch_size)
    output = model.get_layer("predictions")
    last = keras.Sequential([keras.Input(shape=(train_hidden.shape[1],)),
                             keras.layers.Dense(output.units), keras.layers.Activation("softmax")])
    last.layers[0].set_weights(output.get_weights())
    variables = last.trainable_variables
    optimizer = _optimizer(variables, budget.learning_rate)

    @tf.function(reduce_retracing=True)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, last(x, training=True)))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    def run_epoch() -> float:
        total = 0.0
        for positions in shuffled_batches(len(holdout.rows), budget.batch_size, rng):
            total += float(step(train_hidden[positions], holdout.labels[positions])) * len(positions)
        return total / len(holdout.rows)

    def validate() -> float:
        probs = last.predict_on_batch(val_hidden)
        return worst_group_loss(cross_entropy(probs, val.labels), val.groups)

    history = early_stopped(last, run_epoch, validate, budget.epochs, budget.patience)
    output.set_weights(last.layers[0].get_weights())
    return history


# ---------------------------------------------------------------------------------------------------
# One experiment's heads


def attribute_codes(frame: pd.DataFrame, attribute: str) -> tuple[np.ndarray, int]:
    """(class index per row, -1 where unknown; number of classes) of `race` or `gender`."""
    values = frame[attribute]
    classes = sorted(values.dropna().unique())
    codes = pd.Categorical(values, categories=classes).codes.astype(np.int64)
    return codes, len(classes)


def task_rows(task: str, frame: pd.DataFrame, features: Features, groups: np.ndarray, max_age: int,
              attributes: dict[str, np.ndarray] | None = None) -> Rows:
    return Rows(features.rows_for(frame["id"]), task_labels(task, frame, max_age), groups, attributes)


def joint_group_codes(train: pd.DataFrame, val: pd.DataFrame, columns, edges) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Group index of each train and each val row, on one list of group names (`sampling.group_codes`)."""
    codes, names = group_codes(pd.concat([train, val]), columns, edges)
    return codes[:len(train)], codes[len(train):], names


def train_experiment_heads(params: Params, features: Features, train: pd.DataFrame, val: pd.DataFrame,
                           experiment: Experiment, pretrain_dir: str | Path | None = None
                           ) -> tuple[dict[str, keras.Model], Histories, dict]:
    """The age and gender heads of one experiment, with its mitigation if it has one.

    Returns (heads, training history per trained head, a summary of what was trained on, for the
    metrics file). Without a mitigation this is `training.train_heads` with the experiment's
    oversampling / re-weighting plan."""
    mitigation = experiment.mitigation
    if mitigation is None:
        plan = training_plan(train["age"].to_numpy(), experiment.oversample, experiment.reweight, params.age_bands)
        models, histories = train_heads(params, features, train, val, experiment.init, plan, pretrain_dir)
        return models, histories, {"train_rows": len(plan[0])}
    if mitigation.method == "adversarial":
        return _adversarial_heads(params, features, train, val, experiment, pretrain_dir)
    codes, val_codes, names = joint_group_codes(train, val, mitigation.groups, params.age_bands)
    if mitigation.method == "balanced":
        indices = balanced_indices(codes, mitigation.target, params.seed)
        models, histories = train_heads(params, features, train, val, experiment.init, (indices, None), pretrain_dir)
        return models, histories, {"train_rows": len(indices), "groups": len(np.unique(codes))}
    if mitigation.method == "last_layer":
        return _last_layer_heads(params, features, train, val, experiment, (codes, val_codes), pretrain_dir)
    return _group_dro_heads(params, features, train, val, experiment, (codes, val_codes, names), pretrain_dir)


def _last_layer_heads(params, features, train, val, experiment, codes, pretrain_dir):
    train_codes, val_codes = codes
    kept, held = balanced_holdout(train_codes, experiment.mitigation.holdout, params.seed)
    models, histories = train_heads(params, features, train.iloc[kept], val, experiment.init,
                                    (np.arange(len(kept)), None), pretrain_dir)
    max_age, budget = params.labels.max_age, Budget.from_params(params)
    for task in TASKS:
        holdout = task_rows(task, train.iloc[held], features, train_codes[held], max_age)
        histories[f"{task}_last_layer"] = retrain_last_layer(
            models[task], features.array, holdout, task_rows(task, val, features, val_codes, max_age), budget)
    return models, histories, {"train_rows": len(kept), "holdout_rows": len(held)}


def _group_dro_heads(params, features, train, val, experiment, codes, pretrain_dir):
    (train_codes, val_codes, names), budget = codes, Budget.from_params(params)
    published, max_age = uses_published_weights(params.backbone), params.labels.max_age
    models, histories, summary = {}, {}, {"train_rows": len(train)}
    for task in TASKS:
        models[task] = start_head(params, features.dim, task, experiment.init, pretrain_dir, published)
        histories[task], weights = fit_group_dro(
            models[task], features.array, task_rows(task, train, features, train_codes, max_age),
            task_rows(task, val, features, val_codes, max_age), len(names), experiment.mitigation.step_size, budget)
        summary[f"{task}_group_weights"] = {name: round(float(w), 4) for name, w in zip(names, weights)}
    return models, histories, summary


def _adversarial_heads(params, features, train, val, experiment, pretrain_dir):
    mitigation, budget = experiment.mitigation, Budget.from_params(params)
    published, max_age = uses_published_weights(params.backbone), params.labels.max_age
    coded = {a: attribute_codes(pd.concat([train, val]), a) for a in mitigation.attributes}
    unlabelled = [a for a, (_, classes) in coded.items() if classes < 2]
    if unlabelled:
        raise MitigationError(f"mitigation adversarial: the finetune rows carry fewer than two {unlabelled[0]} labels, "
                              f"so no adversary can predict it; drop {unlabelled[0]} from its attributes")
    models, histories, against = {}, {}, {}
    for task in TASKS:
        models[task] = start_head(params, features.dim, task, experiment.init, pretrain_dir, published)
        against[task] = [a for a in mitigation.attributes if a != task]
        train_rows = task_rows(task, train, features, np.zeros(len(train), dtype=np.int64), max_age,
                               {a: coded[a][0][:len(train)] for a in against[task]})
        val_rows = task_rows(task, val, features, np.zeros(len(val), dtype=np.int64), max_age)
        if against[task]:
            histories[task] = fit_adversarial(models[task], features.array, train_rows, val_rows,
                                              {a: coded[a][1] for a in against[task]}, mitigation.strength,
                                              mitigation.adversary_width, budget)
        else:  # e.g. attributes [gender] leave the gender head nothing to be trained against
            histories[task] = fit_head(models[task], features.array, train_rows.rows, train_rows.labels,
                                       val_rows.rows, val_rows.labels, epochs=budget.epochs,
                                       patience=budget.patience, batch_size=budget.batch_size,
                                       learning_rate=budget.learning_rate, seed=budget.seed)
    return models, histories, {"train_rows": len(train), "against": against}
