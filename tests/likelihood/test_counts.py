"""The count measurement against exact answers on a toy: known loadings, Poisson / NB counts, k = 2."""

from __future__ import annotations

import numpy as np
import pytest

from dice.likelihood._counts import CountReference, count_measurement, fit_count_reference
from dice.likelihood._dispersion import local_dispersion
from dice.likelihood._newton import decoded_rates
from helpers import toy_embedding

N_GENES, K = 80, 2


@pytest.fixture(scope="module")
def toy():
    """An embedding-like object with orthonormal loadings (:func:`helpers.toy_embedding`)."""
    return toy_embedding(np.random.default_rng(0), N_GENES, K)


def _flat(prior_var: float = 1e8) -> CountReference:
    return CountReference(np.zeros(N_GENES), np.zeros(N_GENES), np.full(K, prior_var))


def _expected(embedding, ref, u, depth):
    rate, _ = decoded_rates(
        np.atleast_2d(u), embedding.mean, embedding.std, embedding.loadings, 1.0, ref.floor, ref.min_rate
    )
    return depth * rate / rate.sum(axis=1, keepdims=True)


def _sample(embedding, ref, u, depth, seed, alpha=0.0):
    rng = np.random.default_rng(seed)
    lam = _expected(embedding, ref, u, depth)
    if alpha > 0:  # negative binomial as a gamma-Poisson mixture
        lam = lam * rng.gamma(1.0 / alpha, alpha, size=lam.shape)
    return rng.poisson(lam).astype(float)


def _exact_moments(embedding, ref, counts, prior_var=None, half_width=6.0, n=301, centre=None):
    """Mean and covariance of the exact (multinomial) likelihood x prior on a 2-D grid."""
    centre = np.zeros(K) if centre is None else centre
    axis = np.linspace(-half_width, half_width, n)
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, K) + centre
    lam = _expected(embedding, ref, grid, counts.sum())
    log_post = np.sum(counts * np.log(lam), axis=1)  # the multinomial: sum(lam) is the fixed depth
    if prior_var is not None:
        log_post -= 0.5 * np.sum(grid**2, axis=1) / prior_var
    weight = np.exp(log_post - log_post.max())
    weight /= weight.sum()
    mean = weight @ grid
    diff = grid - mean
    return mean, (diff * weight[:, None]).T @ diff


@pytest.mark.parametrize("depth", [400, 3000])
def test_gaussian_approximation_matches_quadrature(toy, depth):
    ref = _flat()
    u_true = np.array([1.5, -1.0])
    counts = _sample(toy, ref, u_true, depth, seed=1)
    meas = count_measurement(counts, toy, ref, return_covariance=True)
    mean, cov = _exact_moments(
        toy, ref, counts[0], centre=meas.scores[0].astype(float), half_width=6 * np.sqrt(cov_max(meas))
    )
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(meas.scores[0] - mean) < 0.15 * sd)
    assert np.allclose(meas.covariance[0], cov, rtol=0.15, atol=0.05 * sd.max() ** 2)
    assert meas.noise_var[0] == pytest.approx(np.trace(meas.covariance[0]) / K)


def cov_max(meas) -> float:
    return float(np.linalg.eigvalsh(meas.covariance[0]).max())


def test_divided_out_prior_recombines_to_the_exact_posterior(toy):
    """N(y; u, H^-1) times the Gaussian prior reproduces the exact posterior under that prior."""
    prior_var = 0.5
    ref = _flat(prior_var)
    counts = _sample(toy, ref, np.array([0.8, 0.4]), 300, seed=2)
    meas = count_measurement(counts, toy, ref, level="mean_var", return_covariance=True)
    precision = np.linalg.inv(meas.covariance[0])
    post_cov = np.linalg.inv(precision + np.eye(K) / prior_var)
    post_mean = post_cov @ precision @ meas.scores[0]
    mean, cov = _exact_moments(toy, ref, counts[0], prior_var=prior_var, half_width=4.0)
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(post_mean - mean) < 0.1 * sd)
    assert np.allclose(post_cov, cov, rtol=0.1, atol=0.05 * sd.max() ** 2)
    # the matched isotropic measurement keeps that posterior mean under the same Gaussian prior
    matched = count_measurement(counts, toy, ref, level="matched")
    shrink = prior_var / (prior_var + matched.noise_var[0])
    np.testing.assert_allclose(shrink * matched.scores[0], post_mean, rtol=1e-3, atol=1e-3 * sd.max())
    assert matched.noise_var[0] == pytest.approx(meas.noise_var[0])


def test_noise_grows_as_depth_falls(toy):
    ref = _flat(4.0)
    rng = np.random.default_rng(3)
    states = rng.normal(size=(200, K))
    counts = np.concatenate([_sample(toy, ref, u, 2000, seed=i) for i, u in enumerate(states)])
    levels = []
    for f in (1.0, 0.5, 0.2, 0.1, 0.05):
        thinned = rng.binomial(counts.astype(int), f).astype(float)
        levels.append(count_measurement(thinned, toy, ref).noise_var)
    levels = np.array(levels)
    assert np.all(np.diff(levels.mean(axis=1)) > 0)
    assert np.mean(np.diff(levels, axis=0) > 0) > 0.95  # cell by cell, too
    # Poisson information is proportional to depth: halving the depth about doubles the variance
    assert levels[1].mean() / levels[0].mean() == pytest.approx(2.0, rel=0.2)


def test_missing_genes_widen_the_measurement(toy):
    ref = _flat(4.0)
    states = np.random.default_rng(4).normal(size=(100, K))
    counts = np.concatenate([_sample(toy, ref, u, 1000, seed=i) for i, u in enumerate(states)])
    present = np.arange(N_GENES) % 2 == 0
    full = count_measurement(counts, toy, ref)
    half = count_measurement(counts, toy, ref, present=present)
    assert np.mean(half.noise_var > full.noise_var) > 0.95
    # counts of absent genes are ignored entirely
    scrambled = counts.copy()
    scrambled[:, ~present] = 1000.0
    again = count_measurement(scrambled, toy, ref, present=present)
    np.testing.assert_allclose(again.scores, half.scores, rtol=1e-5, atol=1e-5)


def test_deep_cells_recover_the_latent_with_calibrated_noise(toy):
    ref = _flat(4.0)
    states = np.random.default_rng(5).normal(size=(300, K))
    counts = np.concatenate([_sample(toy, ref, u, 50_000, seed=i) for i, u in enumerate(states)])
    meas = count_measurement(counts, toy, ref)
    error = meas.scores - states
    assert np.sqrt(np.mean(error**2)) < 0.1 * np.sqrt(np.mean(states**2))
    # the reported variance matches the actual error (z^2 averages ~1 per dimension)
    assert np.mean(error**2 / meas.noise_var[:, None]) == pytest.approx(1.0, abs=0.25)


def test_reference_fit_recovers_dispersion_and_calibrates_noise(toy):
    alpha = 0.3
    flat = _flat(4.0)
    states = np.random.default_rng(6).normal(size=(600, K))
    counts = np.concatenate([_sample(toy, flat, u, 3000, seed=i, alpha=alpha) for i, u in enumerate(states)])
    ref = fit_count_reference(counts, toy, latents=states, dispersion="gene")
    assert np.median(ref.dispersion) == pytest.approx(alpha, rel=0.3)
    assert np.max(np.abs(ref.gene_scale)) < 0.1  # the decoder is right: no rescaling needed
    for model, calibrated in ((flat, False), (ref, True)):
        meas = count_measurement(counts, toy, model)
        z2 = np.mean((meas.scores - states) ** 2 / meas.noise_var[:, None])
        # Poisson is overconfident on overdispersed counts; the fitted dispersion puts z^2 back near 1
        assert (abs(z2 - 1.0) < 0.3) == calibrated


def test_pooled_dispersion_is_one_moment_estimate_that_misfit_genes_do_not_inflate(toy):
    """The five least expressed genes mark a small population the two latent dimensions cannot express (8x up
    in a fifth of the cells): their own dispersions count it as noise and come out several times the true
    0.3, which down-weights them; the pooled estimate is one value for every gene and stays at 0.3."""
    alpha, rng = 0.3, np.random.default_rng(11)
    flat = _flat(4.0)
    states = rng.normal(size=(600, K))
    lam = _expected(toy, flat, states, 3000)
    markers = np.argsort(toy.mean)[:5]
    lam[: lam.shape[0] // 5, markers] *= 8.0  # outside the decoder's span
    counts = rng.poisson(lam * rng.gamma(1.0 / alpha, alpha, size=lam.shape)).astype(float)
    gene = fit_count_reference(counts, toy, latents=states, dispersion="gene")
    pooled = fit_count_reference(counts, toy, latents=states, dispersion="pooled")
    assert np.all(pooled.dispersion == pooled.dispersion[0])
    assert pooled.dispersion[0] == pytest.approx(alpha, rel=0.15)
    assert np.median(np.delete(gene.dispersion, markers)) == pytest.approx(alpha, rel=0.15)
    assert np.min(gene.dispersion[markers]) > 5 * pooled.dispersion[0]
    with pytest.raises(ValueError, match="dispersion must be"):
        fit_count_reference(counts, toy, dispersion="cell")


def test_local_dispersion_follows_structure_the_decoder_cannot_express(toy):
    """The five least expressed genes are 8x up in a region of the latent space (a step the linear decoder
    cannot express): around each cell's neighbours their dispersions come out much nearer the true 0.3 than
    around the decoder, and every other gene's stays at 0.3 (the neighbours' own sampling noise is
    subtracted)."""
    alpha, rng = 0.3, np.random.default_rng(11)
    states = rng.normal(size=(1500, K))
    lam = _expected(toy, _flat(4.0), states, 3000)
    markers = np.argsort(toy.mean)[:5]
    lam[np.ix_(states[:, 0] > 0.85, markers)] *= 8.0  # a fifth of the cells, one corner of the space
    counts = rng.poisson(lam * rng.gamma(1.0 / alpha, alpha, size=lam.shape)).astype(float)
    gene = fit_count_reference(counts, toy, latents=states, dispersion="gene")
    local = fit_count_reference(counts, toy, latents=states, dispersion="local")
    assert np.median(np.delete(local.dispersion, markers)) == pytest.approx(alpha, rel=0.1)
    assert np.mean(gene.dispersion[markers]) > 5 * alpha
    assert np.mean(local.dispersion[markers]) < 0.6 * np.mean(gene.dispersion[markers])
    sub = local_dispersion(counts, toy, max_cells=800, seed=1)  # a seeded subsample of the cells
    np.testing.assert_array_equal(sub, local_dispersion(counts, toy, max_cells=800, seed=1))
    assert np.median(np.delete(sub, markers)) == pytest.approx(alpha, rel=0.2)
    small = local_dispersion(counts[:6], toy)  # fewer cells than neighbours: every other cell is one
    assert small.shape == (N_GENES,) and np.all(np.isfinite(small)) and np.all(small >= 0)
    with pytest.raises(ValueError, match="at least 2"):
        local_dispersion(counts[:1], toy)


def test_ambient_fraction_recovers_soup_contaminated_cells(toy):
    """Cells of one type with 15 % ambient RNA from another type's expression (a T cell's monocyte soup):
    the model that knows the soup recovers their states and reports the noise they really have; without
    it the states are pulled towards the soup's type and the reported noise is far too small."""
    rho, depth = 0.15, 2000
    flat = _flat(4.0)
    rng = np.random.default_rng(8)
    states = rng.normal(size=(400, K)) - 1.5
    soup = _expected(toy, flat, rng.normal(size=(50, K)) + 3.0, 1.0).mean(axis=0)  # another type's profile
    counts = rng.poisson((1.0 - rho) * _expected(toy, flat, states, depth) + rho * depth * soup).astype(float)
    error, z2 = {}, {}
    for fraction in (0.0, rho):
        model = CountReference(
            np.zeros(N_GENES), np.zeros(N_GENES), np.full(K, 4.0), ambient=soup, ambient_fraction=fraction
        )
        meas = count_measurement(counts, toy, model)
        error[fraction] = np.mean((meas.scores - states) ** 2)
        z2[fraction] = np.mean((meas.scores - states) ** 2 / meas.noise_var[:, None])  # ~1 when calibrated
    assert error[rho] < 0.5 * error[0.0]
    assert z2[rho] == pytest.approx(1.0, abs=0.3)
    assert z2[0.0] > 2.0


def test_ambient_profile_is_the_pooled_reference_and_off_by_default(toy):
    states = np.random.default_rng(9).normal(size=(200, K))
    counts = np.concatenate([_sample(toy, _flat(4.0), u, 800, seed=i) for i, u in enumerate(states)])
    off = fit_count_reference(counts, toy, latents=states)
    pooled = counts.sum(axis=0) + 1e-3
    np.testing.assert_allclose(off.ambient, pooled / pooled.sum())
    assert off.ambient_fraction == 0.0 and off.ambient_profile(np.ones(N_GENES, dtype=bool)) is None
    on = fit_count_reference(counts, toy, latents=states, ambient_fraction=0.1)
    present = np.arange(N_GENES) % 3 > 0
    np.testing.assert_allclose(on.ambient_profile(present).sum(), 1.0)
    a, b = (count_measurement(counts, toy, ref) for ref in (off, on))
    assert np.median(b.noise_var / a.noise_var) > 1.0  # soup counts carry no information on the state


def test_threads_do_not_change_the_result(toy):
    """Blocks solved in threads give bit-for-bit the single-thread measurement and reference fit."""
    ref = _flat(4.0)
    states = np.random.default_rng(7).normal(size=(90, K))
    counts = np.concatenate([_sample(toy, ref, u, 500, seed=i) for i, u in enumerate(states)])
    one = count_measurement(counts, toy, ref, block_size=16, n_threads=1, return_covariance=True)
    three = count_measurement(counts, toy, ref, block_size=16, n_threads=3, return_covariance=True)
    for a, b in ((one.scores, three.scores), (one.noise_var, three.noise_var), (one.covariance, three.covariance)):
        np.testing.assert_array_equal(a, b)
    fits = [fit_count_reference(counts, toy, block_size=16, n_threads=n) for n in (1, 3)]
    np.testing.assert_array_equal(fits[0].dispersion, fits[1].dispersion)
    np.testing.assert_array_equal(fits[0].gene_scale, fits[1].gene_scale)
    with pytest.raises(ValueError, match="n_threads"):
        count_measurement(counts, toy, ref, n_threads=0)
