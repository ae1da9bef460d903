import numpy as np
import pytest

import dice
from dice._validation import DiceInputError
from helpers import make_clusters


def test_loadings_are_orthonormal_and_projection_matches():
    adata = make_clusters(300, n_genes=40)
    emb = dice.pp.fit_loadings(adata, n_comps=6)
    np.testing.assert_allclose(emb.loadings.T @ emb.loadings, np.eye(6), atol=1e-5)
    standardised = emb.standardize(adata.X)
    np.testing.assert_allclose(standardised.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(standardised.std(axis=0, ddof=1), 1.0, atol=1e-3)
    dice.pp.project(adata, emb)
    np.testing.assert_allclose(adata.obsm["X_dice_pca"], standardised @ emb.loadings, rtol=1e-5, atol=1e-5)


def test_loadings_span_the_true_factors():
    adata = make_clusters(800, n_genes=50, n_latent=4, noise=0.3)
    emb = dice.pp.fit_loadings(adata, n_comps=4)
    true = np.random.default_rng(123).normal(size=(50, 4)) / emb.std[:, None]
    q, _ = np.linalg.qr(true)
    # principal angles between the fitted and the true 4-d subspaces are small
    cosines = np.linalg.svd(q.T @ emb.loadings, compute_uv=False)
    assert cosines.min() > 0.95


def test_noise_variance_estimate_matches_truth():
    rng = np.random.default_rng(0)
    n, d, k = 2000, 300, 5
    x = rng.normal(size=(n, k)) @ rng.normal(size=(d, k)).T * 3 + rng.normal(size=(n, d))
    emb = dice.pp.LinearEmbedding.fit(x, [f"g{i}" for i in range(d)], n_comps=k, max_value=None)
    expected = np.mean(1.0 / x.var(axis=0, ddof=1))  # unit noise per gene, divided by each gene's variance
    assert emb.noise_var == pytest.approx(expected, rel=0.15)


def test_elbow_finds_the_knee():
    spectrum = np.concatenate([np.linspace(100, 60, 12), np.linspace(10, 8, 38)])
    assert dice.pp.choose_n_comps(spectrum) == 13
    assert dice.pp.choose_n_comps(spectrum, min_comps=20) == 20


def test_n_comps_too_large_is_refused():
    adata = make_clusters(30, n_genes=10)
    with pytest.raises(DiceInputError, match="n_comps=11"):
        dice.pp.fit_loadings(adata, n_comps=11)
    with pytest.raises(DiceInputError, match="n_comps=30"):
        dice.pp.fit_loadings(make_clusters(30, n_genes=100), n_comps=30)
