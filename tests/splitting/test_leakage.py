"""Identity clusters and split leakage from face embeddings: block-wise results equal brute force."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import cdist

from stages.lib.splitting import leakage
from stages.lib.splitting.leakage import BLOCK_ROWS, identity_clusters, leakage_summary
from stages.lib.splitting.split import SplitPlan, assign_splits

EDGES = [0, 16, 31, 46, 61]


def nearest_distances(rows: np.ndarray, query: np.ndarray, reference: np.ndarray, metric: str = "euclidean", *,
                      block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """The library's block-wise search (`leakage._nearest`, what leakage_summary measures with): for each
    query row, the distance to its nearest reference row, inf without one."""
    return leakage._nearest(leakage._space(rows, metric), np.flatnonzero(query), np.flatnonzero(reference), block_rows)


def _brute_distances(x: np.ndarray, y: np.ndarray, metric: str) -> np.ndarray:
    """cdist in float64; a zero-norm row is at cosine distance 1 from every row, as documented."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    if metric == "euclidean":
        return cdist(x, y)
    nx, ny = np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1)
    denom = np.outer(nx, ny)
    similarity = np.divide(x @ y.T, denom, out=np.zeros_like(denom), where=denom > 0)
    return 1 - np.clip(similarity, -1, 1)


def _brute_clusters(x: np.ndarray, threshold: float, metric: str) -> np.ndarray:
    labels = connected_components(_brute_distances(x, x, metric) <= threshold, directed=False)[1]
    order = {}
    return np.array([order.setdefault(label, len(order)) for label in labels])


def _clustered(n_centres: int, per_centre: int, dim: int, spread: float, seed: int) -> np.ndarray:
    """Rows scattered around random centres, shuffled: a mix of singletons, pairs and chains."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_centres, dim)) * 3
    rows = np.repeat(centres, per_centre, axis=0) + rng.normal(size=(n_centres * per_centre, dim)) * spread
    return rows[rng.permutation(len(rows))]


def _gap_threshold(x: np.ndarray, metric: str, quantile: float) -> float:
    """A threshold near a quantile of pairwise distances, midway in a gap so rounding cannot tip it."""
    d = np.unique(_brute_distances(x, x, metric)[np.triu_indices(len(x), 1)])
    start = int(quantile * len(d))
    k = start + int(np.argmax(np.diff(d[start:start + 50])))
    return float((d[k] + d[k + 1]) / 2)


def test_planted_duplicate_pair_is_one_cluster_and_far_rows_stay_alone():
    far = np.eye(10) * 100.0
    rows = np.vstack([far, far[3] + 0.01])
    labels = identity_clusters(rows, 0.4)
    assert labels.dtype == np.int64
    assert labels.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 3]


def test_chains_join_under_single_linkage():
    rows = np.array([[0.0], [0.3], [0.6], [5.0]])
    assert identity_clusters(rows, 0.35).tolist() == [0, 0, 0, 1]
    assert identity_clusters(rows, 0.2).tolist() == [0, 1, 2, 3]


def test_labels_follow_first_appearance():
    rows = np.array([[9.0], [0.0], [9.1], [0.1], [4.0]])
    assert identity_clusters(rows, 0.5).tolist() == [0, 1, 0, 1, 2]


def test_threshold_zero_joins_exact_duplicates_only():
    rows = np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0 + 1e-6]])
    assert identity_clusters(rows, 0.0).tolist() == [0, 0, 1]


def test_large_norms_are_decided_exactly_where_float32_is_unsure():
    """Feature norms of ~16,000 make float32 squared distances err by tens; duplicates must still join."""
    rng = np.random.default_rng(1)
    rows = (rng.normal(size=(40, 256)) * 1000).astype(np.float32)
    rows = np.vstack([rows, rows[:10]])
    rows[-1, 0] = np.nextafter(rows[-1, 0], np.float32(np.inf))  # one ulp away from its original
    labels = identity_clusters(rows, 0.0, block_rows=16)
    assert labels[40:].tolist() == [*range(9), 40]
    assert identity_clusters(rows, 1e-3, block_rows=16)[40:].tolist() == list(range(10))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("block_rows", [1, 7, 64, 1024])
def test_blocks_match_brute_force(metric, block_rows):
    rows = _clustered(60, 4, 16, 0.6, seed=block_rows)
    threshold = _gap_threshold(rows, metric, 0.01)
    expected = _brute_clusters(rows, threshold, metric)
    assert 1 < expected.max() + 1 < len(rows)  # neither all apart nor all joined
    np.testing.assert_array_equal(identity_clusters(rows, threshold, metric, block_rows=block_rows), expected)


def test_float16_features_match_brute_force_on_their_values():
    rows = _clustered(40, 3, 512, 0.5, seed=3).astype(np.float16) + np.float16(20)
    threshold = _gap_threshold(rows, "euclidean", 0.005)
    np.testing.assert_array_equal(identity_clusters(rows, threshold, block_rows=32), _brute_clusters(rows, threshold, "euclidean"))


def test_dense_graphs_are_reduced_without_changing_components(monkeypatch):
    monkeypatch.setattr(leakage, "_EDGE_CAP", 0)
    rows = _clustered(8, 25, 4, 0.3, seed=5)
    threshold = _gap_threshold(rows, "euclidean", 0.1)
    np.testing.assert_array_equal(identity_clusters(rows, threshold, block_rows=16), _brute_clusters(rows, threshold, "euclidean"))


def test_cosine_ignores_scale_and_zero_rows_are_orthogonal_to_all():
    rows = np.array([[1.0, 0.0], [5.0, 0.0], [0.0, 2.0], [0.0, 0.0], [0.0, 0.0]])
    assert identity_clusters(rows, 1e-9, "cosine").tolist() == [0, 0, 1, 2, 3]
    assert identity_clusters(rows, 1.0, "cosine").tolist() == [0, 0, 0, 0, 0]


def test_empty_input_gives_no_labels():
    assert identity_clusters(np.empty((0, 5)), 0.4).tolist() == []


@settings(max_examples=60, deadline=None)
@given(
    rows=arrays(np.int8, st.tuples(st.integers(1, 25), st.integers(1, 4)), elements=st.integers(-3, 3)),
    threshold=st.sampled_from([0.0, 1.0, 1.5, 2.0, 3.0]),
    block_rows=st.integers(1, 9),
)
def test_integer_grids_match_brute_force(rows, threshold, block_rows):
    """Integer coordinates put many distances exactly on the threshold: <= must hold exactly."""
    np.testing.assert_array_equal(identity_clusters(rows, threshold, block_rows=block_rows), _brute_clusters(rows, threshold, "euclidean"))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("block_rows", [1, 5, 1024])
def test_nearest_distances_match_brute_force(metric, block_rows):
    rng = np.random.default_rng(block_rows)
    rows = rng.normal(size=(120, 10)) + 2
    query, reference = rng.random(120) < 0.3, rng.random(120) < 0.5
    query &= ~reference
    expected = _brute_distances(rows[query], rows[reference], metric).min(axis=1)
    got = nearest_distances(rows, query, reference, metric, block_rows=block_rows)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_nearest_distance_is_inf_without_reference_rows():
    rows = np.zeros((3, 2))
    assert nearest_distances(rows, np.array([True, False, True]), np.zeros(3, bool)).tolist() == [np.inf, np.inf]


def test_leakage_summary_counts_a_hand_built_split():
    faces = [  # position on a line, split, age
        (0.0, "train", 20), (10.0, "train", 30), (20.0, "train", 40), (40.0, "train", 60), (40.3, "train", 61),
        (30.0, "val", 50),
        (0.1, "test", 20),    # near a training face with its age
        (10.2, "test", 31),   # near a training face of another age
        (30.05, "test", 50),  # near a validation face only
        (50.0, "test", 20),   # far from everything
        (40.25, "test", 60),  # nearest training face is 61, but a 60 is within the threshold too
    ]
    rows = np.array([[x, 0.0] for x, _, _ in faces])
    summary = leakage_summary(rows, [s for _, s, _ in faces], [a for _, _, a in faces], threshold=0.4)
    assert json.loads(json.dumps(summary, allow_nan=False)) == summary
    assert summary["test_faces"] == 5
    assert summary["test_faces_with_near_train"] == 3
    assert summary["share_with_near_train"] == pytest.approx(0.6)
    assert summary["near_train_same_age"] == 2
    assert summary["median_nearest_train_distance"] == pytest.approx(0.2)


def test_leakage_summary_without_train_or_test_has_no_median():
    rows = np.zeros((2, 3))
    summary = leakage_summary(rows, ["val", "test"], [1, 1], threshold=0.4)
    assert summary["test_faces_with_near_train"] == 0 and summary["median_nearest_train_distance"] is None
    summary = leakage_summary(rows, ["train", "val"], [1, 1], threshold=0.4)
    assert summary["test_faces"] == 0 and summary["share_with_near_train"] is None


GOOD = np.zeros((3, 2))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: identity_clusters(np.zeros(4), 0.4), "2-D"),
        (lambda: identity_clusters(np.array([["a", "b"]]), 0.4), "numeric"),
        (lambda: identity_clusters(np.array([[0.0, 1.0], [np.nan, 0.0]]), 0.4), "row 1 has NaN or inf"),
        (lambda: identity_clusters(GOOD, -0.1), "threshold must be a finite number >= 0"),
        (lambda: identity_clusters(GOOD, float("nan")), "threshold must be a finite number >= 0"),
        (lambda: identity_clusters(GOOD, "0.4"), "threshold must be a number"),
        (lambda: identity_clusters(GOOD, 0.4, "manhattan"), "metric must be one of"),
        (lambda: identity_clusters(GOOD, 0.4, block_rows=0), "block_rows must be a positive integer"),
        (lambda: leakage_summary(GOOD, ["train", "holdout", "test"], [1, 2, 3], 0.4), "split values must be among"),
        (lambda: leakage_summary(GOOD, ["train", "test"], [1, 2, 3], 0.4), "split must have one entry per row"),
        (lambda: leakage_summary(GOOD, ["train", "val", "test"], [1, 2], 0.4), "ages must have one entry per row"),
    ],
)
def test_invalid_inputs_say_what_to_fix(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_clusters_as_identities_never_cross_splits():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(300, 8)) * 10
    rows[299] = rows[5] + 0.01                     # a planted duplicate
    step = np.eye(8)[0] * 0.5
    rows[298], rows[297] = rows[7] + step, rows[7] + 2 * step  # a chain: 7-298 and 298-297 within 0.6, 7-297 not
    ages = rng.integers(0, 90, 300)
    ages[299], ages[297] = ages[5], ages[7]
    labels = identity_clusters(rows, 0.6)
    assert labels[299] == labels[5] and labels[297] == labels[298] == labels[7]
    frame = pd.DataFrame({"age": ages, "identity": labels})
    split = assign_splits(frame, SplitPlan({"train": 0.7, "val": 0, "test": 0.3}, EDGES, seed=0))
    assert (split.groupby(frame["identity"]).nunique() == 1).all()
    assert split[299] == split[5] and split[297] == split[298] == split[7]
    assert set(split) == {"train", "test"}


def test_bounded_clusters_resplit_crowded_chains_but_keep_real_pairs():
    from stages.lib.splitting.leakage import bounded_clusters

    # a chain of 30 points 0.3 apart (single linkage joins them all at 0.4) and five tight pairs far away
    chain = np.column_stack([np.arange(30) * 0.3, np.zeros(30)])
    pairs = np.concatenate([[[100.0 * k, 50.0], [100.0 * k + 0.05, 50.0]] for k in range(1, 6)])
    points = np.concatenate([chain, pairs])
    plain = identity_clusters(points, 0.4)
    assert np.bincount(plain).max() == 30
    labels, resplit = bounded_clusters(points, 0.4, max_size=5)
    assert np.bincount(labels).max() <= 5 and resplit >= 1
    for k in range(5):  # the planted pairs are untouched
        assert labels[30 + 2 * k] == labels[31 + 2 * k]
    same, none = bounded_clusters(points, 0.4, max_size=30)
    np.testing.assert_array_equal(same, plain)
    assert none == 0
    with pytest.raises(ValueError, match="max_size must be at least 2"):
        bounded_clusters(points, 0.4, max_size=1)
