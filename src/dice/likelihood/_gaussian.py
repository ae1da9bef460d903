"""Gaussian measurement models of standardised, log-normalised cells: gene-weighted and isotropic.

Both model a standardised cell as ``x = V u + e`` over the genes it has. ``"gene_weighted"`` (the default for
log-normalised data) takes ``e_g ~ N(0, c psi_g)`` with ``psi_g`` the reference's residual variance of gene g,
so the measurement of ``u`` is the generalised-least-squares projection ``y = (V^T Psi^-1 V)^-1 V^T Psi^-1 x``
with noise covariance ``c (V^T Psi^-1 V)^-1``. ``"isotropic"`` (the paper's model) takes ``e_g ~ N(0, sigma^2)``
for every gene. Genes a query lacks drop out of ``V`` and ``Psi``: the covariance then grows, so fewer shared
genes honestly mean more uncertainty (instead of the old imputation of the reference mean, which biased ``y``
toward 0 and made the noise look smaller).

The noise factor ``c`` (or ``sigma^2``) comes from the residuals outside the loadings:
``c_cell = (x Psi^-1 x^T - y C^-1 y^T) / (d - k)``, averaged over the data being denoised (``"dataset"``),
kept per cell (``"cell"``), the reference's own level (``"reference"``: 1 for the gene-weighted model by
construction) or, for the isotropic model, a given number.
"""

from __future__ import annotations

import numpy as np

from ._base import Measurement

__all__ = ["GAUSSIAN_LIKELIHOODS", "GaussianLikelihood"]

GAUSSIAN_LIKELIHOODS = {
    "gene_weighted": "x_std = V u + e, e_g ~ N(0, c psi_g) with psi_g the reference's residual variance of gene g; "
    "measurement (V^T Psi^-1 V)^-1 V^T Psi^-1 x_std over the genes present, noise covariance c (V^T Psi^-1 V)^-1, "
    "used with its mean eigenvalue",
    "isotropic": "x_std = V u + e, e_g ~ N(0, sigma^2) for every gene (the paper's model); measurement "
    "(V^T V)^-1 V^T x_std over the genes present (V^T x_std when all are), noise covariance sigma^2 (V^T V)^-1",
}

#: Noise variances are floored here (standardised units), so that a cell without residuals is not exact.
MIN_NOISE_VAR = 1e-6


class GaussianLikelihood:
    """A Gaussian measurement model of an embedding, restricted to the genes a dataset has.

    Parameters
    ----------
    embedding
        The reference's :class:`~dice.pp._linear.LinearEmbedding`.
    kind
        ``"gene_weighted"`` or ``"isotropic"``.
    present
        Boolean mask of the model's genes that the data has (``None``: all).
    """

    def __init__(self, embedding, kind: str, present: np.ndarray | None = None):
        if kind not in GAUSSIAN_LIKELIHOODS:
            raise ValueError(f"kind must be one of {sorted(GAUSSIAN_LIKELIHOODS)}, got {kind!r}")
        self.kind = kind
        self.embedding = embedding
        self.present = np.ones(embedding.n_genes, bool) if present is None else np.asarray(present, bool)
        v = embedding.loadings[self.present].astype(np.float64)
        if kind == "gene_weighted":
            self.gene_weight = 1.0 / embedding.gene_noise_var[self.present].astype(np.float64)
        else:
            self.gene_weight = np.ones(v.shape[0])
        self.precision = v.T @ (v * self.gene_weight[:, None])  # C^-1
        self.covariance = np.linalg.inv(self.precision)
        self.covariance = (self.covariance + self.covariance.T) / 2
        self.projector = (v * self.gene_weight[:, None]) @ self.covariance  # G^T, genes present x k
        self.dof = max(int(self.present.sum()) - embedding.n_comps, 1)

    @property
    def n_genes_used(self) -> int:
        return int(self.present.sum())

    @property
    def mean_covariance(self) -> float:
        """``trace(C) / k``: the covariance's mean eigenvalue, the isotropic level the direct sampler uses."""
        return float(np.trace(self.covariance)) / self.embedding.n_comps

    def measure_block(self, standardised: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Measurements ``y`` (cells x k) and per-cell noise factors of standardised cells (present genes)."""
        # float64 products: a row's result then does not depend on how many rows share the BLAS call
        x64 = standardised.astype(np.float64)
        y64 = x64 @ self.projector
        scores = y64.astype(np.float32)
        total = np.einsum("ij,ij,j->i", x64, x64, self.gene_weight)
        explained = np.einsum("ij,jk,ik->i", y64, self.precision, y64)
        return scores, np.maximum(total - explained, 0.0) / self.dof

    def finish(self, scores: np.ndarray, factors: np.ndarray, noise_var) -> Measurement:
        """Turn per-cell factors into noise variances per latent dimension, by the ``noise_var`` rule."""
        n_cells = len(factors)
        if isinstance(noise_var, str):
            if noise_var == "reference":
                level = np.full(n_cells, 1.0 if self.kind == "gene_weighted" else self.embedding.noise_var)
            elif noise_var == "cell":
                level = np.maximum(factors, MIN_NOISE_VAR)
            elif noise_var == "dataset":
                level = np.full(n_cells, dataset_level(factors))
            else:
                raise ValueError(f"unknown noise_var rule {noise_var!r}")
        else:
            level = np.full(n_cells, float(noise_var))
        return Measurement(scores, level * self.mean_covariance)


def dataset_level(factors: np.ndarray) -> float:
    """The ``noise_var="dataset"`` level: the mean per-cell factor over all cells, floored (1 without cells)."""
    return max(float(np.mean(factors)) if len(factors) else 1.0, MIN_NOISE_VAR)
