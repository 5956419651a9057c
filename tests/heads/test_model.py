"""The dense heads: building, starting weights, and decoding the softmax into predictions."""

import numpy as np
import pandas as pd
import pytest

from stages.lib.heads.model import (
    GENDER_CLASSES,
    HeadWeightsError,
    age_codes,
    argmax_age,
    build_head,
    expected_age,
    gender_codes,
    init_head,
    layer_weights,
    predicted_gender,
    prediction_frame,
    prob_female,
    task_classes,
)
from stages.lib.core.schema import BAND_COLUMN, PREDICTION_COLUMNS

DIM, WIDTH = 12, 6


def head(classes=5, seed=0, name="age"):
    return build_head(DIM, WIDTH, classes, dropout=0.5, name=name, seed=seed)


def fake_weights(classes=5, offset=0.0):
    """Distinct, recognisable arrays of the head's shapes."""
    rng = np.random.default_rng(7)
    shapes = {"fc6": (DIM, WIDTH), "fc7": (WIDTH, WIDTH), "predictions": (WIDTH, classes)}
    return {name: (rng.normal(size=shape).astype("float32") + offset, np.full(shape[1], offset + 0.5, "float32"))
            for name, shape in shapes.items()}


def test_expected_age_by_hand():
    probs = np.zeros((3, 101))
    probs[0, [20, 30]] = 0.5                  # 0.5*20 + 0.5*30 = 25
    probs[1, [0, 1, 2]] = [0.25, 0.25, 0.5]   # 0 + 0.25 + 1.0 = 1.25
    probs[2, 100] = 1.0
    np.testing.assert_allclose(expected_age(probs), [25.0, 1.25, 100.0])


def test_argmax_age_takes_the_mode_not_the_mean():
    probs = np.zeros((2, 101))
    probs[0, [10, 80, 90]] = [0.4, 0.3, 0.3]  # mode 10, mean 55
    probs[1, 42] = 1.0
    assert argmax_age(probs).tolist() == [10, 42]
    assert expected_age(probs)[0] == pytest.approx(55.0)


def test_gender_class_order_is_female_then_male_as_deepface():
    assert GENDER_CLASSES == ("female", "male")
    probs = np.array([[0.8, 0.2], [0.1, 0.9], [0.5, 0.5]])
    np.testing.assert_allclose(prob_female(probs), [0.8, 0.1, 0.5])
    assert predicted_gender(probs).tolist() == ["female", "male", "female"]
    assert gender_codes(["male", "female"]).tolist() == [1, 0]
    with pytest.raises(HeadWeightsError, match="gender labels"):
        gender_codes(["male", "unknown"])
    with pytest.raises(HeadWeightsError, match=r"\(N, 2\)"):
        prob_female(np.ones((2, 3)))


def test_age_codes_refuse_ages_outside_the_head():
    assert age_codes([0, 100], 100).tolist() == [0, 100]
    assert task_classes("age", 100) == 101 and task_classes("gender", 100) == 2
    with pytest.raises(HeadWeightsError, match="0..100"):
        age_codes([5, 101], 100)


def test_head_layers_and_softmax_output():
    model = head()
    assert [layer.name for layer in model.layers[1:]] == [
        "fc6", "fc6_dropout", "fc7", "fc7_dropout", "predictions", "softmax"]
    assert model.get_layer("fc6").kernel.shape == (DIM, WIDTH)
    out = model.predict_on_batch(np.random.default_rng(0).normal(size=(4, DIM)).astype("float32"))
    assert out.shape == (4, 5)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_same_seed_same_start_other_seed_other_start():
    a, b, c = layer_weights(head(seed=3)), layer_weights(head(seed=3)), layer_weights(head(seed=4))
    for name in a:
        np.testing.assert_array_equal(a[name][0], b[name][0])
        assert not np.array_equal(a[name][0], c[name][0])


def test_published_init_sets_every_layer_exactly():
    weights = fake_weights()
    model = init_head(head(), "published", weights)
    for name, (kernel, bias) in layer_weights(model).items():
        np.testing.assert_array_equal(kernel, weights[name][0])
        np.testing.assert_array_equal(bias, weights[name][1])


def test_backbone_init_copies_fc6_fc7_and_leaves_the_output_new():
    fresh = layer_weights(head(seed=1))
    model = init_head(head(seed=1), "backbone", {k: v for k, v in fake_weights().items() if k != "predictions"})
    got, weights = layer_weights(model), fake_weights()
    for name in ("fc6", "fc7"):
        np.testing.assert_array_equal(got[name][0], weights[name][0])
        np.testing.assert_array_equal(got[name][1], weights[name][1])
    np.testing.assert_array_equal(got["predictions"][0], fresh["predictions"][0])
    np.testing.assert_array_equal(got["predictions"][1], fresh["predictions"][1])


def test_random_init_keeps_the_seeded_start():
    fresh = layer_weights(head(seed=2))
    got = layer_weights(init_head(head(seed=2), "random"))
    for name in fresh:
        np.testing.assert_array_equal(got[name][0], fresh[name][0])


def test_init_errors_name_the_problem():
    with pytest.raises(HeadWeightsError, match="'predictions'.*shapes"):
        init_head(head(classes=5), "published", fake_weights(classes=101))
    with pytest.raises(HeadWeightsError, match="no layer 'predictions'"):
        init_head(head(), "published", {k: v for k, v in fake_weights().items() if k != "predictions"})
    with pytest.raises(HeadWeightsError, match="needs starting weights"):
        init_head(head(), "backbone")
    with pytest.raises(HeadWeightsError, match="takes no starting weights"):
        init_head(head(), "random", fake_weights())
    with pytest.raises(HeadWeightsError, match="not one of"):
        init_head(head(), "imagenet", fake_weights())


def test_prediction_frame_follows_the_contract():
    rows = pd.DataFrame({"id": ["a", "b"], "dataset": ["utkface"] * 2, "split": ["test", "val"], "age": [25, 3],
                         "gender": ["female", "male"], "race": ["black", None], "path": ["x", "y"]})
    age_probs = np.zeros((2, 101))
    age_probs[0, [20, 30]] = 0.5
    age_probs[1, 3] = 1.0
    frame = prediction_frame(rows, age_probs, np.array([[0.3, 0.7], [0.9, 0.1]]), "retrained")
    assert list(frame.columns) == PREDICTION_COLUMNS + [BAND_COLUMN, "cluster"]
    assert frame["age_pred"].tolist() == [25.0, 3.0]
    assert frame["age_pred_argmax"].tolist() == [20, 3]
    assert frame["gender_prob_female"].tolist() == pytest.approx([0.3, 0.9])
    assert frame["gender_pred"].tolist() == ["male", "female"]
    assert frame["experiment"].unique().tolist() == ["retrained"]
    assert frame["race"].isna().tolist() == [False, True]


def test_a_published_decision_rule_calls_male_at_its_threshold():
    from stages.lib.heads.model import predicted_gender

    probs = np.array([[0.45, 0.55], [0.4, 0.6], [0.6, 0.4], [0.5, 0.5]])   # P(female), P(male)
    assert predicted_gender(probs).tolist() == ["male", "male", "female", "female"]
    assert predicted_gender(probs, 0.6).tolist() == ["female", "male", "female", "female"]
