"""Linear probes (heads/probe.py): what a probe reads of an attribute, on features where it is known."""

import numpy as np
import pandas as pd
import pytest

from stages.lib.backbones.store import Features
from stages.lib.core.params import validate
from stages.lib.heads.probe import (class_balanced_weights, feature_moments, fit_probe, labelled,
                                    probe_predictions)
from stages.lib.heads.data import HeadData
from tests.heads.toys import MINIMAL


def test_moments_are_read_in_chunks_and_match_numpy():
    values = np.random.default_rng(0).normal(3.0, 2.0, size=(50, 4)).astype(np.float16)
    rows = np.array([40, 2, 7, 33, 11])
    mean, variance = feature_moments(values, rows, chunk=2)
    np.testing.assert_allclose(mean, values[np.sort(rows)].astype(float).mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(variance, values[rows].astype(float).var(axis=0), rtol=1e-6)


def test_class_balanced_weights_give_each_class_the_same_total():
    codes = np.array([0, 0, 0, 1, 2, 2])
    weights = class_balanced_weights(codes)
    assert weights.mean() == pytest.approx(1.0)
    assert [weights[codes == c].sum() for c in range(3)] == pytest.approx([2.0, 2.0, 2.0])


def probe_data(n=600, seed=0):
    """Race written into x0 (scaled by hundredths, as a random VGG-Face's pool5 varies), a rare class
    included; x1..x3 noise."""
    rng = np.random.default_rng(seed)
    race = rng.choice(["white", "black", "asian"], n, p=[0.7, 0.2, 0.1])
    values = rng.normal(size=(n, 4)) * 0.01
    values[:, 0] += np.select([race == "white", race == "black"], [0.0, 0.06], 0.12)
    frame = pd.DataFrame({"id": [f"f{i}" for i in range(n)], "race": race, "dataset": "d"})
    frame.loc[::17, "race"] = None   # unlabelled rows are left out of the probe
    features = Features(values.astype(np.float16), pd.Series(np.arange(n), index=frame["id"]))
    return features, frame


def test_a_probe_reads_a_linearly_written_attribute_even_its_rare_class():
    features, frame = probe_data()
    params = validate({**MINIMAL, "train": {"epochs": 60, "patience": 10, "batch_size": 64, "learning_rate": 0.05}})
    data = HeadData(params, features, frame.iloc[:400], frame.iloc[400:500])
    model, classes = fit_probe(data, "race")
    assert classes == ["asian", "black", "white"]
    test = frame.iloc[500:]
    predicted = probe_predictions(model, classes, features, test, attribute="race", batch_size=64)
    assert len(predicted) == len(labelled(test, "race", classes)) < len(test)
    recall = (predicted["predicted"] == predicted["label"]).groupby(predicted["label"]).mean()
    assert recall.min() > 0.8, recall   # balanced: the rare class is found too, not the commonest guessed


def test_a_probe_of_an_attribute_no_training_row_varies_is_refused():
    features, frame = probe_data()
    data = HeadData(validate(MINIMAL), features, frame.assign(race="white"), frame)
    with pytest.raises(ValueError, match="needs at least two race labels"):
        fit_probe(data, "race")
