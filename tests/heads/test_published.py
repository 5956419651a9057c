"""The published models' heads as Keras models (the WideResNet's output layers, the heads selecting its
stored outputs); VGG-Face's published files become heads in tests/stages/test_train.py."""

import numpy as np
import pytest

from stages.lib.heads.published import published_layer_heads, published_output_heads


def test_output_heads_select_their_tasks_columns_exactly():
    outputs = np.random.default_rng(0).uniform(size=(3, 2 + 31)).astype(np.float32)
    heads = published_output_heads(33, 30)
    np.testing.assert_array_equal(heads["gender"].predict_on_batch(outputs), outputs[:, :2])
    np.testing.assert_array_equal(heads["age"].predict_on_batch(outputs), outputs[:, 2:])
    with pytest.raises(ValueError, match="check labels.max_age"):
        published_output_heads(33, 40)


def test_layer_heads_hold_the_published_kernels_under_a_softmax():
    kernel = np.random.default_rng(1).normal(size=(5, 2)).astype(np.float32)
    head = published_layer_heads({"gender": kernel})["gender"]
    assert [layer.name for layer in head.layers] == ["features", "predictions", "softmax"]
    np.testing.assert_array_equal(head.get_layer("predictions").get_weights()[0], kernel)
    x = np.eye(5, dtype=np.float32)
    logits = x @ kernel
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(head.predict_on_batch(x), expected, rtol=1e-5)
