"""The paper's preprocessing recipe for raw counts (appendix H), as one call."""

from __future__ import annotations

import logging

import numpy as np
from anndata import AnnData

from .._validation import DiceInputError, check_adata, get_matrix

__all__ = ["recipe_paper"]

logger = logging.getLogger("dice")


def _mito_mask(adata: AnnData) -> np.ndarray:
    names = adata.var_names.str.upper()
    return np.asarray(names.str.startswith("MT-"))


def recipe_paper(
    adata: AnnData,
    *,
    min_genes: int = 200,
    min_cells: int = 3,
    max_pct_mito: float = 15.0,
    target_sum: float = 1e4,
    n_top_genes: int | None = 3000,
    batch_key: str | None = None,
    harmony: bool = False,
    scale: bool = False,
    max_value: float = 10.0,
    layer: str | None = None,
    seed: int = 0,
    copy: bool = False,
) -> AnnData | None:
    """Quality control, normalisation, log1p and highly variable genes, as in the paper (appendix H).

    Steps: drop cells with fewer than ``min_genes`` detected genes, genes detected in fewer than
    ``min_cells`` cells, and cells with more than ``max_pct_mito`` % mitochondrial reads (genes named
    ``MT-*``; skipped with a note when there are none); keep raw counts in ``layers["counts"]``;
    select ``n_top_genes`` highly variable genes by the Seurat v3 criterion on the counts (per batch
    when ``batch_key`` is given); normalise each cell to ``target_sum`` and apply log1p.

    Scaling to unit variance capped at ``max_value`` is left to the model by default (``scale=False``):
    :func:`dice.tl.train_prior` standardises every dataset with the *reference's* gene statistics and
    the same cap, which is the paper's step applied consistently to reference and query.

    Parameters
    ----------
    adata
        Raw UMI counts (cells x genes) in ``adata.X`` or ``adata.layers[layer]``.
    batch_key
        Column of ``adata.obs`` with batches, used for HVG selection and Harmony.
    harmony
        Correct batch effects with Harmony (needs ``harmonypy`` and ``batch_key``). Harmony corrects a
        50-component PCA of the scaled data; the correction is mapped back to gene space
        (``X - (Z - Z_harmony) V^T``), so the result is still an expression matrix, as in the paper.
    scale
        Also scale genes to unit variance capped at ``max_value`` (done on the whole dataset).
    copy
        Return a processed copy instead of modifying ``adata``.

    Returns
    -------
    The processed AnnData when ``copy=True``, else ``None`` (``adata`` is modified in place: fewer cells
    and genes, ``X`` log-normalised).
    """
    import scanpy as sc

    check_adata(adata, layer=layer, expect="counts", what="adata")
    if harmony and batch_key is None:
        raise DiceInputError("harmony=True needs batch_key= (the obs column holding the batches).")
    if batch_key is not None and batch_key not in adata.obs:
        raise DiceInputError(f"batch_key {batch_key!r} is not a column of adata.obs ({list(adata.obs)}).")

    work = adata.copy()
    if layer is not None:
        work.X = get_matrix(work, layer).copy()
    sc.pp.filter_cells(work, min_genes=min_genes)
    sc.pp.filter_genes(work, min_cells=min_cells)
    mito = _mito_mask(work)
    if mito.any():
        work.var["mt"] = mito
        sc.pp.calculate_qc_metrics(work, qc_vars=["mt"], percent_top=None, log1p=False, inplace=True)
        work = work[work.obs["pct_counts_mt"] <= max_pct_mito].copy()
    else:
        logger.info("recipe_paper: no MT- genes found; the mitochondrial filter was skipped.")
    if work.n_obs < 2 or work.n_vars < 2:
        raise DiceInputError(
            f"Quality control left {work.n_obs} cells x {work.n_vars} genes. Lower min_genes/min_cells "
            "or check that adata holds raw counts."
        )
    work.layers["counts"] = work.X.copy()
    if n_top_genes is not None and n_top_genes < work.n_vars:
        sc.pp.highly_variable_genes(
            work, n_top_genes=n_top_genes, flavor="seurat_v3", layer="counts", batch_key=batch_key
        )
        work = work[:, work.var["highly_variable"]].copy()
    sc.pp.normalize_total(work, target_sum=target_sum)
    sc.pp.log1p(work)
    if harmony:
        _harmony_in_gene_space(work, batch_key, max_value=max_value, seed=seed)
    if scale:
        sc.pp.scale(work, max_value=max_value)
    work.uns["dice_recipe"] = {
        "min_genes": min_genes,
        "min_cells": min_cells,
        "max_pct_mito": max_pct_mito,
        "target_sum": target_sum,
        "n_top_genes": n_top_genes,
        "batch_key": batch_key,
        "harmony": harmony,
        "scale": scale,
        "max_value": max_value,
    }
    if copy:
        return work
    adata._init_as_actual(work)
    return None


def _harmony_in_gene_space(adata: AnnData, batch_key: str, *, max_value: float, seed: int) -> None:
    try:
        import harmonypy
    except ImportError as error:
        raise ImportError(
            "harmony=True needs harmonypy: `pip install harmonypy` (or `pip install dice-sc[harmony]`)."
        ) from error
    dense = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X, dtype=np.float64)
    mean, std = dense.mean(axis=0), dense.std(axis=0, ddof=1)
    std = np.where(std > 1e-8, std, 1.0)
    scaled = np.minimum((dense - mean) / std, max_value)
    n_comps = int(min(50, scaled.shape[0] - 1, scaled.shape[1]))
    _, _, components = np.linalg.svd(scaled - scaled.mean(axis=0), full_matrices=False)
    loadings = components[:n_comps].T
    scores = scaled @ loadings
    result = harmonypy.run_harmony(scores, adata.obs, [batch_key], random_state=seed, verbose=False)
    corrected = np.asarray(result.Z_corr)
    if corrected.shape != scores.shape:  # older harmonypy returns dims x cells
        corrected = corrected.T
    scaled_corrected = scaled - (scores - corrected) @ loadings.T
    adata.X = (scaled_corrected * std + mean).astype(np.float32)
