from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats

from dice.datasets import (
    embedding_affine_map,
    exact_posterior,
    latents_to_embedding_coords,
    posterior_parameters,
    sample_exact_posterior,
    synthetic,
    to_embedding_coords,
)


def _random_mixture(rng: np.random.Generator, n_components: int, k: int) -> dict[str, np.ndarray]:
    factors = rng.standard_normal((n_components, k, k))
    return {
        "weights": rng.dirichlet(np.ones(n_components)),
        "means": 2 * rng.standard_normal((n_components, k)),
        "covariances": factors @ factors.transpose(0, 2, 1) + 0.3 * np.eye(k),
    }


def _brute_force(X, loadings, weights, means, covariances, noise_var):
    """Textbook per-component formulas with the explicit d × d marginal covariance."""
    d = loadings.shape[0]
    comp_means, comp_covs, log_joint = [], [], []
    for w, m, C in zip(weights, means, covariances):
        marginal = loadings @ C @ loadings.T + noise_var * np.eye(d)
        gain = C @ loadings.T @ np.linalg.inv(marginal)
        comp_means.append(m + (X - loadings @ m) @ gain.T)
        comp_covs.append(C - gain @ loadings @ C)
        log_joint.append(np.log(w) + stats.multivariate_normal(loadings @ m, marginal).logpdf(X))
    log_joint = np.stack(log_joint, axis=1)
    resp = np.exp(log_joint - log_joint.max(1, keepdims=True))
    resp /= resp.sum(1, keepdims=True)
    mean = sum(r[:, None] * mu for r, mu in zip(resp.T, comp_means))
    cov = sum(
        r[:, None, None] * (S + np.einsum("nk,nl->nkl", mu - mean, mu - mean))
        for r, mu, S in zip(resp.T, comp_means, comp_covs)
    )
    return mean, cov, resp


def test_matches_brute_force_on_tiny_case() -> None:
    rng = np.random.default_rng(0)
    k, d, n = 2, 4, 7
    prior = _random_mixture(rng, 3, k)
    loadings = rng.standard_normal((d, k))
    X = rng.standard_normal((n, d)) * 3
    mean, cov, resp = exact_posterior(X, loadings=loadings, noise_var=0.7, **prior)
    expected = _brute_force(X, loadings, noise_var=0.7, **prior)
    for got, want in zip((mean, cov, resp), expected):
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)
    # The components really compete in this case (otherwise the check would be weak).
    assert (resp.max(1) < 0.99).any()


def test_matches_numerical_integration_in_one_dimension() -> None:
    rng = np.random.default_rng(1)
    loadings = rng.standard_normal((3, 1))
    weights, means, variances = np.array([0.3, 0.7]), np.array([[-2.0], [1.5]]), np.array([0.5, 1.2])
    X = np.array([[0.1, -0.4, 0.9], [2.0, 1.0, -1.0], [-3.0, 0.5, 0.2]])
    noise_var = 2.0
    mean, cov, resp = exact_posterior(
        X,
        loadings=loadings,
        weights=weights,
        means=means,
        covariances=variances[:, None, None],
        noise_var=noise_var,
    )
    grid = np.linspace(-15, 15, 200_001)
    prior_parts = [w * stats.norm(m[0], np.sqrt(v)).pdf(grid) for w, m, v in zip(weights, means, variances)]
    for i, x in enumerate(X):
        likelihood = np.exp(-((x[None] - grid[:, None] * loadings[:, 0]) ** 2).sum(1) / (2 * noise_var))
        joint = [p * likelihood for p in prior_parts]
        evidence = np.trapezoid(sum(joint), grid)
        post_mean = np.trapezoid(grid * sum(joint), grid) / evidence
        post_var = np.trapezoid((grid - post_mean) ** 2 * sum(joint), grid) / evidence
        np.testing.assert_allclose(mean[i, 0], post_mean, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(cov[i, 0, 0], post_var, rtol=1e-6)
        np.testing.assert_allclose(resp[i], [np.trapezoid(j, grid) / evidence for j in joint], rtol=1e-6)


def test_sparse_and_float32_inputs_agree_with_dense() -> None:
    reference, _ = synthetic(1, n_reference=50, n_query=5, n_genes=40)
    params = posterior_parameters(reference)
    dense = exact_posterior(reference.X.astype(np.float64), **params)
    for X in (reference.X, sp.csr_matrix(reference.X)):
        for got, want in zip(exact_posterior(X, **params), dense):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_posterior_mean_beats_least_squares_on_setup_2() -> None:
    _, query = synthetic(2, n_reference=10, n_query=400, n_genes=100)
    params = posterior_parameters(query)
    truth = query.obsm["X_true_latent"]
    mean, cov, _ = exact_posterior(query.X, **params)
    least_squares = np.linalg.lstsq(params["loadings"], query.X.T.astype(np.float64), rcond=None)[0].T
    mse_bayes = ((mean - truth) ** 2).sum(1).mean()
    mse_least_squares = ((least_squares - truth) ** 2).sum(1).mean()
    assert mse_bayes < 0.95 * mse_least_squares
    # The posterior covariance is calibrated: its trace predicts the squared error.
    assert abs(mse_bayes / np.trace(cov, axis1=1, axis2=2).mean() - 1) < 0.15


def _coverage(samples: np.ndarray, truth: np.ndarray, level: float = 0.9) -> float:
    """Fraction of cells whose true latent lies in a sample-based region of posterior mass ``level``.

    The region is an ellipsoid: centre and shape from the even samples, radius the ``level`` quantile of the
    odd samples' Mahalanobis distances (held out, since in-sample distances are biased low). Any region of
    posterior mass ``level`` covers the truth with probability ``level`` when the posterior is right.
    """
    shape_samples, radius_samples = samples[::2], samples[1::2]
    centre = shape_samples.mean(0)
    centred = shape_samples - centre
    precision = np.linalg.inv(np.einsum("snk,snl->nkl", centred, centred) / (len(centred) - 1))
    radius_dist = np.einsum("snk,nkl,snl->sn", radius_samples - centre, precision, radius_samples - centre)
    truth_dist = np.einsum("nk,nkl,nl->n", truth - centre, precision, truth - centre)
    return float(np.mean(truth_dist <= np.quantile(radius_dist, level, axis=0)))


def test_credible_region_coverage() -> None:
    # Few genes: the posterior is wide and often bimodal, so the mixture part of the sampler matters.
    _, query = synthetic(2, n_reference=10, n_query=1500, n_genes=20, seed=5)
    params = posterior_parameters(query)
    truth = query.obsm["X_true_latent"]
    mean, cov, resp = exact_posterior(query.X, **params)
    assert (resp.max(1) < 0.9).mean() > 0.1
    # E[(u - mean)^T cov^-1 (u - mean)] = k exactly when mean and cov are the posterior's (sd here ~0.15).
    residual = truth - mean
    assert abs(np.einsum("nk,nkl,nl->n", residual, np.linalg.inv(cov), residual).mean() - 15) < 0.6
    samples = sample_exact_posterior(query.X, **params, n_samples=400, seed=0)
    assert samples.shape == (400, 1500, 15)
    # Expected 0.9 up to the order-statistic bias of a 200-sample quantile (~0.004); binomial sd ~0.008.
    assert abs(_coverage(samples, truth) - 0.9) < 0.03
    # The check has power: a posterior that trusts the data too much under-covers badly.
    overconfident = sample_exact_posterior(query.X, **{**params, "noise_var": 2.0}, n_samples=400, seed=0)
    assert _coverage(overconfident, truth) < 0.7


def test_samples_match_exact_moments() -> None:
    _, query = synthetic(2, n_reference=10, n_query=4, n_genes=20, seed=2)
    params = posterior_parameters(query)
    mean, cov, _ = exact_posterior(query.X, **params)
    samples = sample_exact_posterior(query.X, **params, n_samples=20_000, seed=1)
    np.testing.assert_allclose(samples.mean(0), mean, atol=4 * np.sqrt(cov.diagonal(0, 1, 2).max() / 20_000))
    centred = samples - samples.mean(0)
    sample_cov = np.einsum("snk,snl->nkl", centred, centred) / (len(samples) - 1)
    np.testing.assert_allclose(sample_cov, cov, atol=0.05 * np.abs(cov).max())
    again = sample_exact_posterior(query.X, **params, n_samples=10, seed=1)
    np.testing.assert_array_equal(again, sample_exact_posterior(query.X, **params, n_samples=10, seed=1))


def test_posterior_parameters_for_misspecified_setups() -> None:
    reference, query = synthetic(4, n_reference=10, n_query=10, n_genes=20)
    with pytest.raises(ValueError, match="Student-t"):
        posterior_parameters(query)
    under_training_prior = posterior_parameters(query, prior_from=reference)
    np.testing.assert_array_equal(under_training_prior["means"], reference.uns["synthetic"]["means"])
    assert under_training_prior["noise_var"] == 10.0
    matched = posterior_parameters(query, require_exact=False)
    np.testing.assert_allclose(np.diagonal(matched["covariances"], axis1=1, axis2=2)[:, 0], [1.5, 1.3 * 2])

    _, t_noise_query = synthetic(3, n_reference=10, n_query=10, n_genes=20)
    with pytest.raises(ValueError, match="Student-t"):
        posterior_parameters(t_noise_query)
    assert posterior_parameters(t_noise_query, require_exact=False)["noise_var"] == 2.0


def _fitted_embedding(reference):
    """Gene mean / std of the reference and its top-k PCA loadings, as a linear embedding would fit them."""
    X = reference.X.astype(np.float64)
    gene_mean, gene_std = X.mean(0), X.std(0)
    _, _, vt = np.linalg.svd((X - gene_mean) / gene_std, full_matrices=False)
    return gene_mean, gene_std, vt[:15].T


def test_embedding_coordinates_match_direct_computation() -> None:
    reference, query = synthetic(1, n_reference=200, n_query=30, n_genes=50)
    gene_mean, gene_std, W = _fitted_embedding(reference)
    V = reference.uns["synthetic"]["loadings"]
    kwargs = {"true_loadings": V, "gene_mean": gene_mean, "gene_std": gene_std, "loadings": W}

    def embed(genes):  # E(x) = W^T ((x - m) / s), applied in gene space
        return ((genes - gene_mean) / gene_std) @ W

    truth = query.obsm["X_true_latent"]
    np.testing.assert_allclose(latents_to_embedding_coords(truth, **kwargs), embed(truth @ V.T), atol=1e-10)

    mean, cov, _ = exact_posterior(query.X, **posterior_parameters(query))
    embedded_mean, embedded_cov = to_embedding_coords(mean, cov, **kwargs)
    np.testing.assert_allclose(embedded_mean, embed(mean @ V.T), atol=1e-10)
    # Jacobian of u -> E(V u), column by column through gene space.
    jacobian = np.stack([embed(V[:, i]) - embed(np.zeros(V.shape[0])) for i in range(V.shape[1])], axis=1)
    np.testing.assert_allclose(embedded_cov, jacobian @ cov @ jacobian.T, atol=1e-10)
    A, b = embedding_affine_map(**kwargs)
    np.testing.assert_allclose(A, jacobian, atol=1e-10)
    np.testing.assert_allclose(b, embed(np.zeros(V.shape[0])), atol=1e-10)
    # Samples of any leading shape map the same way.
    samples = sample_exact_posterior(query.X, **posterior_parameters(query), n_samples=3, seed=0)
    np.testing.assert_allclose(latents_to_embedding_coords(samples, **kwargs), embed(samples @ V.T), atol=1e-10)
