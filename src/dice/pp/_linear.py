"""The linear part of the model: per-gene standardisation and the loading matrix V (PCA)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._blocks import block_size_for
from .._validation import DiceInputError

__all__ = ["LinearEmbedding", "choose_n_comps"]

ELBOW_MIN_COMPS = 10
ELBOW_MAX_COMPS = 50
#: Per-gene noise variances are floored at this fraction of their median (:func:`dice.pp._gram.residual_statistics`).
GENE_NOISE_FLOOR = 0.1


def choose_n_comps(
    singular_values: np.ndarray, *, min_comps: int = ELBOW_MIN_COMPS, max_comps: int = ELBOW_MAX_COMPS
) -> int:
    """Pick k at the elbow of the singular-value spectrum.

    The elbow is the component farthest from the straight line joining the first and the last
    singular value of the first ``max_comps`` (both axes rescaled to [0, 1]); the result is clipped to
    ``[min_comps, max_comps]`` because the paper found a slightly too large k safe and a too small one
    harmful (appendix F).
    """
    values = np.asarray(singular_values, dtype=float)[:max_comps]
    if values.size < 3:
        return int(values.size)
    x = np.linspace(0.0, 1.0, values.size)
    span = values[0] - values[-1]
    y = (values - values[-1]) / span if span > 0 else np.zeros_like(values)
    # distance below the chord from (0, 1) to (1, 0)
    distance = (1.0 - x) - y
    elbow = int(np.argmax(distance)) + 1
    return int(np.clip(elbow, min(min_comps, values.size), values.size))


@dataclass
class LinearEmbedding:
    """Gene standardisation statistics and orthonormal loadings fitted on a reference.

    A cell ``x`` (log-normalised expression in ``genes`` order) is standardised as
    ``min((x - mean) / std, max_value)`` and embedded as ``loadings.T @ x_std``. ``noise_var`` is the
    reference's residual variance per gene after removing the top ``k`` components, in standardised
    units: the estimate of the measurement-noise variance sigma^2 of the factor model ``x = V u + e``.
    ``gene_noise_var`` is that residual variance gene by gene: it weights genes in the gene-weighted
    likelihood (:mod:`dice.likelihood`).
    """

    genes: pd.Index
    mean: np.ndarray
    std: np.ndarray
    loadings: np.ndarray
    singular_values: np.ndarray
    noise_var: float
    gene_noise_var: np.ndarray
    max_value: float | None = 10.0

    @property
    def n_comps(self) -> int:
        return int(self.loadings.shape[1])

    @property
    def n_genes(self) -> int:
        return int(self.loadings.shape[0])

    @classmethod
    def fit(
        cls,
        matrix,
        genes,
        *,
        n_comps: int | None = None,
        max_value: float | None = 10.0,
        rows: np.ndarray | None = None,
        block_size: int | None = None,
        what: str = "adata",
        layer: str | None = None,
        check_values: bool = True,
    ) -> LinearEmbedding:
        """Fit standardisation and loadings on a reference matrix (cells x genes, log-normalised), streaming.

        Two passes over row blocks, memory ``O(genes^2 + block)``: gene means and variances (merged block by
        block), then the genes x genes Gram matrix of the standardised, capped data. ``V`` are the top
        eigenvectors of its centred version (exact PCA of the standardised reference, deterministic), and every
        residual variance follows from the Gram matrix (:mod:`dice.pp._gram`). For sparse input the capped
        Gram matrix is assembled from sparse products, never from a dense block.

        Parameters
        ----------
        matrix
            Dense, sparse, backed or dask reference expression (cells x genes).
        genes
            Gene names, one per column.
        n_comps
            Latent dimension k; ``None`` picks it at the elbow of the spectrum (:func:`choose_n_comps`).
        max_value
            Cap applied after standardisation (the paper's "scale ... capped at 10"); ``None`` for none.
        rows
            Sorted positions of the cells to fit on (``None``: all).
        block_size
            Cells per block (default: about 64 MB of float32 per dense block).
        what, layer
            Names used in error messages.
        check_values
            Refuse data that are not log-normalised expression (NaN, counts, scaled or shifted values). Off only
            for array-level studies of factor-model data.
        """
        from ._gram import gene_moments, residual_statistics, standardized_gram, top_eigenvectors

        n_genes = int(matrix.shape[1])
        block_size = block_size or block_size_for(n_genes)
        n_cells, mean, std, summary = gene_moments(matrix, rows=rows, block_size=block_size)
        summary.check(expect="log-normalised" if check_values else "finite", what=what, layer=layer)
        max_rank = min(n_cells - 1, n_genes)
        if n_comps is not None and not 1 <= n_comps <= max_rank:
            raise DiceInputError(
                f"n_comps={n_comps} is impossible for {n_cells} cells x {n_genes} genes: it must be between "
                f"1 and {max_rank} (fewer than the number of cells and at most the number of genes)."
            )
        gram, column_sums = standardized_gram(matrix, mean, std, max_value, rows=rows, block_size=block_size)
        n_spectrum = min(max_rank, max(ELBOW_MAX_COMPS, n_comps or 0))
        vectors, singular_values = top_eigenvectors(gram, column_sums, n_cells, n_spectrum)
        k = n_comps if n_comps is not None else choose_n_comps(singular_values)
        loadings = np.ascontiguousarray(vectors[:, :k])
        noise_var, gene_noise_var = residual_statistics(gram, loadings, n_cells, floor=GENE_NOISE_FLOOR)
        return cls(
            genes=pd.Index(genes),
            mean=mean.astype(np.float32),
            std=std.astype(np.float32),
            loadings=loadings.astype(np.float32),
            singular_values=singular_values,
            noise_var=noise_var,
            gene_noise_var=gene_noise_var.astype(np.float32),
            max_value=max_value,
        )

    def weighted_projection(self) -> tuple[np.ndarray, np.ndarray]:
        """Gene-weighted (generalised least squares) projection over all genes and its noise covariance.

        Under ``x = V u + e`` with ``e_g ~ N(0, psi_g)`` (``psi = gene_noise_var``), the likelihood of ``u``
        is ``N(G x; u, C)`` with ``C = (V^T Psi^-1 V)^-1`` and ``G = C V^T Psi^-1``. Returns ``G^T`` (genes x
        k; scores are ``x_std @ G^T``) and ``C`` (k x k, in units of ``psi``). :mod:`dice.likelihood` holds
        the general version (genes missing from a query drop out).
        """
        from ..likelihood import GaussianLikelihood

        likelihood = GaussianLikelihood(self, "gene_weighted")
        return likelihood.projector.astype(np.float32), likelihood.covariance

    def standardize(self, dense: np.ndarray, genes: np.ndarray | None = None) -> np.ndarray:
        """Standardise with the reference statistics and apply the cap (float32).

        ``genes`` (a boolean mask or positions of model genes) says which genes the columns of ``dense`` are;
        ``None``: all, in model order.
        """
        mean, std = (self.mean, self.std) if genes is None else (self.mean[genes], self.std[genes])
        out = np.asarray(dense, dtype=np.float32) - mean
        out /= std
        if self.max_value is not None:
            np.minimum(out, self.max_value, out=out)
        return out

    def project(self, standardised: np.ndarray) -> np.ndarray:
        """Latent scores ``x_std @ V`` (cells x k) of standardised cells in model gene order."""
        return np.asarray(standardised @ self.loadings, dtype=np.float32)
