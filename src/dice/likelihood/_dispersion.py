"""Negative-binomial dispersions measured around each reference cell's neighbourhood, not the decoder.

The count model's default dispersions are moment estimates around the rank-k decoder
(:func:`dice.likelihood.fit_count_reference`), so a gene's estimate also counts as noise what k latent
dimensions miss of it: the markers of a population too small for the latent space get large dispersions and
little weight. Here each reference cell's expected counts are its nearest neighbours' pooled profile
(neighbours in the log-normalised projection, the cell itself left out) scaled to its depth, which follows
structure the decoder cannot express; the excess of the squared residuals over Poisson, less the sampling
variance of the neighbours' profile itself, then gives each gene's dispersion by moments.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._newton import log_projection

__all__ = ["local_dispersion"]


def local_dispersion(
    counts, embedding, *, n_neighbors: int = 10, max_cells: int = 50_000, seed: int = 0, block_size: int = 1024
) -> np.ndarray:
    """Per-gene NB dispersion ``alpha_g`` around each cell's neighbours' profile (moments, floored at 0).

    Parameters
    ----------
    counts
        The reference's raw counts, cells x model genes (scipy sparse or dense), in ``embedding.genes`` order.
    embedding
        The reference's :class:`dice.pp._linear.LinearEmbedding`: neighbours are found in its projection of
        the log-normalised counts.
    n_neighbors
        Neighbours whose pooled counts make a cell's expected profile (10 followed PBMC3k's small populations
        better than 30 in our screen); a reference of ``n_neighbors`` cells or fewer uses all its other cells.
    max_cells
        Cells used at most (a seeded subsample beyond that: the dispersions are per-gene averages).
    seed
        Seeds the subsample.
    block_size
        Cells whose residuals are formed at once (memory ``block_size x genes x 8`` bytes per array).
    """
    from sklearn.neighbors import NearestNeighbors

    counts = sp.csr_matrix(counts)  # no copy of a CSR matrix
    n_cells = counts.shape[0]
    if n_cells < 2:
        raise ValueError(f"local dispersions need at least 2 reference cells, got {n_cells}")
    n_neighbors = min(n_neighbors, n_cells - 1)
    if n_cells > max_cells:
        rows = np.sort(np.random.default_rng(np.random.SeedSequence([seed, 7])).choice(n_cells, max_cells, False))
        counts = counts[rows]
    counts = counts.astype(np.float64)  # a float64 copy of at most max_cells rows, not of the whole reference
    depth = np.asarray(counts.sum(axis=1)).ravel()
    z = np.empty((counts.shape[0], embedding.loadings.shape[1]))
    for start in range(0, counts.shape[0], block_size):  # the log-normalised projection, in row blocks
        rows = slice(start, start + block_size)
        z[rows] = log_projection(
            counts[rows].toarray(),
            depth[rows, None],
            embedding.mean,
            embedding.std,
            embedding.loadings,
            embedding.max_value,
        )
    _, index = NearestNeighbors(n_neighbors=n_neighbors + 1).fit(z).kneighbors(z)
    n = counts.shape[0]  # the cell itself is not its own neighbour: column 0 left out
    near = sp.csr_matrix(
        (np.ones(n * n_neighbors), index[:, 1:].ravel(), np.arange(0, n * n_neighbors + 1, n_neighbors)),
        shape=(n, n),
    )
    total = near @ depth  # each cell's neighbours' summed depth
    excess = np.zeros(counts.shape[1])
    square = np.zeros(counts.shape[1])
    for start in range(0, n, block_size):
        pooled = (near[start : start + block_size] @ counts).toarray()  # neighbours' summed counts
        share = depth[start : start + block_size, None] / np.maximum(total[start : start + block_size, None], 1.0)
        lam = pooled * share  # expected counts at the cell's depth
        observed = counts[start : start + block_size].toarray()
        # Var(c - lam) = Var(c) + Var(lam): the neighbours' own Poisson noise, lam * share, is not the cell's
        excess += np.sum((observed - lam) ** 2 - lam - lam * share, axis=0)
        square += np.sum(lam * lam, axis=0)
    return np.maximum(excess / np.maximum(square, 1e-12), 0.0)
