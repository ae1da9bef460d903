"""AnnData-level wrappers: fit loadings on a reference, project any dataset onto them."""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from .._validation import check_adata, get_matrix
from ._align import align_genes
from ._linear import LinearEmbedding

__all__ = ["fit_loadings", "project", "standardized_matrix"]


def fit_loadings(
    adata: AnnData,
    *,
    n_comps: int | None = None,
    layer: str | None = None,
    max_value: float | None = 10.0,
    seed: int = 0,
) -> LinearEmbedding:
    """Fit gene standardisation and the loading matrix V on a log-normalised reference.

    Parameters
    ----------
    adata
        Reference, log-normalised (see :func:`dice.pp.recipe_paper` for raw counts).
    n_comps
        Latent dimension k; ``None`` chooses it at the elbow of the singular values.
    layer
        Layer to use instead of ``adata.X``.
    max_value
        Cap after standardisation.
    seed
        Seed of the randomized SVD.
    """
    check_adata(adata, layer=layer, what="adata_ref", min_cells=3)
    return LinearEmbedding.fit(
        get_matrix(adata, layer), adata.var_names, n_comps=n_comps, max_value=max_value, seed=seed
    )


def standardized_matrix(
    adata: AnnData, embedding: LinearEmbedding, *, layer: str | None = None, min_shared: float = 0.5
) -> np.ndarray:
    """``adata`` aligned to the reference genes and standardised with the reference statistics."""
    alignment = align_genes(adata, embedding.genes, min_shared=min_shared)
    dense = alignment.dense(get_matrix(adata, layer), fill_value=embedding.mean)
    return embedding.standardize(dense)


def project(
    adata: AnnData,
    embedding: LinearEmbedding,
    *,
    layer: str | None = None,
    key_added: str = "X_dice_pca",
    min_shared: float = 0.5,
    copy: bool = False,
) -> AnnData | None:
    """Project ``adata`` onto reference loadings; writes ``adata.obsm[key_added]`` (cells x k).

    Genes are matched by name (missing ones set to the reference mean), standardised with the
    reference statistics and multiplied by V.
    """
    check_adata(adata, layer=layer, what="adata")
    scores = embedding.project(standardized_matrix(adata, embedding, layer=layer, min_shared=min_shared))
    target = adata.copy() if copy else adata
    target.obsm[key_added] = scores
    return target if copy else None
