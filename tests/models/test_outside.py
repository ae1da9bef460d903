"""Cells measured far outside the reference's latent states get the Gaussian-prior posterior (dice.models._outside)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from dice.models._outside import OUTSIDE_FACTOR, apply_gaussian_prior, latent_moments, outside_prior
from dice.models._posterior import PosteriorSamples
from dice.tl import PosteriorSettings

MOMENTS = {"mean": [1.0, -1.0], "var": [4.0, 0.25], "radius": 5.0}


def test_moments_of_the_training_latents():
    latents = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 3.0]])
    moments = latent_moments(latents)
    np.testing.assert_allclose(moments["mean"], [1.0, 1.0])
    np.testing.assert_allclose(moments["var"], latents.var(axis=0))
    assert moments["radius"] == pytest.approx(2.0)  # (1, 3) is 2 from the mean (1, 1)


def test_outside_means_beyond_twice_the_radius_after_the_noise():
    centre = np.array(MOMENTS["mean"])
    noise = np.array([0.0, 0.0, 9.0, 9.0])  # sd 3 per dimension: 3 sqrt(2) of distance explained
    far = OUTSIDE_FACTOR * MOMENTS["radius"]
    direction = np.array([0.6, 0.8])
    scores = centre + np.outer([far - 0.1, far + 0.1, far + 4.0, far + 4.5], direction)
    np.testing.assert_array_equal(outside_prior(scores, noise, MOMENTS), [False, True, False, True])
    # rho widens the level the posterior targets, and with it what the noise explains
    assert not outside_prior(scores[1:2], np.array([0.01]), MOMENTS, rho=20.0)[0]


def _result(n, k, n_draws):
    return PosteriorSamples(
        mean=np.zeros((n, k), np.float32),
        spread=np.zeros(n, np.float32),
        samples=np.zeros((n, n_draws, k), np.float32),
        n_clamped=0,
        mean_estimate="tweedie",
        uncertainty="jacobian",
    )


def test_gaussian_posterior_is_the_closed_form_and_draws_do_not_depend_on_chunking():
    rng = np.random.default_rng(0)
    scores, sigma2 = rng.normal(scale=30.0, size=(6, 2)), np.array([1.0, 4.0, 9.0, 1.0, 4.0, 9.0])
    mask = np.array([True, False, True, True, False, True])
    settings = PosteriorSettings(n_samples=4000)
    whole = _result(6, 2, 4000)
    apply_gaussian_prior(whole, mask, scores, sigma2, MOMENTS, settings, seed=5, first_row=0)
    m, s = np.array(MOMENTS["mean"]), np.array(MOMENTS["var"])
    exact_mean = m + s / (s + sigma2[:, None]) * (scores - m)
    exact_var = s * sigma2[:, None] / (s + sigma2[:, None])
    np.testing.assert_allclose(whole.mean[mask], exact_mean[mask], rtol=1e-5)
    np.testing.assert_allclose(whole.spread[mask], np.sqrt(exact_var[mask].mean(axis=1)), rtol=1e-5)
    assert np.all(whole.mean[~mask] == 0) and np.all(whole.samples[~mask] == 0)  # other rows untouched
    np.testing.assert_allclose(whole.samples[mask].mean(axis=1), exact_mean[mask], atol=0.1)
    np.testing.assert_allclose(whole.samples[mask].var(axis=1), exact_var[mask], rtol=0.1)
    assert whole.n_outside == 4
    second = _result(3, 2, 4000)  # the same cells as rows 3-5 of a later piece
    apply_gaussian_prior(second, mask[3:], scores[3:], sigma2[3:], MOMENTS, settings, seed=5, first_row=3)
    np.testing.assert_array_equal(second.samples, whole.samples[3:])


def test_far_cells_get_the_gaussian_posterior_and_a_warning(trained_model):
    model = trained_model
    moments = model.config["latent_moments"]
    k = model.embedding.n_comps
    centre, radius = np.array(moments["mean"]), moments["radius"]
    rng = np.random.default_rng(1)
    inside = centre + rng.normal(scale=0.3 * radius / np.sqrt(k), size=(5, k))
    far = centre + 10.0 * radius * np.eye(k)[:2]  # ten radii out, little noise
    scores = np.vstack([inside, far])
    sigma2 = np.full(len(scores), 0.5)
    settings = PosteriorSettings(n_samples=3)
    with pytest.warns(UserWarning, match="2 cells were measured far outside"):
        result = model.posterior(scores, sigma2, settings, seed=0, keep_samples=True, progress=False)
    assert result.n_outside == 2
    s = np.array(moments["var"])
    np.testing.assert_allclose(result.mean[5:], centre + s / (s + 0.5) * (scores[5:] - centre), rtol=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = model.posterior(inside, sigma2[:5], settings, seed=0, progress=False)
    assert plain.n_outside == 0
    np.testing.assert_allclose(plain.mean, result.mean[:5], rtol=1e-5)  # the network's posterior, unchanged


def test_models_without_moments_sample_as_before(trained_model):
    import copy

    old = copy.copy(trained_model)
    old.config = {key: value for key, value in trained_model.config.items() if key != "latent_moments"}
    far = np.array(trained_model.config["latent_moments"]["mean"]) + 1e3
    result = old.posterior(far[None, :], np.array([0.5]), PosteriorSettings(), progress=False, warn=False)
    assert result.n_outside == 0  # no guard without the training moments


def test_cells_noisier_than_the_schedule_get_the_gaussian_posterior_without_a_clamp_warning(trained_model):
    model = trained_model
    moments = model.config["latent_moments"]
    top = model.schedule.max_noise_std * model.latent_scale
    scores = np.array(moments["mean"])[None, :] + 0.1
    sigma2 = np.array([(1.5 * top) ** 2])
    with pytest.warns(UserWarning, match="1 cell was measured far outside") as caught:
        result = model.posterior(scores, sigma2, PosteriorSettings(), seed=0, progress=False)
    assert not any("diffusion schedule's maximum" in str(w.message) for w in caught)
    assert result.n_outside == 1 and result.n_clamped == 0
    s = np.array(moments["var"])
    np.testing.assert_allclose(result.mean[0], moments["mean"] + s / (s + sigma2[0]) * 0.1, rtol=1e-4)
