"""Confidence sets: cluster confidence, credible sets, conformal label sets, calibration error.

A DICE posterior sample is a plausible clean latent state of a cell. Where a cell's samples land (which
cluster, which reference label) turns the spread of the posterior into a probability over discrete
outcomes; the smallest set of outcomes holding ``1 - alpha`` of that probability is the cell's credible
set (the paper's "confidence set", section 4 and Figure 2).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from .._validation import DiceInputError

__all__ = [
    "class_thresholds",
    "cluster_confidence",
    "conformal_threshold",
    "credible_sets",
    "label_sets",
    "set_strings",
]


def credible_sets(probabilities: np.ndarray, alpha: float) -> np.ndarray:
    """Smallest set of outcomes whose probabilities add up to at least ``1 - alpha``, per row.

    Parameters
    ----------
    probabilities
        Cells x outcomes, rows summing to 1 (rows summing to less are treated as they are: the set then
        holds every outcome with positive probability when ``1 - alpha`` cannot be reached).
    alpha
        Miscoverage level in (0, 1).

    Returns
    -------
    Boolean mask, cells x outcomes. Outcomes enter in decreasing probability (ties: lower column first);
    the set stops at the first outcome at which the cumulative probability reaches ``1 - alpha``.
    """
    _check_alpha(alpha)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    order = np.argsort(-probabilities, axis=1, kind="stable")
    sorted_p = np.take_along_axis(probabilities, order, axis=1)
    before = np.cumsum(sorted_p, axis=1) - sorted_p  # mass of the outcomes ranked above
    keep_sorted = (before < 1.0 - alpha - 1e-12) & (sorted_p > 0)
    keep_sorted[:, 0] = True  # never an empty credible set
    mask = np.zeros_like(keep_sorted)
    np.put_along_axis(mask, order, keep_sorted, axis=1)
    return mask


def conformal_threshold(true_probabilities: np.ndarray, alpha: float) -> float:
    """Split-conformal threshold: ``P(p_true < threshold) <= alpha`` on the calibration cells, at most 0.5.

    A label with most of the probability always belongs to the set: without errors among the calibration
    cells the threshold is ~1, and any shift would empty every set. Lowering it keeps coverage >= 1 - alpha.
    """
    rank = _conformal_rank(len(true_probabilities), alpha)
    threshold = float(np.sort(true_probabilities)[rank - 1]) if rank >= 1 else 0.0
    return min(threshold, 0.5)


def _conformal_rank(n_cells: int, alpha: float) -> int:
    """Rank of the split-conformal threshold among ``n_cells`` sorted calibration scores (0: none fits)."""
    return int(np.floor(alpha * (n_cells + 1)))


def class_thresholds(true_p: np.ndarray, codes: np.ndarray, n_classes: int, alpha: float, pooled: float):
    """Label-conditional (Mondrian) split-conformal thresholds, each no higher than the ``pooled`` one.

    Each label's threshold comes from its own held-out cells, so it belongs to the set of at least
    ``1 - alpha`` of its own cells, a rare label that the classifier confuses with a common one included
    (the pooled threshold guarantees this only on average over the cells, which a rare label hardly moves).
    Taking the lower of it and the pooled one makes the sets contain the pooled sets: a label whose own
    threshold rests on a few cells cannot lose the pooled coverage (BENCHMARKS.md section 5 measures both
    versions). A label with fewer than ``1 / alpha - 1`` held-out cells cannot set its own (it would be
    0, the label in every set) and takes the ``pooled`` one.
    """
    out = np.full(n_classes, pooled)
    for c in range(n_classes):
        own = true_p[codes == c]
        if _conformal_rank(len(own), alpha) >= 1:
            out[c] = min(conformal_threshold(own, alpha), pooled)
    return out


def label_sets(probabilities: np.ndarray, thresholds: np.ndarray, n_classes: int, method: str, alpha: float):
    """Bool mask of each cell's label set (columns as ``probabilities``): the labels at or above their
    threshold (one per label), or with ``method="credible"`` the smallest set holding ``1 - alpha``."""
    if method == "credible":
        return credible_sets(probabilities, alpha)
    mask = np.zeros(probabilities.shape, dtype=bool)
    mask[:, :n_classes] = probabilities[:, :n_classes] >= thresholds[None, :] - 1e-9  # float ties
    return mask


def set_strings(mask: np.ndarray, probabilities: np.ndarray, names, *, empty: str = "unassigned") -> np.ndarray:
    """``"a|b"`` strings of the outcomes in each set, most probable first; ``empty`` for an empty set."""
    names = np.asarray(names).astype(str)
    order = np.argsort(-np.asarray(probabilities), axis=1, kind="stable")
    out = []
    for row_mask, row_order in zip(mask, order, strict=True):
        members = [names[j] for j in row_order if row_mask[j]]
        out.append("|".join(members) if members else empty)
    return np.asarray(out, dtype=object)


def _check_alpha(alpha: float) -> None:
    if not 0.0 < float(alpha) < 1.0:
        raise DiceInputError(f"alpha must lie strictly between 0 and 1, got {alpha}.")


def knn_votes(
    points: np.ndarray,
    index: np.ndarray,
    codes: np.ndarray,
    n_classes: int,
    n_neighbors: int,
    exclude: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Label vote fractions of each point's ``n_neighbors`` nearest index points (Euclidean).

    ``exclude[i]`` (an index row, or -1) is left out of point ``i``'s neighbours (leave-one-out). Votes
    are weighted ``1 + 1e-3 (k - rank) / k`` so that ties go to the nearer neighbours. Returns the
    fractions (points x classes) and the mean distance to the neighbours used.
    """
    from sklearn.neighbors import NearestNeighbors

    k = int(min(n_neighbors, len(index) - (exclude is not None)))
    extra = 1 if exclude is not None else 0
    nn = NearestNeighbors(n_neighbors=k + extra).fit(index)
    distances, neighbours = nn.kneighbors(points)
    if exclude is not None:
        drop = neighbours == np.asarray(exclude)[:, None]
        drop[~drop.any(axis=1), -1] = True  # excluded point not among them: drop the farthest instead
        keep = ~drop
        neighbours = neighbours[keep].reshape(len(points), k)
        distances = distances[keep].reshape(len(points), k)
    weights = 1.0 + 1e-3 * (k - np.arange(k)) / k
    votes = np.zeros((len(points), n_classes))
    rows = np.repeat(np.arange(len(points)), k)
    np.add.at(votes, (rows, codes[neighbours].ravel()), np.tile(weights, len(points)))
    return votes / votes.sum(axis=1, keepdims=True), distances.mean(axis=1)


def cluster_confidence(
    adata: AnnData,
    *,
    cluster_key: str = "leiden",
    alpha: float = 0.1,
    key_added: str = "dice",
    n_neighbors: int = 15,
    copy: bool = False,
) -> AnnData | None:
    """How firmly each cell belongs to its cluster, from where its posterior samples land.

    Every posterior sample of a cell is assigned to the cluster holding the majority of its
    ``n_neighbors`` nearest posterior means (``obsm[embedding_key]``, the embedding that was clustered),
    leaving the cell itself out. A kNN vote, rather than the nearest centroid, follows the shape of
    graph-based (Leiden/Louvain) clusters, which need not be convex. The fraction of a cell's samples per
    cluster estimates the posterior probability that the cell belongs there.

    Parameters
    ----------
    adata
        Denoised with ``dice.tl.denoise(adata, store_samples=True)`` and clustered (``obs[cluster_key]``).
        Not modified on error.
    cluster_key
        Column of ``obs`` with the clusters.
    alpha
        The credible set holds at least ``1 - alpha`` of the samples.
    key_added
        The prefix of :func:`dice.tl.denoise`'s run (reads ``obsm[f"X_{key_added}_samples"]`` and
        ``obsm[f"X_{key_added}"]``) and of the keys written.
    n_neighbors
        Neighbours in the vote.
    copy
        Return a new AnnData instead of writing into ``adata``.

    Returns
    -------
    ``None`` or, with ``copy=True``, the new AnnData. Writes ``obs[f"{key_added}_cluster_confidence"]``
    (fraction of samples in the cell's own cluster), ``obs[f"{key_added}_cluster_set"]`` (smallest set of
    clusters holding at least ``1 - alpha`` of the samples, most frequent first, e.g. ``"3|5"``),
    ``obs[f"{key_added}_cluster_set_size"]``, ``obsm[f"{key_added}_cluster_probabilities"]`` (DataFrame,
    cells x clusters) and ``uns[f"{key_added}_cluster_confidence"]`` (the parameters).
    """
    _check_alpha(alpha)
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, int) or n_neighbors < 1:
        raise DiceInputError(f"n_neighbors must be a positive integer, got {n_neighbors!r}.")
    samples_key, embedding_key = f"X_{key_added}_samples", f"X_{key_added}"
    if samples_key not in adata.obsm:
        raise DiceInputError(
            f"obsm[{samples_key!r}] not found: cluster confidence needs the posterior samples. Run "
            f"`dice.tl.denoise(adata, store_samples=True, key_added={key_added!r})` first."
        )
    if embedding_key not in adata.obsm:
        raise DiceInputError(f"obsm[{embedding_key!r}] (posterior means) not found; run dice.tl.denoise first.")
    if cluster_key not in adata.obs:
        raise DiceInputError(
            f"obs[{cluster_key!r}] not found. Cluster the embedding first, e.g. "
            f"`sc.pp.neighbors(adata, use_rep={embedding_key!r}); sc.tl.leiden(adata)`."
        )
    samples = np.asarray(adata.obsm[samples_key], dtype=np.float64)
    means = np.asarray(adata.obsm[embedding_key], dtype=np.float64)
    if samples.ndim != 3 or samples.shape[0] != adata.n_obs or samples.shape[2] != means.shape[1]:
        raise DiceInputError(f"obsm[{samples_key!r}] must be cells x samples x {means.shape[1]}, got {samples.shape}.")
    clusters = adata.obs[cluster_key]
    if clusters.isna().any():
        raise DiceInputError(f"obs[{cluster_key!r}] has missing values.")
    names, codes = np.unique(clusters.astype(str).to_numpy(), return_inverse=True)
    if len(names) < 2 or adata.n_obs < 3:
        raise DiceInputError("cluster confidence needs at least 2 clusters and 3 cells.")

    n_cells, n_samples, _ = samples.shape
    flat = samples.reshape(n_cells * n_samples, -1)
    owner = np.repeat(np.arange(n_cells), n_samples)
    votes, _ = knn_votes(flat, means, codes, len(names), n_neighbors, exclude=owner)
    assigned = votes.argmax(axis=1).reshape(n_cells, n_samples)
    probabilities = np.zeros((n_cells, len(names)))
    np.add.at(probabilities, (np.repeat(np.arange(n_cells), n_samples), assigned.ravel()), 1.0 / n_samples)
    mask = credible_sets(probabilities, alpha)

    target = adata.copy() if copy else adata
    target.obs[f"{key_added}_cluster_confidence"] = probabilities[np.arange(n_cells), codes].astype(np.float32)
    target.obs[f"{key_added}_cluster_set"] = set_strings(mask, probabilities, names)
    target.obs[f"{key_added}_cluster_set_size"] = mask.sum(axis=1).astype(np.int64)
    target.obsm[f"{key_added}_cluster_probabilities"] = pd.DataFrame(
        probabilities, index=target.obs_names, columns=names
    )
    target.uns[f"{key_added}_cluster_confidence"] = {
        "params": {"cluster_key": cluster_key, "alpha": float(alpha), "n_neighbors": int(n_neighbors)},
        "n_samples": int(n_samples),
        "assignment": "majority of the n_neighbors nearest posterior means (the cell itself left out)",
    }
    return target if copy else None
