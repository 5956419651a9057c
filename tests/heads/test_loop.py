"""The one batcher (rows of the features, in an order per epoch) and the one loop (Keras' fit with a
kept-best callback) that every head is trained by."""

import numpy as np
import pytest
import tensorflow as tf

from stages.lib.heads.data import Budget, TaskRows
from stages.lib.heads.groups import worst_group_loss
from stages.lib.heads.loop import (Drawn, EpochFigures, InOrder, Permuted, Reshuffled, RowBatches, Trainer,
                                   fit_loop)
from stages.lib.heads.model import build_head
from stages.lib.heads.predicting import cross_entropy, predict_probs
from tests.heads.toys import toy_problem


def numbered(n: int) -> np.ndarray:
    """Features whose first column is the row's own number, so a batch says which rows it holds."""
    return np.stack([np.arange(n), np.zeros(n)], axis=1).astype(np.float16)


def epochs_of(batches: RowBatches, count: int) -> list[list[tuple]]:
    """`count` passes over the batches' dataset, each a list of its batches as numpy tuples."""
    dataset = batches.dataset()
    return [[tuple(np.asarray(part) for part in batch) for batch in dataset] for _ in range(count)]


def order(epoch) -> list[int]:
    return np.concatenate([batch[0][:, 0] for batch in epoch]).astype(int).tolist()


def test_reshuffled_batches_are_the_requested_rows_as_float32_with_their_weights():
    features, labels = toy_problem(40)
    rows = np.array([5, 1, 30, 7, 22, 9, 14])
    weights = np.arange(7, dtype=np.float32)
    batches = RowBatches(features, TaskRows(rows, labels[rows]), 3, Reshuffled(1), extra="weights", weights=weights)
    epochs = epochs_of(batches, 2)
    for epoch in epochs:
        x, y, w = (np.concatenate([b[i] for b in epoch]) for i in range(3))
        assert x.dtype == np.float32 and [len(b[0]) for b in epoch] == [3, 3, 1]
        positions = w.astype(int)  # weight i was given to rows[i]
        assert sorted(positions) == list(range(7))
        np.testing.assert_array_equal(x, features[rows[positions]].astype(np.float32))
        np.testing.assert_array_equal(y, labels[rows[positions]])
    orders = [np.concatenate([b[2] for b in epoch]).tolist() for epoch in epochs]
    assert orders[0] != orders[1]  # reshuffled between epochs
    assert [np.concatenate([b[2] for b in epoch]).tolist() for epoch in epochs_of(batches, 2)] == orders  # same seed


def test_permuted_batches_give_every_row_once_per_epoch_in_a_fresh_seeded_order():
    rows = np.array([7, 3, 9, 0, 5, 1, 8, 2, 6, 4])          # feature rows, not in file order
    data = TaskRows(rows, rows % 2)
    batches = RowBatches(numbered(10), data, 4, Permuted(11))
    assert batches.dataset().cardinality().numpy() == 3      # ceil(10 / 4)
    epochs = epochs_of(batches, 3)
    for epoch in epochs:
        assert [len(x) for x, _ in epoch] == [4, 4, 2]
        assert sorted(order(epoch)) == sorted(rows)      # each row once
        for x, y in epoch:
            np.testing.assert_array_equal(y, x[:, 0].astype(int) % 2)   # labels travel with their rows
    orders = [order(epoch) for epoch in epochs]
    assert orders[0] != orders[1] != orders[2]               # reshuffled every epoch
    assert [order(epoch) for epoch in epochs_of(batches, 3)] == orders
    assert order(epochs_of(RowBatches(numbered(10), data, 4, Permuted(12)), 1)[0]) != orders[0]


def test_drawn_batches_are_one_batch_per_epoch_drawn_with_replacement():
    batches = RowBatches(numbered(10), TaskRows(np.arange(10), np.zeros(10, np.int64)), 30, Drawn(0),
                         in_file_order=False)
    dataset = batches.dataset()
    assert dataset.cardinality().numpy() == tf.data.INFINITE_CARDINALITY   # an epoch: its next batch
    first, second = (np.asarray(batch[0])[:, 0].astype(int) for batch in dataset.take(2))
    assert len(first) == 30 and len(set(first)) <= 10        # 30 rows of 10: repeats
    np.testing.assert_array_equal(first, np.random.default_rng(0).integers(0, 10, 30))   # as drawn, in order
    assert first.tolist() != second.tolist()


def test_batches_are_read_in_file_order_unless_told_not_to():
    rows = np.arange(40)[::-1].copy()
    data = TaskRows(rows, np.zeros(40, dtype=np.int64))
    sorted_batches = epochs_of(RowBatches(numbered(40), data, 8, Permuted(0)), 1)[0]
    assert all(np.all(np.diff(x[:, 0]) > 0) for x, _ in sorted_batches)
    drawn = epochs_of(RowBatches(numbered(40), data, 8, Permuted(0), in_file_order=False), 1)[0]
    assert not all(np.all(np.diff(x[:, 0]) > 0) for x, _ in drawn)
    # the same rows per batch either way: only the order within a batch differs
    assert [sorted(x[:, 0]) for x, _ in drawn] == [list(x[:, 0]) for x, _ in sorted_batches]
    in_order = order(epochs_of(RowBatches(numbered(40), data, 8), 1)[0])    # InOrder: the rows' order, batch by batch
    assert in_order == [row for start in (32, 24, 16, 8, 0) for row in range(start, start + 8)]


def test_batches_carry_each_rows_group_or_attributes_alongside():
    rows = np.array([4, 0, 3, 1, 2])
    groups = rows % 3
    race = np.where(rows == 2, -1, rows % 2)
    data = TaskRows(rows, np.zeros(5, dtype=np.int64), groups, {"race": race})
    for x, _, batch_groups in epochs_of(RowBatches(numbered(5), data, 2, Permuted(3), extra="groups"), 1)[0]:
        np.testing.assert_array_equal(batch_groups, x[:, 0].astype(int) % 3)
    for x, _, targets in RowBatches(numbered(5), data, 2, Permuted(3), extra="attributes").dataset():
        expected = np.where(x[:, 0].numpy() == 2, -1, x[:, 0].numpy().astype(int) % 2)
        np.testing.assert_array_equal(targets["race"].numpy(), expected)


def test_batches_refuse_weights_of_another_length():
    with pytest.raises(ValueError, match="same length"):
        RowBatches(numbered(5), TaskRows(np.arange(5), np.zeros(5, np.int64)), 2, InOrder(), extra="weights",
                   weights=np.ones(4)).dataset()


class Counting(Trainer):
    """A trainer whose every step adds 1 to the output kernel: each epoch's weights differ."""

    def train_step(self, data):
        kernel = self.head.get_layer("predictions").kernel
        kernel.assign(kernel + 1.0)
        return self.record(tf.constant(0.0), tf.shape(data[1])[0])


def test_a_trainer_is_fitted_by_keras_and_the_best_epoch_by_its_own_criterion_is_kept():
    model = build_head(3, 2, 2, 0.0, name="toy")
    marks = iter([5.0, 1.0, 7.0, 9.0, 0.5])
    budget = Budget(epochs=5, patience=2, batch_size=4, learning_rate=0.01, seed=0)
    batches = RowBatches(np.zeros((8, 3), np.float16), TaskRows(np.arange(8), np.zeros(8, dtype=np.int64)), 4,
                         Permuted(0))
    weights = []
    history = fit_loop(Counting(model), batches, budget=budget,
                       figures=[lambda: (weights.append(model.get_weights()), {"val_loss": next(marks)})[1]])
    assert history["val_loss"] == [5.0, 1.0, 7.0, 9.0]   # stopped after two epochs without a better one
    assert history["loss"] == [0.0] * 4
    for now, best in zip(model.get_weights(), weights[1]):
        np.testing.assert_array_equal(now, best)


def test_the_loop_keeps_the_epoch_of_lowest_of_any_figure_it_is_told():
    """The study's rule: the lowest test loss, never stopping early (patience: every epoch)."""
    model = build_head(3, 2, 2, 0.0, name="toy")
    marks = iter([{"test_loss": 4.0, "val_loss": 0.1}, {"test_loss": 2.0, "val_loss": 0.2},
                  {"test_loss": 3.0, "val_loss": 0.3}, {"test_loss": 5.0, "val_loss": 0.4}])
    budget = Budget(epochs=4, patience=4, batch_size=4, learning_rate=0.01, seed=0)
    batches = RowBatches(np.zeros((8, 3), np.float16), TaskRows(np.arange(8), np.zeros(8, dtype=np.int64)), 4)
    weights = []
    history = fit_loop(Counting(model), batches, budget=budget, keep="test_loss",
                       figures=[lambda: (weights.append(model.get_weights()), next(marks))[1]])
    assert history["test_loss"] == [4.0, 2.0, 3.0, 5.0]
    for now, best in zip(model.get_weights(), weights[1]):
        np.testing.assert_array_equal(now, best)


def test_a_plain_head_learns_and_keeps_the_best_validation_epoch():
    features, labels = toy_problem()
    model = build_head(10, 8, 3, dropout=0.2, name="toy", seed=0)
    budget = Budget(epochs=12, patience=2, batch_size=32, learning_rate=0.01, seed=0)
    val = TaskRows(np.arange(180, 240), labels[180:])
    history = fit_loop(model, RowBatches(features, TaskRows(np.arange(180), labels[:180]), 32, Reshuffled(0)),
                       budget=budget, validation=RowBatches(features, val, 32))
    assert set(history) == {"loss", "val_loss"}
    assert min(history["val_loss"]) < history["val_loss"][0] * 0.7
    kept = cross_entropy(predict_probs(model, features, val.rows, 64), val.labels).mean()
    assert kept == pytest.approx(min(history["val_loss"]), rel=1e-4)


def test_epoch_figures_replace_the_epochs_val_loss():
    figures = EpochFigures(lambda: {"val_loss": worst_group_loss(np.array([0.2, 0.4, 3.0]), np.array([0, 0, 1]))})
    logs = {"loss": 1.0, "val_loss": 0.1}
    figures.on_epoch_end(0, logs)
    assert logs == {"loss": 1.0, "val_loss": 3.0}             # the worst group's mean, not the overall 1.2


def test_a_trainers_epoch_loss_weighs_each_batch_by_its_rows():
    trainer = Trainer(build_head(3, 2, 2, 0.0, name="toy"))
    trainer.record(tf.constant(1.0), tf.constant(3))
    result = trainer.record(tf.constant(5.0), tf.constant(1))
    assert float(result["loss"]) == pytest.approx(2.0)        # (3 x 1 + 1 x 5) / 4, not (1 + 5) / 2
