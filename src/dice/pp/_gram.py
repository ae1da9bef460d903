"""The streaming fit's passes: gene moments, the standardised Gram matrix, its eigenvectors, residual variances.

Why a Gram matrix: PCA of the standardised reference is the eigendecomposition of its genes x genes
covariance, which is a sum over cells. Accumulated block by block it costs ``O(genes^2)`` memory whatever the
number of cells, it is exact (no randomised approximation) and deterministic, and every residual variance
the likelihood needs is a trace or a diagonal of it.

For sparse data the cap is applied to the stored values only: ``(x - mean) / std > cap`` can only hold where
``x > 0`` (zeros standardise to ``-mean / std <= 0`` for non-negative data), so the capped standardised block is
``(X' - 1 mean^T) / std`` with ``X'`` sparse, and its Gram matrix follows from ``X'^T X'`` and ``X'``'s column
sums without a dense block.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from .._blocks import iter_row_blocks
from .._validation import ValueSummary

__all__ = ["gene_moments", "residual_statistics", "standardized_gram", "top_eigenvectors"]

#: Sparse blocks denser than this go through the dense product (measured crossover on two cores: ~10 %).
SPARSE_DENSITY = 0.1


def gene_moments(matrix, *, rows=None, block_size: int) -> tuple[int, np.ndarray, np.ndarray, ValueSummary]:
    """Cell count, gene means and sds (ddof 1; constant genes get sd 1) and a :class:`ValueSummary`.

    Block means and sums of squared deviations are merged pairwise (Chan et al.), in float64.
    """
    n_genes = int(matrix.shape[1])
    count, mean, m2 = 0, np.zeros(n_genes), np.zeros(n_genes)
    summary = ValueSummary()
    for block in iter_row_blocks(matrix, block_size=block_size, rows=rows):
        values = block.values
        summary.update(values)
        nb = values.shape[0]
        if sp.issparse(values):
            values = values.astype(np.float64)
            block_mean = np.asarray(values.sum(axis=0)).ravel() / nb
            block_m2 = np.asarray(values.multiply(values).sum(axis=0)).ravel() - nb * block_mean**2
        else:
            values = np.asarray(values, dtype=np.float64)
            block_mean = values.mean(axis=0)
            block_m2 = ((values - block_mean) ** 2).sum(axis=0)
        total = count + nb
        delta = block_mean - mean
        mean = mean + delta * (nb / total)
        m2 = m2 + np.maximum(block_m2, 0.0) + delta**2 * (count * nb / total)
        count = total
    std = np.sqrt(np.maximum(m2, 0.0) / max(count - 1, 1))
    std = np.where(std > 1e-8, std, 1.0)  # constant genes carry no signal; keep them finite
    return count, mean, std, summary


def _capped(block: sp.csr_matrix, cap: np.ndarray | None) -> sp.csr_matrix:
    block = block.astype(np.float64)
    if cap is not None:
        block.data = np.minimum(block.data, cap[block.indices])
    return block


def standardized_gram(
    matrix, mean: np.ndarray, std: np.ndarray, max_value: float | None, *, rows=None, block_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """``sum_cells x_std x_std^T`` (genes x genes) and ``sum_cells x_std`` of the standardised, capped data."""
    mean64, std64 = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    mean32, std32 = mean64.astype(np.float32), std64.astype(np.float32)
    n_genes = len(mean64)
    cap = None if max_value is None else mean64 + max_value * std64
    raw_gram, raw_sums = np.zeros((n_genes, n_genes)), np.zeros(n_genes)  # sparse blocks: of X'
    gram, sums = np.zeros((n_genes, n_genes)), np.zeros(n_genes)  # dense blocks: of x_std directly
    n_sparse = 0
    for block in iter_row_blocks(matrix, block_size=block_size, rows=rows):
        values = block.values
        if sp.issparse(values) and values.nnz > SPARSE_DENSITY * values.shape[0] * values.shape[1]:
            values = values.toarray()  # dense enough that BLAS on one dense block is faster
        if sp.issparse(values):
            capped = _capped(values, cap)
            raw_gram += (capped.T @ capped).toarray()
            raw_sums += np.asarray(capped.sum(axis=0)).ravel()
            n_sparse += values.shape[0]
        else:
            # the same float32 standardisation as the projection, then float64 products
            standardised = (np.asarray(values, dtype=np.float32) - mean32) / std32
            if max_value is not None:
                np.minimum(standardised, np.float32(max_value), out=standardised)
            standardised = standardised.astype(np.float64)
            gram += standardised.T @ standardised
            sums += standardised.sum(axis=0)
    if n_sparse:
        cross = np.outer(mean64, raw_sums)
        centred = raw_gram - cross - cross.T + n_sparse * np.outer(mean64, mean64)
        gram += centred / np.outer(std64, std64)
        sums += (raw_sums - n_sparse * mean64) / std64
    return (gram + gram.T) / 2, sums


def top_eigenvectors(gram: np.ndarray, sums: np.ndarray, n_cells: int, n_top: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``n_top`` principal axes of the centred data (genes x n_top) and their singular values.

    Each axis's sign is fixed so that its largest-magnitude gene loading is positive (deterministic output).
    """
    centred = gram - np.outer(sums, sums) / n_cells
    n_genes = centred.shape[0]
    values, vectors = scipy.linalg.eigh(centred, subset_by_index=[n_genes - n_top, n_genes - 1])
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(vectors.shape[1])])
    vectors = vectors * np.where(signs == 0, 1.0, signs)
    return vectors, np.sqrt(np.maximum(values, 0.0))


def residual_statistics(
    gram: np.ndarray, loadings: np.ndarray, n_cells: int, *, floor: float
) -> tuple[float, np.ndarray]:
    """The reference's noise variance per gene outside the k loadings, overall and gene by gene.

    Overall: ``mean_cells ||x - V V^T x||^2 / (d - k)`` = ``(tr G - tr V^T G V) / (n (d - k))``. Per gene:
    ``mean_cells r_g^2 / (1 - h_g)`` (``h_g = ||V_g||^2``, the share of the gene's noise the loadings absorb),
    floored at ``floor`` times the median so that no gene dominates the weighted projection; then rescaled so
    that the gene-weighted fit's own residuals have noise factor exactly 1 on the reference
    (``sum_g r_g^2 / psi_g / (d - k)`` averaged over cells), i.e. a query as noisy as the reference measures 1.
    """
    v = np.asarray(loadings, dtype=np.float64)
    n_genes, k = v.shape
    dof = max(n_genes - k, 1)
    gv = gram @ v  # genes x k
    vgv = v.T @ gv  # k x k
    noise_var = float(max(np.trace(gram) - np.trace(vgv), 0.0) / (n_cells * dof))
    # diag((I - P) G (I - P)) with P = V V^T
    residual = np.diag(gram) - 2.0 * np.einsum("gk,gk->g", v, gv) + np.einsum("gk,kl,gl->g", v, vgv, v)
    leverage = np.clip(np.einsum("gk,gk->g", v, v), 0.0, 0.9)
    variance = np.maximum(residual, 0.0) / n_cells / (1.0 - leverage)
    psi = np.maximum(variance, floor * max(float(np.median(variance)), 1e-12))
    # weighted residual r = x - y V^T with y = x G_w: sum_cells r Psi^-1 r^T = tr(Psi^-1 G) - tr(C^-1 G_w^T G G_w)
    weighted = v / psi[:, None]
    precision = v.T @ weighted  # C^-1
    projector = weighted @ np.linalg.inv(precision)  # G_w (genes x k)
    explained = np.trace(precision @ (projector.T @ gram @ projector))
    scale = (np.sum(np.diag(gram) / psi) - explained) / (n_cells * dof)
    return noise_var, psi * max(float(scale), 1e-12)
