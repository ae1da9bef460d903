"""One call computing every metric of the evaluation protocol (BENCHMARKS.md)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ._fidelity import latent_error
from ._leiden import DEFAULT_RESOLUTIONS, RULES, leiden_sweep
from ._neighbors import clisi, knn_accuracy, silhouette
from ._validation import as_embedding, check_same_length, embedding_and_labels, missing_mask

__all__ = ["EVALUATE_KEYS", "evaluate"]

_LEIDEN_FIELDS = ("ari", "nmi", "v_measure", "resolution", "n_clusters")

#: Every key returned by :func:`evaluate`, in order.
EVALUATE_KEYS: tuple[str, ...] = (
    "n_cells",
    "n_classes",
    "silhouette",
    "clisi",
    "knn_accuracy",
    "latent_error",
    "latent_error_per_dim",
    *(f"leiden_{rule}_{name}" for rule in RULES for name in _LEIDEN_FIELDS),
)


def evaluate(
    embedding: np.ndarray,
    labels: Sequence | np.ndarray | pd.Series,
    *,
    clean_latents: np.ndarray | None = None,
    n_neighbors_lisi: int = 30,
    n_neighbors_knn: int = 15,
    n_neighbors_graph: int = 15,
    silhouette_metric: str = "cosine",
    silhouette_sample_size: int | None = None,
    resolutions: Sequence[float] = DEFAULT_RESOLUTIONS,
    leiden: bool = True,
    seed: int = 0,
) -> dict[str, float]:
    """Compute every metric of the evaluation protocol for one embedding.

    Unlabeled cells (NaN/None label) are dropped once, with a single ``UserWarning``, before anything is
    computed (also from ``clean_latents``).

    Parameters
    ----------
    embedding
        Cells x dimensions (e.g. ``adata.obsm["X_dice"]``).
    labels
        True label per cell.
    clean_latents
        Known noise-free latents for the same cells (simulations), same shape as ``embedding``.
    n_neighbors_lisi
        ``k`` of :func:`~dice.metrics.clisi` (self excluded).
    n_neighbors_knn
        ``k`` of :func:`~dice.metrics.knn_accuracy` (leave-one-out).
    n_neighbors_graph
        ``n_neighbors`` of the scanpy graph used by :func:`~dice.metrics.leiden_sweep`.
    silhouette_metric, silhouette_sample_size
        Passed to :func:`~dice.metrics.silhouette` (cosine by default, as in the paper).
    resolutions
        Leiden resolution grid.
    leiden
        Run the Leiden sweep (the slowest part). When False its keys are NaN.
    seed
        Seed for silhouette subsampling and Leiden.

    Returns
    -------
    A flat ``dict[str, float]`` with exactly the keys in :data:`EVALUATE_KEYS` (NaN when not computed):

    ``n_cells``, ``n_classes``
        Labelled cells evaluated and number of true classes.
    ``silhouette``
        Mean silhouette width of the true labels (cosine by default); higher is better.
    ``clisi``
        Mean cLISI with ``k = n_neighbors_lisi``, kNN proportions; 1 is best.
    ``knn_accuracy``
        Leave-one-out kNN majority-vote accuracy with ``k = n_neighbors_knn``.
    ``latent_error``
        Mean over cells of ``||embedding_i - clean_latents_i||^2`` (no alignment); NaN without latents.
    ``latent_error_per_dim``
        ``latent_error`` divided by the number of dimensions (elementwise MSE).
    ``leiden_{rule}_{field}``
        For ``rule`` in ``oracle`` (best ARI, the paper's protocol), ``count`` (cluster count closest to
        the class count) and ``stable`` (most stable across Leiden seeds and adjacent resolutions;
        label-free), and ``field`` in ``ari``, ``nmi`` (arithmetic, equals V-measure), ``v_measure``,
        ``resolution``, ``n_clusters``. See :func:`~dice.metrics.leiden_sweep`.
    """
    emb_all = as_embedding(embedding)
    emb, codes = embedding_and_labels(emb_all, labels)  # validates; warns once about unlabeled cells
    keep = ~missing_mask(labels)
    # downstream calls get the labelled cells and clean integer codes, so they do not warn again
    out: dict[str, float] = dict.fromkeys(EVALUATE_KEYS, float("nan"))
    out["n_cells"] = float(emb.shape[0])
    out["n_classes"] = float(np.unique(codes).size)
    out["silhouette"] = silhouette(emb, codes, metric=silhouette_metric, sample_size=silhouette_sample_size, seed=seed)
    out["clisi"] = clisi(emb, codes, n_neighbors=n_neighbors_lisi)
    out["knn_accuracy"] = knn_accuracy(emb, codes, n_neighbors=n_neighbors_knn)
    if clean_latents is not None:
        latents = as_embedding(clean_latents, "clean_latents")
        check_same_length(emb_all.shape[0], latents.shape[0], "clean_latents")
        out["latent_error"] = latent_error(emb, latents[keep])
        out["latent_error_per_dim"] = latent_error(emb, latents[keep], per_dimension=True)
    if leiden:
        sweep = leiden_sweep(emb, codes, resolutions=resolutions, n_neighbors=n_neighbors_graph, seed=seed)
        out.update(sweep.summary(prefix="leiden_"))
    return out
