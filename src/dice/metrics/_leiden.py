"""Leiden clustering of an embedding over a resolution grid, scored against true labels."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

from ._partition import partition_scores
from ._validation import check_n_neighbors, embedding_and_labels

__all__ = ["DEFAULT_RESOLUTIONS", "LeidenSweepResult", "leiden_sweep"]

#: Default Leiden resolution grid: 15 geometrically spaced values from 0.05 to 2.0.
DEFAULT_RESOLUTIONS: tuple[float, ...] = tuple(float(r) for r in np.round(np.geomspace(0.05, 2.0, 15), 3))

#: Scores within this tolerance of the best are treated as ties by the selection rules.
_TIE_TOL = 1e-9

#: Names of the three selection rules, in the order used for flat keys.
RULES: tuple[str, ...] = ("oracle", "count", "stable")


@dataclass(frozen=True)
class LeidenSweepResult:
    """Outcome of :func:`leiden_sweep`.

    Attributes
    ----------
    resolutions
        The resolution grid, ascending.
    n_clusters
        Number of Leiden clusters at each resolution (clustering with ``seed``).
    ari, nmi, v_measure
        Agreement of that clustering with the true labels (NMI arithmetic, so equal to V-measure).
    seed_agreement
        ARI between the Leiden clusterings with ``seed`` and ``seed + 1`` at the same resolution
        (NaN when ``seed_check=False``).
    neighbor_agreement
        Mean ARI between the clustering at a resolution and those at the adjacent grid resolutions.
    stability
        Mean of ``seed_agreement`` and ``neighbor_agreement`` (whichever are available).
    clusterings
        Integer cluster codes, resolutions x cells (clustering with ``seed``; labelled cells only).
    n_classes
        Number of true classes.
    oracle_index, count_index, stable_index
        Grid index chosen by each rule (see :func:`leiden_sweep`).
    """

    resolutions: np.ndarray
    n_clusters: np.ndarray
    ari: np.ndarray
    nmi: np.ndarray
    v_measure: np.ndarray
    seed_agreement: np.ndarray
    neighbor_agreement: np.ndarray
    stability: np.ndarray
    clusterings: np.ndarray = field(repr=False)
    n_classes: int
    oracle_index: int
    count_index: int
    stable_index: int

    def choice(self, rule: str) -> dict[str, float]:
        """Resolution, cluster count and scores of the clustering picked by ``rule``.

        ``rule`` is ``"oracle"`` (best ARI), ``"count"`` (cluster count closest to the class count) or
        ``"stable"`` (most stable clustering).
        """
        index = {"oracle": self.oracle_index, "count": self.count_index, "stable": self.stable_index}
        if rule not in index:
            raise ValueError(f"Unknown rule {rule!r}; expected one of {RULES}.")
        i = index[rule]
        return {
            "ari": float(self.ari[i]),
            "nmi": float(self.nmi[i]),
            "v_measure": float(self.v_measure[i]),
            "resolution": float(self.resolutions[i]),
            "n_clusters": float(self.n_clusters[i]),
        }

    @property
    def oracle(self) -> dict[str, float]:
        """The best-ARI clustering (the paper's protocol; uses the labels to choose)."""
        return self.choice("oracle")

    @property
    def count(self) -> dict[str, float]:
        """The clustering whose cluster count is closest to the number of true classes."""
        return self.choice("count")

    @property
    def stable(self) -> dict[str, float]:
        """The most stable clustering (fully label-free choice)."""
        return self.choice("stable")

    def summary(self, prefix: str = "leiden_") -> dict[str, float]:
        """Flat dict ``{prefix}{rule}_{metric}`` for rule in oracle/count/stable and metric in
        ari/nmi/v_measure/resolution/n_clusters."""
        out: dict[str, float] = {}
        for rule in RULES:
            for key, value in self.choice(rule).items():
                out[f"{prefix}{rule}_{key}"] = value
        return out

    def to_frame(self) -> pd.DataFrame:
        """One row per resolution with cluster count, scores and stability terms."""
        return pd.DataFrame(
            {
                "resolution": self.resolutions,
                "n_clusters": self.n_clusters,
                "ari": self.ari,
                "nmi": self.nmi,
                "v_measure": self.v_measure,
                "seed_agreement": self.seed_agreement,
                "neighbor_agreement": self.neighbor_agreement,
                "stability": self.stability,
            }
        )


def _knn_graph(embedding: np.ndarray, n_neighbors: int, seed: int):
    import anndata as ad
    import scanpy as sc

    adata = ad.AnnData(obsm={"X_emb": embedding})
    sc.pp.neighbors(adata, use_rep="X_emb", n_neighbors=n_neighbors, random_state=seed)
    return adata


def _leiden_codes(adata, resolution: float, seed: int) -> np.ndarray:
    import scanpy as sc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        sc.tl.leiden(
            adata,
            resolution=resolution,
            flavor="igraph",
            n_iterations=2,
            directed=False,
            random_state=seed,
            key_added="_leiden",
        )
    return adata.obs["_leiden"].cat.codes.to_numpy(dtype=np.int64)


def _middle_of(indices: np.ndarray) -> int:
    """Lower median of a sorted index set (centre of a plateau of equally good resolutions)."""
    return int(indices[(indices.size - 1) // 2])


def leiden_sweep(
    embedding: np.ndarray,
    labels: Sequence | np.ndarray | pd.Series,
    *,
    resolutions: Sequence[float] = DEFAULT_RESOLUTIONS,
    n_neighbors: int = 15,
    seed: int = 0,
    seed_check: bool = True,
) -> LeidenSweepResult:
    """Cluster the embedding with Leiden over a resolution grid and score each clustering.

    One neighbour graph is built on the embedding itself (``sc.pp.neighbors(use_rep=..., n_neighbors=15)``
    on a throwaway AnnData; scanpy counts the cell itself among the ``n_neighbors``, UMAP connectivities)
    and reused for every resolution. Leiden is ``sc.tl.leiden(flavor="igraph", n_iterations=2,
    directed=False, random_state=seed)``. Each clustering is scored against the labels with ARI,
    arithmetic NMI and V-measure, and three clusterings are selected:

    ``oracle``
        Highest ARI (ties: smallest resolution). This is the paper's protocol; it uses the labels to
        choose, so it is an optimistic upper bound.
    ``count``
        Cluster count closest to the number of true classes ``C``; ties broken by higher ``stability``,
        then smaller resolution. Uses only ``C`` from the labels.
    ``stable``
        Fully label-free. ``stability(r) = mean(seed_agreement(r), neighbor_agreement(r))`` where
        ``seed_agreement`` is the ARI between Leiden runs with ``seed`` and ``seed + 1`` at ``r``, and
        ``neighbor_agreement`` the mean ARI between the clustering at ``r`` and those at the adjacent grid
        resolutions. Among resolutions giving at least two clusters, the highest stability wins; ties
        (a plateau) are broken by the middle one of the tied resolutions. Stability-based selection tends
        to prefer coarse clusterings when the data have a strong coarse split.

    Parameters
    ----------
    embedding
        Cells x dimensions.
    labels
        True label per cell; unlabeled cells are dropped (``UserWarning``) before building the graph.
    resolutions
        Leiden resolutions to try (sorted ascending internally; duplicates removed).
    n_neighbors
        Size of the kNN graph (scanpy convention, self included).
    seed
        Random state for the neighbour search and Leiden; ``seed + 1`` is the stability replicate.
    seed_check
        Run the second Leiden seed per resolution (doubles the Leiden cost; graph is shared). Without it
        stability uses neighbouring resolutions only.

    Returns
    -------
    :class:`LeidenSweepResult`; ``result.summary()`` gives flat ``leiden_{rule}_{metric}`` keys.
    """
    emb, codes = embedding_and_labels(embedding, labels)
    check_n_neighbors(n_neighbors, emb.shape[0] + 1)
    grid = np.unique(np.asarray(resolutions, dtype=np.float64))
    if grid.size == 0 or np.any(grid <= 0):
        raise ValueError("`resolutions` must be a non-empty sequence of positive numbers.")
    n_classes = int(np.unique(codes).size)

    adata = _knn_graph(emb, n_neighbors, seed)
    n_res = grid.size
    clusterings = np.empty((n_res, emb.shape[0]), dtype=np.int64)
    seed_agreement = np.full(n_res, np.nan)
    scores = {"ari": np.empty(n_res), "nmi": np.empty(n_res), "v_measure": np.empty(n_res)}
    for j, resolution in enumerate(grid):
        clusterings[j] = _leiden_codes(adata, float(resolution), seed)
        if seed_check:
            replicate = _leiden_codes(adata, float(resolution), seed + 1)
            seed_agreement[j] = adjusted_rand_score(clusterings[j], replicate)
        for key, value in partition_scores(codes, clusterings[j]).items():
            scores[key][j] = value
    n_clusters = np.array([np.unique(c).size for c in clusterings], dtype=np.int64)

    adjacent = [adjusted_rand_score(clusterings[j], clusterings[j + 1]) for j in range(n_res - 1)]
    neighbor_agreement = np.full(n_res, np.nan)
    for j in range(n_res):
        values = [adjacent[j - 1]] if j > 0 else []
        values += [adjacent[j]] if j < n_res - 1 else []
        if values:
            neighbor_agreement[j] = float(np.mean(values))
    stacked = np.vstack([seed_agreement, neighbor_agreement])
    available = ~np.isnan(stacked)
    stability = np.where(available.any(axis=0), np.nansum(stacked, axis=0) / np.maximum(available.sum(axis=0), 1), 0.0)

    oracle_index = int(np.argmax(scores["ari"]))

    distance = np.abs(n_clusters - n_classes)
    tied = np.flatnonzero(distance == distance.min())
    count_index = int(tied[np.argmax(stability[tied])])

    candidates = np.flatnonzero(n_clusters >= 2)
    if candidates.size == 0:
        candidates = np.arange(n_res)
    best = stability[candidates].max()
    stable_index = _middle_of(candidates[stability[candidates] >= best - _TIE_TOL])

    return LeidenSweepResult(
        resolutions=grid,
        n_clusters=n_clusters,
        ari=scores["ari"],
        nmi=scores["nmi"],
        v_measure=scores["v_measure"],
        seed_agreement=seed_agreement,
        neighbor_agreement=neighbor_agreement,
        stability=stability,
        clusterings=clusterings,
        n_classes=n_classes,
        oracle_index=oracle_index,
        count_index=count_index,
        stable_index=stable_index,
    )
