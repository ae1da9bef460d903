"""Shared plotting helpers: 2-D coordinates of a representation and figure saving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from anndata import AnnData

from .._validation import DiceInputError

__all__ = ["finish", "two_d"]


def two_d(adata: AnnData, rep: str, *, method: str = "umap", n_neighbors: int = 15, seed: int = 0) -> np.ndarray:
    """2-D coordinates of ``adata.obsm[rep]``: its UMAP (computed on a throwaway AnnData, so the user's
    object is not modified) or its first two components (``method="pca"``)."""
    if rep not in adata.obsm:
        raise DiceInputError(f"adata.obsm has no {rep!r} (keys: {list(adata.obsm)}). Run dice.tl.denoise(adata) first.")
    if method not in ("umap", "pca") and method in adata.obsm:
        return np.asarray(adata.obsm[method], dtype=np.float32)[:, :2]
    values = np.asarray(adata.obsm[rep], dtype=np.float32)
    if method == "pca":
        return values[:, :2]
    if method != "umap":
        raise DiceInputError(f"basis must be 'umap', 'pca' or a key of adata.obsm, got {method!r}.")
    import scanpy as sc

    scratch = AnnData(np.zeros((adata.n_obs, 1), dtype=np.float32), obsm={"rep": values})
    sc.pp.neighbors(scratch, use_rep="rep", n_neighbors=min(n_neighbors, adata.n_obs - 1), random_state=seed)
    sc.tl.umap(scratch, random_state=seed)
    return scratch.obsm["X_umap"]


def finish(fig, save: str | Path | None):
    """Save the figure only when asked; always return it."""
    if save is not None:
        fig.savefig(save, dpi=150, bbox_inches="tight")
    return fig
