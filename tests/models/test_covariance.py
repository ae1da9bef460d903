"""Second-order Tweedie posterior variance against closed forms (exact noise predictors from oracle.py)."""

import numpy as np
import pytest
import torch
from oracle import (
    GaussianCovarianceOracle,
    GaussianMixtureOracle,
    GaussianOracle,
    gaussian_posterior,
    gaussian_posterior_cov,
    mixture_posterior,
)
from torch import nn

from dice._validation import DiceInputError
from dice.models import NoiseSchedule
from dice.models._covariance import jacobian_covariance, jacobian_variance, mean_variance
from dice.models._posterior import CHUNK_CELLS, sample_posterior
from dice.tl import PosteriorSettings

SCHEDULE = NoiseSchedule(512)


def _anisotropic(k: int = 4, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    factor = torch.randn(k, k, generator=generator, dtype=torch.float64)
    cov = factor @ factor.T / k + 0.2 * torch.eye(k, dtype=torch.float64)
    mean = torch.randn(k, generator=generator)
    return GaussianCovarianceOracle(SCHEDULE, mean, cov), mean, cov


@pytest.mark.parametrize("tau", [0.02, 0.2, 1.0, 4.0])
def test_full_covariance_and_exact_diagonal_match_the_gaussian_posterior(tau):
    oracle, _, cov = _anisotropic()
    z = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    noise_std = torch.full((8,), tau)
    expected = gaussian_posterior_cov(cov, tau**2)
    full = jacobian_covariance(oracle, SCHEDULE, z, noise_std).double()
    diagonal = jacobian_variance(oracle, SCHEDULE, z, noise_std, torch.Generator(), n_probes=4).double()
    for row in range(8):
        np.testing.assert_allclose(full[row], expected, rtol=2e-3, atol=1e-6 * tau**2)
        np.testing.assert_allclose(diagonal[row], torch.diagonal(expected), rtol=2e-3, atol=1e-6 * tau**2)


def test_rademacher_probes_are_unbiased_and_exact_for_an_isotropic_posterior():
    oracle, _, cov = _anisotropic()
    n, tau = 4000, 0.7
    z = torch.zeros(n, 4)
    estimate = mean_variance(oracle, SCHEDULE, z, torch.full((n,), tau), torch.Generator().manual_seed(0), n_probes=2)
    exact = float(torch.diagonal(gaussian_posterior_cov(cov, tau**2)).mean())
    assert estimate.std() > 0  # off-diagonal terms make single estimates noisy
    assert abs(float(estimate.mean()) - exact) < 4 * float(estimate.std()) / np.sqrt(n)
    isotropic = GaussianOracle(SCHEDULE, torch.zeros(4), 1.5)
    one = mean_variance(isotropic, SCHEDULE, z[:5], torch.full((5,), tau), torch.Generator(), n_probes=1)
    _, var = gaussian_posterior(torch.zeros(4), torch.zeros(4), 1.5, tau**2)
    np.testing.assert_allclose(one.numpy(), var, rtol=1e-3)


def test_the_variance_of_a_multimodal_posterior_between_modes():
    """Between two modes the posterior variance exceeds the noise variance; the formula still holds."""
    means, weights, var = torch.tensor([[-1.0, 0.0], [1.0, 0.0]]), torch.tensor([0.4, 0.6]), 0.05
    oracle = GaussianMixtureOracle(SCHEDULE, means, var, weights)
    for z, tau in (([0.0, 0.0], 0.3), ([0.3, -0.2], 0.5), ([-1.1, 0.1], 0.2)):
        _, expected = mixture_posterior(torch.tensor(z), means, var, weights, tau**2)
        full = jacobian_covariance(oracle, SCHEDULE, torch.tensor([z]), torch.tensor([tau]))[0].double()
        np.testing.assert_allclose(full, expected, rtol=5e-3, atol=1e-5)
    _, between = mixture_posterior(torch.zeros(2), means, var, weights, 0.3**2)
    assert between[0, 0] > 0.3**2


def test_spread_is_monotone_in_the_noise_level():
    oracle, _, _ = _anisotropic()
    z = torch.randn(1, 4, generator=torch.Generator().manual_seed(2)).expand(12, 4).contiguous()
    levels = torch.logspace(-2, 0.5, 12)
    variance = mean_variance(oracle, SCHEDULE, z, levels, torch.Generator(), n_probes=4)
    assert torch.all(torch.diff(variance) > 0)


def test_variance_is_clamped_at_zero():
    class Overshoot(nn.Module):
        def forward(self, x, t):  # a predictor whose Jacobian is far too large: Cov = tau^2 (1 - 10) < 0
            a = SCHEDULE.alpha_bar_at(t.double() * SCHEDULE.n_timesteps).to(x.dtype)[:, None]
            return 10.0 * x * (a / (1 - a)).sqrt()

    z, levels = torch.ones(3, 2), torch.full((3,), 0.5)
    assert torch.all(mean_variance(Overshoot(), SCHEDULE, z, levels, torch.Generator()) == 0)
    assert torch.all(jacobian_variance(Overshoot(), SCHEDULE, z, levels, torch.Generator(), n_probes=2) == 0)


def _cells(n: int, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, k)).astype(np.float32) * 2.0, rng.uniform(0.2, 1.0, n)


@pytest.mark.parametrize("rho", [0.0, 0.5])
def test_sample_posterior_reports_the_exact_spread_of_the_draws_target(rho):
    """Latent units and the target level sigma^2 (1 + rho^2) are the draws' (scale 3, Gaussian prior)."""
    oracle, _, cov = _anisotropic()
    scale = 3.0
    scores, sigma2 = _cells(6, 4)
    settings = PosteriorSettings(rho=rho, uncertainty="jacobian", n_probes=4)  # exact: n_probes = k
    result = sample_posterior(oracle, SCHEDULE, scores * scale, sigma2 * scale**2, scale, settings, progress=False)
    assert result.uncertainty == "jacobian" and result.samples is None
    for cell in range(6):
        expected = gaussian_posterior_cov(cov, float(sigma2[cell]) * (1 + rho**2))
        np.testing.assert_allclose(
            result.spread[cell], scale * float(torch.diagonal(expected).mean()) ** 0.5, rtol=2e-3
        )
    draws = sample_posterior(
        oracle,
        SCHEDULE,
        np.repeat(scores[:1], 2, 0) * scale,
        np.repeat(sigma2[:1], 2) * scale**2,
        scale,
        settings.replace(uncertainty="samples", n_samples=2000),
        progress=False,
    )
    np.testing.assert_allclose(draws.spread, result.spread[0], rtol=0.05)


def test_jacobian_spread_is_deterministic_per_seed_and_keeps_the_draws():
    oracle, _, _ = _anisotropic()
    scores, sigma2 = _cells(CHUNK_CELLS + 20, 4, seed=3)
    settings = PosteriorSettings(uncertainty="jacobian", n_probes=2, n_samples=3)

    def run(seed, **changes):
        return sample_posterior(
            oracle, SCHEDULE, scores, sigma2, 1.0, settings.replace(**changes), seed=seed, progress=False
        )

    a, b, c = run(0), run(0), run(1)
    np.testing.assert_array_equal(a.spread, b.spread)
    assert not np.array_equal(a.spread, c.spread)
    assert np.all(a.spread > 0) and np.all(np.isfinite(a.spread))
    # the mean and (when stored) the draws do not depend on how the spread is computed
    kept = sample_posterior(oracle, SCHEDULE, scores, sigma2, 1.0, settings, seed=0, keep_samples=True, progress=False)
    drawn = sample_posterior(
        oracle,
        SCHEDULE,
        scores,
        sigma2,
        1.0,
        settings.replace(uncertainty="samples"),
        seed=0,
        keep_samples=True,
        progress=False,
    )
    np.testing.assert_array_equal(kept.samples, drawn.samples)
    np.testing.assert_array_equal(kept.mean, a.mean)
    np.testing.assert_array_equal(kept.spread, a.spread)
    assert drawn.uncertainty == "samples" and not np.array_equal(drawn.spread, a.spread)
    none = run(0, uncertainty="none")
    assert none.uncertainty == "none" and np.all(np.isnan(none.spread))
    np.testing.assert_array_equal(none.mean, a.mean)


def test_gibbs_sampler_uses_its_draws_and_settings_validate():
    assert PosteriorSettings().uncertainty_method == "jacobian"
    assert PosteriorSettings(sampler="gibbs").uncertainty_method == "samples"
    paper = PosteriorSettings.paper()
    assert paper.uncertainty == "samples" and paper.to_dict()["uncertainty"] == "samples"
    assert PosteriorSettings().to_dict()["n_probes"] == 4
    with pytest.raises(DiceInputError, match="uncertainty"):
        PosteriorSettings(uncertainty="hessian")
    with pytest.raises(DiceInputError, match="n_probes"):
        PosteriorSettings(n_probes=0)
    oracle = GaussianOracle(SCHEDULE, torch.zeros(2), 1.0)
    result = sample_posterior(
        oracle,
        SCHEDULE,
        np.ones((4, 2), dtype=np.float32),
        np.full(4, 0.5),
        1.0,
        PosteriorSettings(sampler="gibbs", rho=2.0, n_iter=2, prior_step="strided", n_prior_steps=3, n_samples=4),
        progress=False,
    )
    assert result.uncertainty == "samples" and np.all(result.spread > 0)
