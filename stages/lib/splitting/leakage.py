"""Identity leakage between splits of datasets without identity labels, measured on face embeddings.

UTKFace and FairFace say nothing about who is in a photo, so a random split puts the same person,
often the same photo session, on both sides, and a model is then partly tested on faces it trained
on. With dlib's 128-d embeddings and a random 70/30 split, a fifth of the test faces have a training
face within Euclidean distance 0.4, and about half of those share its exact age label.

`identity_clusters` groups faces into putative identities: single linkage, i.e. the connected
components of the graph joining every two rows within `threshold`. Single linkage is what a split
needs: if a is near b and b near c, all three must land on one side, even when a and c are far
apart. The `identity` column of `stages.lib.splitting.split` takes these labels, so `assign_splits` keeps each
cluster on one side. `leakage_summary` measures what a split leaks.

The threshold is in the embedding's own units: dlib calls two faces the same person below 0.6
Euclidean, and 0.4 catches near-duplicates (the same photo, or the same session). Cosine distance
is 1 - cosine similarity; a row of zero norm has no direction and is taken as orthogonal to every
row (distance 1, to itself and to other zero rows as well).

Nothing here holds an N x N matrix: distances are computed for blocks of rows at a time in float32
(float16 features are converted one block at a time), pairs whose float32 distance is within
rounding error of the threshold are decided again in float64, and the edges of the graph are kept
sparse. Pure functions on arrays; no file I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from stages.lib.splitting.split import SPLITS

METRICS = ("euclidean", "cosine")
BLOCK_ROWS = 1024
_UNIT = float(np.finfo(np.float32).eps) / 2  # float32 unit roundoff
_EXACT_BYTES = 1 << 26  # float64 working memory for the pairs re-checked exactly
_EDGE_CAP = 1 << 22  # pending edges beyond max(this, 4 N) are reduced to a spanning forest


@dataclass(frozen=True)
class _Space:
    """The rows and what block-wise distances need: column means (Euclidean: centring keeps float32
    sums small) or float64 row norms (cosine)."""

    data: np.ndarray
    metric: str
    center: np.ndarray
    norms: np.ndarray

    def rows(self, index) -> tuple[np.ndarray, np.ndarray]:
        """Rows `index` in float32, centred (Euclidean) or unit length (cosine), and their squared norms."""
        block = self.data[index].astype(np.float32)
        if self.metric == "euclidean":
            block -= self.center
        else:
            norms = self.norms[index].astype(np.float32)[:, None]
            block = np.divide(block, norms, out=np.zeros_like(block), where=norms > 0)
        return block, np.einsum("ij,ij->i", block, block)

    def approx(self, a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Float32 squared Euclidean / cosine distances between two prepared blocks, and a bound on
        their rounding error."""
        (rows_a, sq_a), (rows_b, sq_b) = a, b
        gram = rows_a @ rows_b.T
        bound = 4 * (self.data.shape[1] + 2) * _UNIT
        if self.metric == "euclidean":
            total = sq_a[:, None] + sq_b[None, :]
            return total - 2 * gram, bound * total
        return 1 - gram, np.float32(bound)

    def exact(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Float64 distances between rows i[k] and j[k], computed a chunk of pairs at a time."""
        chunk = max(1, _EXACT_BYTES // (16 * max(1, self.data.shape[1])))
        parts = [self._exact(i[s:s + chunk], j[s:s + chunk]) for s in range(0, len(i), chunk)]
        return np.concatenate(parts) if parts else np.empty(0)

    def _exact(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        a, b = self.data[i].astype(np.float64), self.data[j].astype(np.float64)
        if self.metric == "euclidean":
            return np.sqrt(((a - b) ** 2).sum(axis=1))
        denom = self.norms[i] * self.norms[j]
        similarity = np.divide((a * b).sum(axis=1), denom, out=np.zeros(len(i)), where=denom > 0)
        return 1 - np.clip(similarity, -1, 1)

    def limit(self, threshold: float) -> float:
        """The threshold on the scale `approx` works in (squared for Euclidean)."""
        return threshold ** 2 if self.metric == "euclidean" else threshold


def _check_embeddings(embeddings) -> np.ndarray:
    data = np.asarray(embeddings)
    if data.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array (one row per face), got shape {data.shape}")
    if data.dtype.kind not in "fiu":
        raise ValueError(f"embeddings must be numeric, got dtype {data.dtype}")
    for start in range(0, len(data), BLOCK_ROWS):
        bad = ~np.isfinite(data[start:start + BLOCK_ROWS]).all(axis=1)
        if bad.any():
            raise ValueError(f"embeddings must be finite: row {start + int(np.argmax(bad))} has NaN or inf; drop or repair it")
    return data


def _check_block_rows(block_rows: int) -> int:
    if isinstance(block_rows, bool) or not isinstance(block_rows, (int, np.integer)) or block_rows < 1:
        raise ValueError(f"block_rows must be a positive integer, got {block_rows!r}")
    return int(block_rows)


def _check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)):
        raise ValueError(f"threshold must be a number, got {threshold!r}")
    if not (np.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"threshold must be a finite number >= 0 (in the embedding's units), got {threshold!r}")
    return float(threshold)


def _space(embeddings, metric: str) -> _Space:
    """Validated rows with the column means or row norms their metric needs."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    data = _check_embeddings(embeddings)
    blocks = (data[s:s + BLOCK_ROWS].astype(np.float64) for s in range(0, len(data), BLOCK_ROWS))
    if metric == "euclidean":
        total = sum((block.sum(axis=0) for block in blocks), np.zeros(data.shape[1]))
        center = (total / max(1, len(data))).astype(np.float32)
        return _Space(data, metric, center, np.empty(0))
    norms = np.concatenate([np.empty(0), *(np.linalg.norm(block, axis=1) for block in blocks)])
    return _Space(data, metric, np.empty(0, np.float32), norms)


def _close_pairs(space: _Space, threshold: float, start: int, other: int, *, block_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i < j) within `threshold` with i in the row block at `start` and j in the one at `other`."""
    a = space.rows(slice(start, start + block_rows))
    b = a if other == start else space.rows(slice(other, other + block_rows))
    approx, error = space.approx(a, b)
    error = np.broadcast_to(error, approx.shape)
    limit = space.limit(threshold)
    i, j = np.nonzero(approx <= limit + error)
    keep = j + other > i + start
    i, j = i[keep], j[keep]
    unsure = approx[i, j] > limit - error[i, j]
    i, j = i + start, j + other
    unsure[unsure] = space.exact(i[unsure], j[unsure]) > threshold
    return i[~unsure], j[~unsure]


def _components(n: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _spanning_edges(n: int, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most n edges with the same components: each row joined to its component's first row."""
    labels = _components(n, rows, cols)
    first = np.unique(labels, return_index=True)[1][labels]
    moved = first != np.arange(n)
    return np.flatnonzero(moved), first[moved]


def _first_appearance(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0..K-1 in the order each first appears."""
    first = np.unique(labels, return_index=True)[1]
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[labels]


def identity_clusters(embeddings: np.ndarray, threshold: float, metric: str = "euclidean", *, block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """A putative identity per row (int64, 0..K-1 in order of first appearance): the connected
    components of the graph joining rows at distance <= `threshold` (single linkage, so chains join).

    threshold: in the embedding's own units (dlib: 0.6 Euclidean for the same person, 0.4 for
    near-duplicates). metric: "euclidean" or "cosine" (1 - cosine similarity; a zero row is at 1
    from every row). Distances are computed `block_rows` rows at a time; memory stays O(N + edges).
    """
    space = _space(embeddings, metric)
    threshold = _check_threshold(threshold)
    block_rows = _check_block_rows(block_rows)
    n = len(space.data)
    cap = max(4 * n, _EDGE_CAP)
    rows, cols, pending = [np.empty(0, np.int64)], [np.empty(0, np.int64)], 0
    for start in range(0, n, block_rows):
        for other in range(start, n, block_rows):
            i, j = _close_pairs(space, threshold, start, other, block_rows=block_rows)
            rows.append(i)
            cols.append(j)
            pending += len(i)
        if pending > cap:
            kept_rows, kept_cols = _spanning_edges(n, np.concatenate(rows), np.concatenate(cols))
            rows, cols, pending = [kept_rows], [kept_cols], len(kept_rows)
    labels = _components(n, np.concatenate(rows), np.concatenate(cols))
    return _first_appearance(labels).astype(np.int64)


def bounded_clusters(embeddings: np.ndarray, threshold: float, max_size: int, metric: str = "euclidean", *,
                     shrink: float = 0.8, block_rows: int = BLOCK_ROWS) -> tuple[np.ndarray, int]:
    """`identity_clusters`, with every cluster larger than `max_size` clustered again at `shrink` times
    the threshold, and so on, until each fits (or the threshold falls below 1e-6 of the original).

    Why: single linkage chains. Where an embedding crowds faces together (measured with dlib on
    UTKFace: babies and many East Asian faces, 81% of babies within 0.4 of another face) the components
    grow to hundreds of faces that cannot be one person; kept whole, they would put most of a group
    on one side of the split. A crowded region is re-split at a tighter threshold instead.
    Returns the labels (int64, 0..K-1 in order of first appearance) and how many clusters were re-split.
    """
    if max_size < 2:
        raise ValueError(f"max_size must be at least 2 (faces per identity cluster), got {max_size}")
    labels = identity_clusters(embeddings, threshold, metric, block_rows=block_rows)
    data, resplit, next_label = np.asarray(embeddings), 0, int(labels.max(initial=-1)) + 1
    pending = [(label, threshold) for label, size in enumerate(np.bincount(labels)) if size > max_size]
    while pending:
        label, cut = pending.pop()
        members = np.flatnonzero(labels == label)
        tighter = cut * shrink
        if tighter < threshold * 1e-6:
            continue
        resplit += 1
        inner = identity_clusters(data[members], tighter, metric, block_rows=block_rows)
        labels[members] = np.where(inner == 0, label, next_label + inner - 1)
        for part, size in enumerate(np.bincount(inner)):
            if size > max_size:
                pending.append((label if part == 0 else next_label + part - 1, tighter))
        next_label += int(inner.max())
    return _first_appearance(labels).astype(np.int64), resplit


def _nearest(space: _Space, queries: np.ndarray, references: np.ndarray, block_rows: int) -> np.ndarray:
    """For each query row, the float64 distance to the reference row found nearest in float32."""
    out = np.full(len(queries), np.inf)
    if not len(references):
        return out
    for start in range(0, len(queries), block_rows):
        query = queries[start:start + block_rows]
        a = space.rows(query)
        best = np.full(len(query), np.inf, dtype=np.float32)
        best_row = np.zeros(len(query), dtype=np.int64)
        for other in range(0, len(references), block_rows):
            reference = references[other:other + block_rows]
            approx = space.approx(a, space.rows(reference))[0]
            column = approx.argmin(axis=1)
            value = approx[np.arange(len(query)), column]
            better = value < best
            best[better], best_row[better] = value[better], reference[column[better]]
        out[start:start + len(query)] = space.exact(query, best_row)
    return out


def _check_split(split, n: int) -> np.ndarray:
    split = np.asarray(split, dtype=object)
    if split.shape != (n,):
        raise ValueError(f"split must have one entry per row ({n}), got shape {split.shape}")
    unknown = sorted({str(value) for value in split} - set(SPLITS))
    if unknown:
        raise ValueError(f"split values must be among {SPLITS}, got {unknown}")
    return split


def _same_age_near(space: _Space, test: np.ndarray, train: np.ndarray, ages: np.ndarray, *, threshold: float, block_rows: int) -> int:
    """Test faces with a training face of the exact same age label within `threshold`."""
    count = 0
    for age in np.unique(ages[test]):
        query, reference = test & (ages == age), train & (ages == age)
        distances = _nearest(space, np.flatnonzero(query), np.flatnonzero(reference), block_rows)
        count += int((distances <= threshold).sum())
    return count


def leakage_summary(embeddings: np.ndarray, split, ages, threshold: float, *, metric: str = "euclidean",
                    block_rows: int = BLOCK_ROWS) -> dict:
    """How much of the test split has a near copy in train, as JSON-ready plain Python types.

    test_faces; test_faces_with_near_train (a training face within `threshold`) and its share;
    near_train_same_age: test faces with a training face within `threshold` carrying the exact same
    age label (a model can recall the label instead of estimating it); the median distance from a
    test face to its nearest training face. Shares and the median are None where undefined.
    """
    space = _space(embeddings, metric)
    threshold = _check_threshold(threshold)
    block_rows = _check_block_rows(block_rows)
    n = len(space.data)
    split = _check_split(split, n)
    ages = np.asarray(ages)
    if ages.shape != (n,):
        raise ValueError(f"ages must have one entry per row ({n}), got shape {ages.shape}")
    test, train = split == "test", split == "train"
    distances = _nearest(space, np.flatnonzero(test), np.flatnonzero(train), block_rows)
    near = int((distances <= threshold).sum())
    return {
        "metric": metric,
        "threshold": threshold,
        "test_faces": len(distances),
        "test_faces_with_near_train": near,
        "share_with_near_train": near / len(distances) if len(distances) else None,
        "near_train_same_age": _same_age_near(space, test, train, ages, threshold=threshold, block_rows=block_rows),
        "median_nearest_train_distance": float(np.median(distances)) if len(distances) and train.any() else None,
    }
