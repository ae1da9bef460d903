"""Label-structure metrics on an embedding: silhouette, cLISI and kNN label accuracy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import silhouette_score
from sklearn.neighbors import NearestNeighbors

from ._validation import (
    as_embedding,
    check_n_neighbors,
    check_same_length,
    embedding_and_labels,
    encode_labels,
    label_length,
    missing_mask,
    take_labels,
    warn_dropped,
)

__all__ = ["clisi", "clisi_per_cell", "knn_accuracy", "knn_transfer_accuracy", "silhouette"]

LabelLike = Sequence | np.ndarray | pd.Series


def neighbors_excluding_self(embedding: np.ndarray, n_neighbors: int, metric: str = "euclidean") -> np.ndarray:
    """Indices (cells x ``n_neighbors``) of each cell's nearest neighbours, the cell itself excluded.

    Exact search (scikit-learn). ``n_neighbors + 1`` neighbours are queried; the cell's own index is
    removed from its row, or, when exact duplicates hide it beyond the first ``n_neighbors + 1`` hits,
    the farthest hit is removed instead. Neighbours are ordered nearest first.
    """
    n_cells = embedding.shape[0]
    nn = NearestNeighbors(n_neighbors=n_neighbors + 1, metric=metric).fit(embedding)
    idx = nn.kneighbors(embedding, return_distance=False)
    is_self = idx == np.arange(n_cells)[:, None]
    # drop the self hit, or the last column when self is not among the hits
    drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), n_neighbors)
    keep = np.ones_like(idx, dtype=bool)
    keep[np.arange(n_cells), drop] = False
    return idx[keep].reshape(n_cells, n_neighbors)


def silhouette(
    embedding: np.ndarray,
    labels: LabelLike,
    *,
    metric: str = "cosine",
    sample_size: int | None = None,
    seed: int = 0,
) -> float:
    """Mean silhouette width of the true labels in the embedding (Rousseeuw, 1987).

    For cell ``i`` with label ``L_i``: ``a(i)`` is the mean distance to the other cells of ``L_i``,
    ``b(i)`` the smallest mean distance to the cells of any other label, and
    ``s(i) = (b(i) - a(i)) / max(a(i), b(i))`` (0 for a singleton class). Returns the mean of ``s(i)``
    over cells, in ``[-1, 1]``; higher means better separated classes. Default distance is cosine
    (``1 - cos angle``), as in the paper.

    Parameters
    ----------
    embedding
        Cells x dimensions.
    labels
        True label per cell. Unlabeled cells are dropped with a ``UserWarning``.
    metric
        Any metric accepted by :func:`sklearn.metrics.silhouette_score`.
    sample_size
        If given, compute on a random subset of this many cells (O(n^2) memory otherwise).
    seed
        Seed of that subset.

    Raises
    ------
    ValueError
        On mismatched lengths or fewer than two classes (or as many classes as cells).
    """
    emb, codes = embedding_and_labels(embedding, labels)
    n_classes = int(np.unique(codes).size)
    if n_classes >= emb.shape[0]:
        raise ValueError("Silhouette needs fewer classes than cells.")
    if sample_size is not None and sample_size >= emb.shape[0]:
        sample_size = None
    return float(silhouette_score(emb, codes, metric=metric, sample_size=sample_size, random_state=seed))


def clisi_per_cell(
    embedding: np.ndarray, labels: LabelLike, *, n_neighbors: int = 30, metric: str = "euclidean"
) -> np.ndarray:
    """Per-cell cLISI: inverse Simpson index of true labels among the cell's ``n_neighbors`` neighbours.

    ``cLISI(i) = 1 / sum_c p_ic^2`` where ``p_ic`` is the fraction of the ``k = n_neighbors`` nearest
    neighbours of cell ``i`` (exact search, ``metric`` distance) whose label is ``c``. **The cell itself
    is not counted** among its neighbours. Values lie in ``[1, min(k, C)]``: 1 when all neighbours share
    one label, ``C`` when the ``C`` labels are equally represented.

    Unlike Harmony's LISI (Korsunsky et al., 2019, used by the paper), which weights neighbours with a
    Gaussian kernel calibrated to a perplexity, this uses plain unweighted kNN proportions.

    Returns
    -------
    Array with one value per *labelled* cell (unlabeled cells are dropped with a ``UserWarning`` and
    also excluded as neighbours).
    """
    emb, codes = embedding_and_labels(embedding, labels)
    k = check_n_neighbors(n_neighbors, emb.shape[0])
    idx = neighbors_excluding_self(emb, k, metric)
    neighbor_codes = codes[idx]
    n_classes = int(codes.max()) + 1
    counts = np.zeros((emb.shape[0], n_classes), dtype=np.float64)
    np.add.at(counts, (np.repeat(np.arange(emb.shape[0]), k), neighbor_codes.ravel()), 1.0)
    p = counts / k
    return 1.0 / np.sum(p * p, axis=1)


def clisi(embedding: np.ndarray, labels: LabelLike, *, n_neighbors: int = 30, metric: str = "euclidean") -> float:
    """Mean over cells of :func:`clisi_per_cell` (lower is purer; 1 is perfect).

    ``cLISI = mean_i 1 / sum_c p_ic^2``, with ``p_ic`` the fraction of cell ``i``'s ``n_neighbors``
    nearest neighbours (itself excluded) with true label ``c``. Plain kNN proportions, not Harmony's
    perplexity-based Gaussian kernel used in the paper; values are therefore comparable within this
    package but not numerically identical to Harmony's ``compute_lisi``.
    """
    return float(np.mean(clisi_per_cell(embedding, labels, n_neighbors=n_neighbors, metric=metric)))


def _majority_vote(neighbor_codes: np.ndarray, n_classes: int) -> np.ndarray:
    """Most frequent code in each row; ties go to the tied label whose first occurrence is nearest."""
    n_rows, k = neighbor_codes.shape
    counts = np.zeros((n_rows, n_classes), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(n_rows), k), neighbor_codes.ravel()), 1)
    tied = counts == counts.max(axis=1, keepdims=True)
    rows = np.arange(n_rows)[:, None]
    first = np.argmax(tied[rows, neighbor_codes], axis=1)
    return neighbor_codes[np.arange(n_rows), first]


def knn_accuracy(
    embedding: np.ndarray, labels: LabelLike, *, n_neighbors: int = 15, metric: str = "euclidean"
) -> float:
    """Leave-one-out kNN label accuracy within one dataset.

    Each cell's label is predicted by an unweighted majority vote of its ``n_neighbors`` nearest
    neighbours, **the cell itself excluded**; ties go to the tied label of the nearest neighbour. Returns
    the fraction of cells predicted correctly, in ``[0, 1]``. Unlabeled cells are dropped (with a
    ``UserWarning``) both as queries and as voters.
    """
    emb, codes = embedding_and_labels(embedding, labels)
    k = check_n_neighbors(n_neighbors, emb.shape[0])
    idx = neighbors_excluding_self(emb, k, metric)
    pred = _majority_vote(codes[idx], int(codes.max()) + 1)
    return float(np.mean(pred == codes))


def knn_transfer_accuracy(
    ref_embedding: np.ndarray,
    ref_labels: LabelLike,
    query_embedding: np.ndarray,
    query_labels: LabelLike,
    *,
    n_neighbors: int = 15,
    metric: str = "euclidean",
) -> float:
    """Reference -> query kNN label transfer accuracy.

    Each query cell gets the majority label of its ``n_neighbors`` nearest *reference* cells (unweighted
    vote; ties go to the tied label of the nearest neighbour); returns the fraction of query cells whose
    prediction equals their true label. Labels are compared by value, so both label arrays must use the
    same vocabulary; a query class absent from the reference can never be predicted and counts as an
    error. Both embeddings must live in the same space (same number of dimensions).

    Unlabeled reference cells are dropped (``UserWarning``); unlabeled query cells are dropped
    (``UserWarning``) and not scored. The reference must keep at least two classes.
    """
    ref = as_embedding(ref_embedding, "ref_embedding")
    query = as_embedding(query_embedding, "query_embedding")
    if ref.shape[1] != query.shape[1]:
        raise ValueError(f"Reference and query embeddings differ in dimension ({ref.shape[1]} vs {query.shape[1]}).")
    check_same_length(ref.shape[0], label_length(ref_labels), "ref_labels", against="ref_embedding")
    check_same_length(query.shape[0], label_length(query_labels), "query_labels", against="query_embedding")
    ref_keep = ~missing_mask(ref_labels, "ref_labels")
    query_keep = ~missing_mask(query_labels, "query_labels")
    warn_dropped(int((~ref_keep).sum()), ref.shape[0], "reference cells", stacklevel=3)
    warn_dropped(int((~query_keep).sum()), query.shape[0], "query cells", stacklevel=3)
    if not ref_keep.any() or not query_keep.any():
        raise ValueError("No labelled reference or query cells left.")
    ref_values = np.asarray(take_labels(ref_labels, ref_keep), dtype=object)
    query_values = np.asarray(take_labels(query_labels, query_keep), dtype=object)
    codes = encode_labels(np.concatenate([ref_values, query_values]))
    ref_codes, query_codes = codes[: ref_values.size], codes[ref_values.size :]
    if np.unique(ref_codes).size < 2:
        raise ValueError("`ref_labels` must contain at least two distinct classes.")
    ref, query = ref[ref_keep], query[query_keep]
    k = int(n_neighbors)
    if k < 1 or k > ref.shape[0]:
        raise ValueError(f"`n_neighbors` must be in [1, {ref.shape[0]}] (labelled reference cells), got {k}.")
    nn = NearestNeighbors(n_neighbors=k, metric=metric).fit(ref)
    idx = nn.kneighbors(query, return_distance=False)
    pred = _majority_vote(ref_codes[idx], int(codes.max()) + 1)
    return float(np.mean(pred == query_codes))
