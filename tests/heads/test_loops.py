"""The custom training loops' shared parts: seeded row batches, the Trainer driven by Keras' fit with a
val criterion of its own, group means, group codes."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from stages.lib.heads.loops import (Trainer, ValidationCriterion, attribute_codes, fit_trainer, group_means,
                                    joint_group_codes, row_batches, shuffled_batches, worst_group_loss)
from stages.lib.heads.model import build_head
from stages.lib.heads.training import Budget, TaskRows, cross_entropy


def test_group_means_and_worst_group_loss_by_hand():
    means = group_means(tf.constant([1.0, 3.0, 5.0]), tf.constant([0, 0, 2]), 3).numpy()
    np.testing.assert_allclose(means, [2.0, 0.0, 5.0])
    assert worst_group_loss(np.array([1.0, 3.0, 0.5]), np.array([0, 0, 1])) == 2.0
    np.testing.assert_allclose(cross_entropy(np.array([[0.25, 0.75], [1.0, 0.0]]), np.array([1, 0])),
                               [-np.log(0.75), 0.0], atol=1e-6)


class Counting(Trainer):
    """A trainer whose every step adds 1 to the output kernel: each epoch's weights differ."""

    def train_step(self, data):
        kernel = self.head.get_layer("predictions").kernel
        kernel.assign(kernel + 1.0)
        return self.record(tf.constant(0.0), tf.shape(data[1])[0])


def test_a_trainer_is_fitted_by_keras_and_early_stopping_restores_the_best_epoch():
    model = build_head(3, 2, 2, 0.0, name="toy")
    marks = iter([5.0, 1.0, 7.0, 9.0, 0.5])
    budget = Budget(epochs=5, patience=2, batch_size=4, learning_rate=0.01, seed=0)
    data = TaskRows(np.arange(8), np.zeros(8, dtype=np.int64))
    weights = []
    history = fit_trainer(Counting(model), row_batches(np.zeros((8, 3), np.float16), data, budget),
                          lambda: (weights.append(model.get_weights()), next(marks))[1], budget=budget)
    assert history["val_loss"] == [5.0, 1.0, 7.0, 9.0]   # stopped after two epochs without a better one
    assert history["loss"] == [0.0] * 4
    for now, best in zip(model.get_weights(), weights[1]):
        np.testing.assert_array_equal(now, best)


def numbered(n: int) -> np.ndarray:
    """Features whose first column is the row's own number, so a batch says which rows it holds."""
    return np.stack([np.arange(n), np.zeros(n)], axis=1).astype(np.float16)


def epochs_of(dataset, count: int) -> list[list[np.ndarray]]:
    """`count` passes over `dataset`, each a list of its batches as numpy tuples."""
    return [[tuple(np.asarray(part) for part in batch) for batch in dataset] for _ in range(count)]


def test_row_batches_give_every_row_once_per_epoch_in_a_fresh_seeded_order():
    rows = np.array([7, 3, 9, 0, 5, 1, 8, 2, 6, 4])          # feature rows, not in file order
    data = TaskRows(rows, rows % 2)
    budget = Budget(epochs=3, patience=3, batch_size=4, learning_rate=0.01, seed=11)
    dataset = row_batches(numbered(10), data, budget)
    assert dataset.cardinality().numpy() == 3                 # ceil(10 / 4)
    epochs = epochs_of(dataset, 3)
    orders = []
    for batches in epochs:
        assert [len(x) for x, _ in batches] == [4, 4, 2]
        seen = np.concatenate([x[:, 0] for x, _ in batches]).astype(int)
        assert sorted(seen) == sorted(rows)                   # each row once
        for x, y in batches:
            np.testing.assert_array_equal(y, x[:, 0].astype(int) % 2)   # labels travel with their rows
        orders.append(seen.tolist())
    assert orders[0] != orders[1] != orders[2]               # reshuffled every epoch
    again = epochs_of(row_batches(numbered(10), data, budget), 3)
    assert [np.concatenate([x[:, 0] for x, _ in b]).astype(int).tolist() for b in again] == orders
    other = epochs_of(row_batches(numbered(10), data, Budget(3, 3, 4, 0.01, seed=12)), 1)
    assert np.concatenate([x[:, 0] for x, _ in other[0]]).astype(int).tolist() != orders[0]


def test_row_batches_read_each_batch_in_file_order_unless_told_not_to():
    rows = np.arange(40)[::-1].copy()
    data = TaskRows(rows, np.zeros(40, dtype=np.int64))
    budget = Budget(epochs=1, patience=1, batch_size=8, learning_rate=0.01, seed=0)
    sorted_batches = epochs_of(row_batches(numbered(40), data, budget), 1)[0]
    assert all(np.all(np.diff(x[:, 0]) > 0) for x, _ in sorted_batches)
    drawn = epochs_of(row_batches(numbered(40), data, budget, in_file_order=False), 1)[0]
    assert not all(np.all(np.diff(x[:, 0]) > 0) for x, _ in drawn)
    # the same rows per batch either way: only the order within a batch differs
    assert [sorted(x[:, 0]) for x, _ in drawn] == [list(x[:, 0]) for x, _ in sorted_batches]


def test_row_batches_carry_each_rows_group_or_attributes_alongside():
    rows = np.array([4, 0, 3, 1, 2])
    groups = rows % 3
    race = np.where(rows == 2, -1, rows % 2)
    data = TaskRows(rows, np.zeros(5, dtype=np.int64), groups, {"race": race})
    budget = Budget(epochs=1, patience=1, batch_size=2, learning_rate=0.01, seed=3)
    for x, _, batch_groups in epochs_of(row_batches(numbered(5), data, budget, extra="groups"), 1)[0]:
        np.testing.assert_array_equal(batch_groups, x[:, 0].astype(int) % 3)
    for x, _, targets in row_batches(numbered(5), data, budget, extra="attributes"):
        expected = np.where(x[:, 0].numpy() == 2, -1, x[:, 0].numpy().astype(int) % 2)
        np.testing.assert_array_equal(targets["race"].numpy(), expected)


def test_shuffled_batches_split_one_permutation_into_batches():
    batches = list(shuffled_batches(7, 3, np.random.default_rng(0)))
    assert [len(b) for b in batches] == [3, 3, 1]
    assert sorted(np.concatenate(batches).tolist()) == list(range(7))


def test_the_validation_criterion_replaces_the_epochs_val_loss():
    criterion = ValidationCriterion(lambda: worst_group_loss(np.array([0.2, 0.4, 3.0]), np.array([0, 0, 1])))
    logs = {"loss": 1.0, "val_loss": 0.1}
    criterion.on_epoch_end(0, logs)
    assert logs == {"loss": 1.0, "val_loss": 3.0}             # the worst group's mean, not the overall 1.2


def test_a_trainers_epoch_loss_weighs_each_batch_by_its_rows():
    trainer = Trainer(build_head(3, 2, 2, 0.0, name="toy"))
    trainer.record(tf.constant(1.0), tf.constant(3))
    result = trainer.record(tf.constant(5.0), tf.constant(1))
    assert float(result["loss"]) == pytest.approx(2.0)        # (3 x 1 + 1 x 5) / 4, not (1 + 5) / 2


def test_attribute_codes_number_the_classes_and_mark_unknown_rows():
    codes, classes = attribute_codes(pd.DataFrame({"race": ["white", None, "black", "white"]}), "race")
    assert classes == 2 and codes.tolist() == [1, -1, 0, 1]
    assert codes.dtype == np.int64


def test_joint_group_codes_name_the_groups_of_train_and_val_on_one_list():
    train = pd.DataFrame({"race": ["black", "white"], "gender": ["female", "female"], "age": [20, 30]})
    val = pd.DataFrame({"race": ["white", "asian"], "gender": ["female", "male"], "age": [40, 50]})
    train_codes, val_codes, names = joint_group_codes(train, val, ["race", "gender"], [0, 16])
    assert [names[c] for c in train_codes] == ["black*female", "white*female"]
    assert [names[c] for c in val_codes] == ["white*female", "asian*male"]   # a val-only group is named too
    assert train_codes[1] == val_codes[0]
