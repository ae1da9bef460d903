import numpy as np
import pytest

from dice._validation import DiceInputError
from dice.likelihood import GaussianLikelihood
from dice.pp._linear import LinearEmbedding, choose_n_comps
from helpers import make_clusters


def fit_loadings(adata, **kwargs):
    return LinearEmbedding.fit(adata.X, adata.var_names, **kwargs)


def test_loadings_are_orthonormal_and_projection_matches():
    adata = make_clusters(300, n_genes=40)
    emb = fit_loadings(adata, n_comps=6)
    np.testing.assert_allclose(emb.loadings.T @ emb.loadings, np.eye(6), atol=1e-5)
    standardised = emb.standardize(adata.X)
    np.testing.assert_allclose(standardised.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(standardised.std(axis=0, ddof=1), 1.0, atol=1e-3)
    np.testing.assert_allclose(emb.project(standardised), standardised @ emb.loadings, rtol=1e-5, atol=1e-5)


def test_loadings_span_the_true_factors():
    adata = make_clusters(800, n_genes=50, n_latent=4, noise=0.3)
    emb = fit_loadings(adata, n_comps=4)
    true = np.random.default_rng(123).normal(size=(50, 4)) / emb.std[:, None]
    q, _ = np.linalg.qr(true)
    # principal angles between the fitted and the true 4-d subspaces are small
    cosines = np.linalg.svd(q.T @ emb.loadings, compute_uv=False)
    assert cosines.min() > 0.95


def test_noise_variance_estimate_matches_truth():
    rng = np.random.default_rng(0)
    n, d, k = 2000, 300, 5
    x = rng.normal(size=(n, k)) @ rng.normal(size=(d, k)).T * 3 + rng.normal(size=(n, d))
    emb = LinearEmbedding.fit(x, [f"g{i}" for i in range(d)], n_comps=k, max_value=None, check_values=False)
    expected = np.mean(1.0 / x.var(axis=0, ddof=1))  # unit noise per gene, divided by each gene's variance
    assert emb.noise_var == pytest.approx(expected, rel=0.15)


def _heteroscedastic(n: int, seed: int, noise_sd: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    latents = rng.normal(size=(n, factors.shape[1])) * 2
    return latents, latents @ factors.T + rng.normal(size=(n, len(noise_sd))) * noise_sd


def test_gene_noise_variances_match_truth_and_weighting_beats_plain_projection():
    """Genes with different noise levels: the per-gene estimate tracks them, and the gene-weighted
    projection measures the clean signal better than ``V^T x`` (it is the efficient estimate)."""
    d, k = 200, 4
    rng = np.random.default_rng(7)
    factors = rng.normal(size=(d, k))
    noise_sd = np.where(np.arange(d) % 2 == 0, 0.5, 3.0)
    _, ref = _heteroscedastic(3000, 1, noise_sd, factors)
    emb = LinearEmbedding.fit(ref, [f"g{i}" for i in range(d)], n_comps=k, max_value=None, check_values=False)
    truth = noise_sd**2 / ref.var(axis=0, ddof=1)  # standardised units
    assert np.corrcoef(emb.gene_noise_var, truth)[0, 1] > 0.95
    np.testing.assert_allclose(np.median(emb.gene_noise_var / truth), 1.0, atol=0.1)

    latents, query = _heteroscedastic(500, 2, noise_sd, factors)
    standardised = emb.standardize(query)
    clean = emb.standardize(latents @ factors.T) @ emb.loadings  # the noise-free cells, embedded
    projector, covariance = emb.weighted_projection()
    weighted = standardised @ projector
    plain = standardised @ emb.loadings
    error_weighted = ((weighted - clean) ** 2).sum(1).mean()
    error_plain = ((plain - clean) ** 2).sum(1).mean()
    assert error_weighted < 0.6 * error_plain
    # the stated noise covariance matches the weighted estimate's actual error, on the conservative side:
    # unweighted PCA tilts the loadings towards the noisy genes, so the quiet genes' residual variance is
    # overestimated (by ~20 % with this extreme 6x noise ratio)
    assert 0.9 < np.trace(covariance) / error_weighted < 1.5
    _, scale = GaussianLikelihood(emb, "gene_weighted").measure_block(standardised)
    assert scale.mean() == pytest.approx(1.0, rel=0.1)  # same noise as the reference


def test_equal_noise_weighting_is_the_plain_projection():
    adata = make_clusters(300, n_genes=40)
    emb = fit_loadings(adata, n_comps=5)
    emb.gene_noise_var = np.full(emb.n_genes, 0.3, dtype=np.float32)
    projector, covariance = emb.weighted_projection()
    np.testing.assert_allclose(projector, emb.loadings, atol=1e-5)
    np.testing.assert_allclose(covariance, 0.3 * np.eye(5), atol=1e-5)


def test_constant_genes_get_a_finite_floored_weight():
    adata = make_clusters(300, n_genes=40)
    adata.X[:, 0] = 1.0
    emb = fit_loadings(adata, n_comps=5)
    assert np.all(np.isfinite(emb.gene_noise_var))
    assert emb.gene_noise_var[0] == pytest.approx(0.1 * np.median(emb.gene_noise_var[1:]), rel=0.05)


def test_elbow_finds_the_knee():
    spectrum = np.concatenate([np.linspace(100, 60, 12), np.linspace(10, 8, 38)])
    assert choose_n_comps(spectrum) == 13
    assert choose_n_comps(spectrum, min_comps=20) == 20


def test_n_comps_too_large_is_refused():
    adata = make_clusters(30, n_genes=10)
    with pytest.raises(DiceInputError, match="n_comps=11"):
        fit_loadings(adata, n_comps=11)
    with pytest.raises(DiceInputError, match="n_comps=30"):
        fit_loadings(make_clusters(30, n_genes=100), n_comps=30)
