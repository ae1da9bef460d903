"""The exact Bayes posterior of the synthetic model, and its image in the coordinates of a linear embedding.

Model: ``x = V u + e`` with ``e ~ N(0, noise_var I_d)`` and ``u ~ sum_j w_j N(m_j, C_j)``. The posterior is
again a Gaussian mixture: component ``j`` has covariance ``S_j = (C_j^-1 + V^T V / noise_var)^-1`` and mean
``S_j (C_j^-1 m_j + V^T x / noise_var)``; its weight is proportional to ``w_j N(x; V m_j, V C_j V^T +
noise_var I)``. Everything is computed from ``V^T x``, ``|x|^2`` and ``V^T V`` (k × k): the d × d marginal
covariance is never formed (its inverse and determinant follow from Woodbury and the determinant lemma).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp
from anndata import AnnData
from scipy.special import logsumexp

__all__ = [
    "embedding_affine_map",
    "exact_posterior",
    "latents_to_embedding_coords",
    "posterior_parameters",
    "sample_exact_posterior",
    "to_embedding_coords",
]

_ROW_CHUNK = 2048  # rows converted to float64 at a time: bounds memory on large dense X


def _project(X: Any, loadings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``X V`` and the squared row norms of ``X``, in float64."""
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=np.float64)
        return np.asarray(X @ loadings), np.asarray(X.multiply(X).sum(axis=1)).ravel()
    X = np.asarray(X)
    projected = np.empty((X.shape[0], loadings.shape[1]))
    sq_norms = np.empty(X.shape[0])
    for start in range(0, X.shape[0], _ROW_CHUNK):
        block = np.asarray(X[start : start + _ROW_CHUNK], dtype=np.float64)
        projected[start : start + _ROW_CHUNK] = block @ loadings
        sq_norms[start : start + _ROW_CHUNK] = np.einsum("ij,ij->i", block, block)
    return projected, sq_norms


def _logdet_and_inverse(matrix: np.ndarray) -> tuple[float, np.ndarray]:
    """Log-determinant and inverse of a symmetric positive definite matrix, via Cholesky."""
    chol = np.linalg.cholesky(matrix)
    chol_inv = np.linalg.solve(chol, np.eye(len(matrix)))
    return 2.0 * np.sum(np.log(np.diag(chol))), chol_inv.T @ chol_inv


def _component_posteriors(
    X: Any,
    loadings: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    noise_var: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-component posterior means (K, n, k), covariances (K, k, k), log ``w_j p(x | j)`` (n, K)."""
    loadings = np.asarray(loadings, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    means = np.atleast_2d(np.asarray(means, dtype=np.float64))
    covariances = np.asarray(covariances, dtype=np.float64).reshape(len(weights), means.shape[1], -1)
    n_genes = loadings.shape[0]
    if noise_var <= 0:
        raise ValueError(f"noise_var must be positive, got {noise_var}")

    projected, sq_norms = _project(X, loadings)
    data_information = projected / noise_var  # V^T x / sigma^2, shared by every component
    data_precision = loadings.T @ loadings / noise_var
    n_components = len(weights)
    comp_means = np.empty((n_components, projected.shape[0], means.shape[1]))
    comp_covs = np.empty((n_components, means.shape[1], means.shape[1]))
    log_joint = np.empty((projected.shape[0], n_components))
    with np.errstate(divide="ignore"):  # a zero weight is a legitimate -inf log weight
        log_weights = np.log(weights)
    for j in range(n_components):
        logdet_prior, prior_precision = _logdet_and_inverse(covariances[j])
        logdet_post_precision, post_cov = _logdet_and_inverse(prior_precision + data_precision)
        prior_information = prior_precision @ means[j]
        information = data_information + prior_information
        comp_means[j] = information @ post_cov
        comp_covs[j] = post_cov
        # log N(x; V m, V C V^T + s2 I) by completing the square in u:
        # -1/2 [d log(2 pi s2) + log|C| + log|P| + |x|^2/s2 + m^T C^-1 m - a^T P^-1 a],  a = information.
        quadratic = (
            sq_norms / noise_var + means[j] @ prior_information - np.einsum("ij,ij->i", information, comp_means[j])
        )
        log_joint[:, j] = log_weights[j] - 0.5 * (
            n_genes * np.log(2 * np.pi * noise_var) + logdet_prior + logdet_post_precision + quadratic
        )
    return comp_means, comp_covs, log_joint


def exact_posterior(
    X: Any,
    *,
    loadings: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    noise_var: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact posterior of ``u`` given ``x = V u + e``, ``e ~ N(0, noise_var I)``, ``u`` a Gaussian mixture.

    Parameters
    ----------
    X
        Observations, cells × genes (dense or sparse), on the scale of the model (not standardised).
    loadings
        ``V``, genes × k.
    weights, means, covariances
        Prior mixture: ``(K,)``, ``(K, k)``, ``(K, k, k)``.
    noise_var
        Per-gene Gaussian noise variance.

    Returns
    -------
    mean
        Posterior mean ``E[u | x]``, cells × k.
    cov
        Full posterior covariance, cells × k × k: the responsibility-weighted within-component covariance
        plus the spread of the component means around the overall mean.
    responsibilities
        ``P(component j | x)``, cells × K.
    """
    comp_means, comp_covs, log_joint = _component_posteriors(X, loadings, weights, means, covariances, noise_var)
    responsibilities = np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))
    mean = np.einsum("nj,jnk->nk", responsibilities, comp_means)
    deviations = comp_means - mean[None]
    cov = np.einsum("nj,jkl->nkl", responsibilities, comp_covs) + np.einsum(
        "nj,jnk,jnl->nkl", responsibilities, deviations, deviations
    )
    return mean, cov, responsibilities


def sample_exact_posterior(
    X: Any,
    *,
    loadings: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    noise_var: float,
    n_samples: int,
    seed: int | np.random.Generator | None = 0,
) -> np.ndarray:
    """Independent draws from the exact mixture posterior (parameters as in :func:`exact_posterior`).

    Returns
    -------
    Samples, ``n_samples`` × cells × k (the same layout as stacked independent chains).
    """
    rng = np.random.default_rng(seed)
    comp_means, comp_covs, log_joint = _component_posteriors(X, loadings, weights, means, covariances, noise_var)
    responsibilities = np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))
    n_cells, n_latent = comp_means.shape[1:]
    # Component per (sample, cell) by inverting the cumulative responsibilities.
    cumulative = np.cumsum(responsibilities, axis=1)
    uniform = rng.random((n_samples, n_cells, 1)) * cumulative[None, :, -1:]
    chosen = np.minimum((uniform >= cumulative[None]).sum(axis=2), len(weights) - 1)
    standard = rng.standard_normal((n_samples, n_cells, n_latent))
    samples = np.empty_like(standard)
    for j in range(len(weights)):
        sample_idx, cell_idx = np.nonzero(chosen == j)
        chol = np.linalg.cholesky(comp_covs[j])
        samples[sample_idx, cell_idx] = comp_means[j][cell_idx] + standard[sample_idx, cell_idx] @ chol.T
    return samples


def posterior_parameters(
    adata: AnnData, *, prior_from: AnnData | None = None, require_exact: bool = True
) -> dict[str, Any]:
    """Keyword arguments of :func:`exact_posterior` for a dataset made by :func:`dice.datasets.synthetic`.

    Parameters
    ----------
    adata
        Supplies the loadings and the noise model.
    prior_from
        Dataset whose latent prior to use (default ``adata`` itself). Pass the reference to get the Bayes
        posterior under the *training* prior, e.g. for a Setup 4 or E.2 query.
    require_exact
        Raise if a prior component or the noise is Student-t (no exact Gaussian-mixture posterior). With
        ``False`` each t is replaced by the Gaussian with the same mean and covariance
        (``scale * df / (df - 2)``): the moment-matched approximation, e.g. a Gaussian-likelihood reference
        point for Setup 3.
    """
    info: Mapping[str, Any] = adata.uns["synthetic"]
    prior_info: Mapping[str, Any] = (prior_from if prior_from is not None else adata).uns["synthetic"]
    component_df = np.asarray(prior_info["component_df"], dtype=np.float64)
    noise_df = float(info["noise_df"])
    if require_exact and (np.isfinite(component_df).any() or np.isfinite(noise_df)):
        raise ValueError(
            "this dataset has Student-t prior components or noise: no exact Gaussian-mixture posterior; "
            "pass require_exact=False for the moment-matched Gaussian approximation"
        )
    is_t = np.isfinite(component_df)
    inflation = np.ones_like(component_df)
    inflation[is_t] = component_df[is_t] / (component_df[is_t] - 2.0)  # covariance of a t = scale * df/(df-2)
    return {
        "loadings": np.asarray(info["loadings"], dtype=np.float64),
        "weights": np.asarray(prior_info["weights"], dtype=np.float64),
        "means": np.asarray(prior_info["means"], dtype=np.float64),
        "covariances": np.asarray(prior_info["covariances"], dtype=np.float64) * inflation[:, None, None],
        "noise_var": float(info["noise_marginal_var"]),
    }


def embedding_affine_map(
    *, true_loadings: np.ndarray, gene_mean: np.ndarray, gene_std: np.ndarray, loadings: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(A, b)`` such that the embedding of the clean signal ``V u`` is ``A u + b``.

    The embedding is ``E(x) = W^T ((x - m) / s)``, so ``E(V u) = W^T diag(1/s) V u - W^T (m / s)``:
    ``A = W^T diag(1/s) V`` (k_W × k) and ``b = -W^T (m / s)``.
    """
    gene_std = np.asarray(gene_std, dtype=np.float64).ravel()
    gene_mean = np.asarray(gene_mean, dtype=np.float64).ravel()
    scaled_loadings = np.asarray(loadings, dtype=np.float64) / gene_std[:, None]  # diag(1/s) W
    return scaled_loadings.T @ np.asarray(true_loadings, dtype=np.float64), -scaled_loadings.T @ gene_mean


def latents_to_embedding_coords(
    latents: np.ndarray,
    *,
    true_loadings: np.ndarray,
    gene_mean: np.ndarray,
    gene_std: np.ndarray,
    loadings: np.ndarray,
) -> np.ndarray:
    """Embed the clean signal ``V u`` of latents (any shape ``(..., k)``: true latents, posterior means or
    posterior samples) with the fitted linear map; compare the result with a method's embedding."""
    A, b = embedding_affine_map(true_loadings=true_loadings, gene_mean=gene_mean, gene_std=gene_std, loadings=loadings)
    return np.asarray(latents, dtype=np.float64) @ A.T + b


def to_embedding_coords(
    mean: np.ndarray,
    cov: np.ndarray,
    *,
    true_loadings: np.ndarray,
    gene_mean: np.ndarray,
    gene_std: np.ndarray,
    loadings: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and covariance of the embedded clean signal ``E(V u)``: ``A mean + b``, ``A cov A^T``.

    Parameters
    ----------
    mean, cov
        Posterior mean (cells × k) and covariance (cells × k × k) of ``u``, e.g. from :func:`exact_posterior`.
    true_loadings
        The true ``V`` (genes × k).
    gene_mean, gene_std
        Per-gene reference mean ``m`` and standard deviation ``s`` used to standardise genes.
    loadings
        Fitted orthonormal loadings ``W`` (genes × k_W).
    """
    A, b = embedding_affine_map(true_loadings=true_loadings, gene_mean=gene_mean, gene_std=gene_std, loadings=loadings)
    return np.asarray(mean, dtype=np.float64) @ A.T + b, np.einsum("ak,nkl,bl->nab", A, cov, A)
