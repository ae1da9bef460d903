"""The linear part of the model: per-gene standardisation and the loading matrix V (PCA)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.utils.extmath import randomized_svd

from .._validation import DiceInputError

__all__ = ["LinearEmbedding", "choose_n_comps"]

ELBOW_MIN_COMPS = 10
ELBOW_MAX_COMPS = 50
#: Per-gene noise variances are floored at this fraction of their median (see ``_gene_residual_var``).
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
    ``gene_noise_var`` is that residual variance gene by gene (``None`` for models saved before it existed):
    it weights genes in the gene-weighted likelihood (:meth:`weighted_projection`).
    """

    genes: pd.Index
    mean: np.ndarray
    std: np.ndarray
    loadings: np.ndarray
    singular_values: np.ndarray
    noise_var: float
    max_value: float | None = 10.0
    gene_noise_var: np.ndarray | None = None

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
        seed: int = 0,
    ) -> LinearEmbedding:
        """Fit standardisation and loadings on a reference matrix (cells x genes, log-normalised).

        Parameters
        ----------
        matrix
            Dense or sparse reference expression.
        genes
            Gene names, one per column.
        n_comps
            Latent dimension k; ``None`` picks it at the elbow of the singular values
            (:func:`choose_n_comps`).
        max_value
            Cap applied after standardisation (the paper's "scale ... capped at 10"); ``None`` for none.
        seed
            Seed of the randomized SVD.
        """
        dense = matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)
        dense = dense.astype(np.float64, copy=False)
        n_cells, n_genes = dense.shape
        max_rank = min(n_cells - 1, n_genes)
        if n_comps is not None and not 1 <= n_comps <= max_rank:
            raise DiceInputError(
                f"n_comps={n_comps} is impossible for {n_cells} cells x {n_genes} genes: it must be between "
                f"1 and {max_rank} (fewer than the number of cells and at most the number of genes)."
            )
        mean = dense.mean(axis=0)
        std = dense.std(axis=0, ddof=1)
        std = np.where(std > 1e-8, std, 1.0)  # constant genes carry no signal; keep them finite
        embedding = cls(
            genes=pd.Index(genes),
            mean=mean.astype(np.float32),
            std=std.astype(np.float32),
            loadings=np.zeros((n_genes, 0), dtype=np.float32),
            singular_values=np.zeros(0),
            noise_var=1.0,
            max_value=max_value,
        )
        standardised = embedding.standardize(dense).astype(np.float64)
        standardised -= standardised.mean(axis=0)  # the cap can shift the mean slightly
        n_spectrum = min(max_rank, max(ELBOW_MAX_COMPS, n_comps or 0))
        _, singular_values, components = randomized_svd(
            standardised, n_components=n_spectrum, n_iter=7, random_state=seed
        )
        k = n_comps if n_comps is not None else choose_n_comps(singular_values)
        embedding.loadings = np.ascontiguousarray(components[:k].T, dtype=np.float32)
        embedding.singular_values = singular_values
        scores = embedding.project(embedding.standardize(dense))
        embedding.noise_var = float(np.mean(embedding.residual_var(embedding.standardize(dense), scores)))
        standardised = embedding.standardize(dense)
        embedding.gene_noise_var = embedding._gene_residual_var(standardised, scores)
        # Put psi on the scale of the weighted fit's own residuals, so that the reference's noise factor is
        # exactly 1 (``noise_var="reference"``) and a query as noisy as the reference measures ~1 too.
        projector, _ = embedding.weighted_projection()
        scale = float(np.mean(embedding.weighted_noise_scale(standardised, standardised @ projector)))
        embedding.gene_noise_var = (embedding.gene_noise_var * max(scale, 1e-12)).astype(np.float32)
        return embedding

    def _gene_residual_var(self, standardised: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Per-gene residual variance outside the k loadings, floored at a tenth of the median.

        ``mean_cells(r_g^2) / (1 - h_g)``, with ``h_g = ||V_g||^2`` the gene's leverage (the share of its
        noise the loadings absorb). The floor keeps a gene that the loadings explain almost perfectly, or a
        gene constant in the reference, from dominating the weighted projection.
        """
        residual = standardised.astype(np.float64) - scores.astype(np.float64) @ self.loadings.T.astype(np.float64)
        leverage = np.clip(np.einsum("gk,gk->g", self.loadings, self.loadings, dtype=np.float64), 0.0, 0.9)
        variance = np.mean(residual**2, axis=0) / (1.0 - leverage)
        floor = GENE_NOISE_FLOOR * max(float(np.median(variance)), 1e-12)
        return np.maximum(variance, floor).astype(np.float32)

    def weighted_projection(self) -> tuple[np.ndarray, np.ndarray]:
        """Gene-weighted (generalised least squares) projection and its noise covariance.

        Under ``x = V u + e`` with ``e_g ~ N(0, psi_g)`` (``psi = gene_noise_var``), the likelihood of ``u``
        is ``N(G x; u, C)`` with ``C = (V^T Psi^-1 V)^-1`` and ``G = C V^T Psi^-1``. Plain ``V^T x`` is the
        same estimate only when every gene is equally noisy; after standardisation they rarely are.

        Returns
        -------
        ``G^T`` (genes x k; scores are ``x_std @ G^T``) and ``C`` (k x k, in units of ``psi``).
        """
        if self.gene_noise_var is None:
            raise ValueError("this embedding has no per-gene noise variances (saved by an older dice)")
        loadings = self.loadings.astype(np.float64)
        weighted = loadings / self.gene_noise_var.astype(np.float64)[:, None]
        covariance = np.linalg.inv(loadings.T @ weighted)
        covariance = (covariance + covariance.T) / 2
        return (weighted @ covariance).astype(np.float32), covariance

    def weighted_noise_scale(self, standardised: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Per-cell factor ``c`` with noise ``e_g ~ N(0, c psi_g)``: ``sum_g r_g^2 / psi_g / (d - k)``."""
        residual = standardised.astype(np.float64) - scores.astype(np.float64) @ self.loadings.T.astype(np.float64)
        weighted = np.einsum("ij,ij->i", residual / self.gene_noise_var.astype(np.float64), residual)
        return weighted / max(self.n_genes - self.n_comps, 1)

    def standardize(self, dense: np.ndarray) -> np.ndarray:
        """Standardise with the reference statistics and apply the cap (float32)."""
        out = (np.asarray(dense, dtype=np.float32) - self.mean) / self.std
        if self.max_value is not None:
            np.minimum(out, self.max_value, out=out)
        return out

    def project(self, standardised: np.ndarray) -> np.ndarray:
        """Latent scores ``x_std @ V`` (cells x k)."""
        return np.asarray(standardised @ self.loadings, dtype=np.float32)

    def residual_var(self, standardised: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Per-cell noise variance per gene: ``||x - V V^T x||^2 / (d - k)`` (V orthonormal)."""
        total = np.einsum("ij,ij->i", standardised, standardised, dtype=np.float64)
        explained = np.einsum("ij,ij->i", scores, scores, dtype=np.float64)
        dof = max(self.n_genes - self.n_comps, 1)
        return np.maximum(total - explained, 0.0) / dof
