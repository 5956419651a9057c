"""Running heads on the cached features: outputs in the rows' order, their cross-entropy, the table."""

import numpy as np
import pandas as pd
import pytest

from stages.lib.backbones.store import Features
from stages.lib.heads.data import FittedHeads
from stages.lib.heads.model import build_head
from stages.lib.heads.predicting import cross_entropy, predict_fitted, predict_probs, published_output_predictions


def test_cross_entropy_by_hand():
    np.testing.assert_allclose(cross_entropy(np.array([[0.25, 0.75], [1.0, 0.0]]), np.array([1, 0])),
                               [-np.log(0.75), 0.0], atol=1e-6)
    assert np.isfinite(cross_entropy(np.array([[1.0, 0.0]]), np.array([1])))   # clipped as Keras clips


def test_predict_probs_follow_the_rows_order_whatever_the_batches():
    features = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float16)
    model = build_head(4, 3, 2, 0.0, name="toy", seed=0)
    rows = np.array([7, 2, 19, 0, 11])
    whole = model.predict_on_batch(features[rows].astype(np.float32))
    np.testing.assert_allclose(predict_probs(model, features, rows, 2), whole, rtol=1e-6)


def test_stored_published_outputs_are_the_predictions_of_the_published_model():
    rows = pd.DataFrame({"id": ["a", "b"], "dataset": "d", "split": "test", "age": [30, 61],
                         "gender": ["female", "male"], "race": None})
    published = np.array([[0.8, 0.2, *np.eye(101)[30]], [0.1, 0.9, *np.eye(101)[61]]], dtype=np.float32)
    features = Features(np.zeros((2, 3), np.float16), pd.Series([1, 0], index=["a", "b"]), published=published[::-1])
    table = predict_fitted(FittedHeads({}, reads="published_outputs"), features, rows, batch_size=4, experiment="x")
    assert table["age_pred"].round().tolist() == [30.0, 61.0]
    assert table["gender_prob_female"].tolist() == pytest.approx([0.8, 0.1])
    with pytest.raises(ValueError, match="no published outputs"):
        published_output_predictions(Features(np.zeros((2, 3), np.float16), features.row_of), rows, "x")
