"""Heads whose published start shares a layer (FaceRes' `feats` under its age and gender outputs) are
fine-tuned as one model on one copy of it; every other start fits task by task as before."""

import numpy as np
import pytest
import tensorflow as tf
from keras.models import load_model

from stages.lib.backbones import faceres
from stages.lib.backbones.cards import PublishedLayer
from stages.lib.core.params import Experiment
from stages.lib.heads import plain
from stages.lib.heads.data import HeadData
from stages.lib.heads.joint import JointHeads, joint_labels, shared_layers, tie
from stages.lib.heads.model import build_head, task_labels
from stages.lib.heads.predicting import cross_entropy, predict_probs
from stages.lib.heads.published import published_layer_heads
from stages.lib.heads.saving import heads_signature, save_heads
from tests.heads.toys import DIM, tiny_params, tiny_split
from tests.published_weights import faceres_weights  # noqa: F401 (a fixture)

FINE_TUNED = Experiment(init="published", protocol="ours")


def faceres_like(seed=0):
    """Published layers as FaceRes' are: one `feats` layer (relu) under both tasks' outputs."""
    rng = np.random.default_rng(seed)
    feats = PublishedLayer(rng.normal(size=(DIM, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32),
                           "relu", "feats")
    return {"age": (feats, PublishedLayer(rng.normal(size=(4, 31)).astype(np.float32), np.zeros(31, np.float32))),
            "gender": (feats, PublishedLayer(rng.normal(size=(4, 2)).astype(np.float32), np.zeros(2, np.float32)))}


@pytest.fixture
def pretrained(tmp_path):
    """The pretrain stage's folder for a FaceRes-like backbone: each task's published head saved on its own."""
    for task, head in published_layer_heads(faceres_like()).items():
        head.save(tmp_path / f"{task}.keras")
    return tmp_path


def test_the_shared_layer_is_read_off_the_saved_heads(pretrained):
    heads = {task: load_model(pretrained / f"{task}.keras", compile=False) for task in ("age", "gender")}
    assert shared_layers(heads) == ["feats", "feats_relu"]
    kernel = np.random.default_rng(1).normal(size=(DIM, 2)).astype(np.float32)
    assert shared_layers(published_layer_heads({"age": kernel, "gender": kernel[:, ::-1].copy()})) == []


def test_the_fine_tuned_heads_hold_one_feats_trained_on_both_tasks(raw, pretrained, tmp_path):
    params = tiny_params(raw, {"method": "balanced"})
    features, train, val = tiny_split()
    start = published_layer_heads(faceres_like())
    fitted = plain.fit(HeadData(params, features, train, val, pretrained), FINE_TUNED)
    age, gender = fitted.heads["age"], fitted.heads["gender"]
    assert set(fitted.histories) == {"joint"} and len(fitted.histories["joint"]["val_loss"]) >= 1
    assert age.get_layer("feats") is gender.get_layer("feats")
    assert {id(v) for v in age.get_layer("feats").weights} == {id(v) for v in gender.get_layer("feats").weights}
    assert not np.array_equal(age.get_layer("feats").get_weights()[0], start["age"].get_layer("feats").get_weights()[0])
    kernel, bias = age.get_layer("feats").get_weights()
    age.get_layer("feats").set_weights([kernel + 1.0, bias])
    np.testing.assert_array_equal(gender.get_layer("feats").get_weights()[0], kernel + 1.0)
    # each head is still a model of its own: same layers and weight shapes as the published start's
    assert [layer.name for layer in age.layers] == [layer.name for layer in start["age"].layers]
    signature = heads_signature(fitted, "published", params, "grouped")["layers"]
    assert signature == {task: [list(w.shape) for w in start[task].weights] for task in start}
    save_heads(fitted.heads, fitted.histories, tmp_path / "saved", {})
    x = features.array[:5].astype(np.float32)
    for task, head in fitted.heads.items():
        np.testing.assert_allclose(load_model(tmp_path / "saved" / f"{task}.keras").predict_on_batch(x),
                                   head.predict_on_batch(x), rtol=1e-6)


def test_a_step_moves_feats_down_the_sum_of_both_tasks_gradients():
    heads = tie(published_layer_heads(faceres_like()), ["feats", "feats_relu"])
    rng = np.random.default_rng(2)
    x = tf.constant(rng.normal(size=(16, DIM)), tf.float32)
    age, gender, weights = rng.integers(0, 31, 16), rng.integers(0, 2, 16), rng.uniform(0.5, 2, 16)
    labels, w = tf.constant(joint_labels(age, gender)), tf.constant(weights, tf.float32)
    trainer = JointHeads(heads)
    feats = heads["age"].get_layer("feats").kernel
    assert sum(variable is feats for variable in trainer.trained) == 1

    def gradient(objective):
        with tf.GradientTape() as tape:
            value = objective()
        return tape.gradient(value, feats).numpy()

    def task_loss(task, target):
        losses = tf.keras.losses.sparse_categorical_crossentropy(target, heads[task](x))
        return tf.reduce_mean(losses * w)

    joint = gradient(lambda: trainer.objective(x, labels, w, training=True))
    of_age, of_gender = gradient(lambda: task_loss("age", age)), gradient(lambda: task_loss("gender", gender))
    assert np.abs(of_age).max() > 0 and np.abs(of_gender).max() > 0
    np.testing.assert_allclose(joint, of_age + of_gender, rtol=1e-5, atol=1e-7)


def test_starts_sharing_nothing_fit_task_by_task(raw, tmp_path):
    params = tiny_params(raw, {"method": "balanced"})
    features, train, val = tiny_split()
    kernel = np.random.default_rng(3)
    for task, head in published_layer_heads({"age": kernel.normal(size=(DIM, 31)).astype(np.float32),
                                             "gender": kernel.normal(size=(DIM, 2)).astype(np.float32)}).items():
        head.save(tmp_path / f"{task}.keras")
    fitted = plain.fit(HeadData(params, features, train, val, tmp_path), FINE_TUNED)
    assert set(fitted.histories) == {"age", "gender"}
    # seeded random starts begin with equal hidden layers, yet are separate heads, fitted task by task
    assert shared_layers({task: build_head(DIM, 8, classes, 0.0, name=task, seed=1)
                          for task, classes in (("age", 31), ("gender", 2))})
    fitted = plain.fit(HeadData(params, features, train, val), Experiment(init="random"))
    assert set(fitted.histories) == {"age", "gender"}
    assert fitted.heads["age"].get_layer("fc6") is not fitted.heads["gender"].get_layer("fc6")


def test_the_kept_epoch_is_the_one_of_lowest_summed_val_loss(raw, pretrained):
    params = tiny_params(raw, {"method": "balanced"})
    params = params.model_copy(update={"train": params.train.model_copy(
        update={"epochs": 6, "patience": 6, "learning_rate": 0.5})})    # a rate that overshoots after a while
    features, train, val = tiny_split()
    fitted = plain.fit(HeadData(params, features, train, val, pretrained), FINE_TUNED)
    val_loss = fitted.histories["joint"]["val_loss"]
    assert int(np.argmin(val_loss)) < len(val_loss) - 1
    rows = features.rows_for(val["id"])
    summed = sum(cross_entropy(predict_probs(fitted.heads[task], features.array, rows, 32),
                               task_labels(task, val, params.labels.max_age)).mean() for task in ("age", "gender"))
    assert summed == pytest.approx(min(val_loss), rel=1e-5)


def test_faceres_published_heads_share_feats_once_saved_and_loaded(faceres_weights, tmp_path):
    for task, head in published_layer_heads(faceres.published_layers(faceres_weights)).items():
        head.save(tmp_path / f"{task}.keras")
    heads = {task: load_model(tmp_path / f"{task}.keras", compile=False) for task in ("age", "gender")}
    assert shared_layers(heads) == ["feats", "feats_relu"]
