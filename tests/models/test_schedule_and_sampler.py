import numpy as np
import pytest
import torch
from oracle import GaussianOracle, gaussian_posterior

from dice.models import NoiseSchedule
from dice.models._posterior import sample_posterior
from dice.models._sampler import likelihood_step, prior_step, rho_schedule
from dice.tl import PosteriorSettings


def test_schedule_reaches_the_papers_limit():
    schedule = NoiseSchedule(512)
    # the paper's linear schedule cannot represent rho above about 13 (DESIGN.md section 2)
    assert 13.0 < schedule.max_noise_std < 14.0


@pytest.mark.parametrize("rho", [0.05, 0.5, 1.0, 5.0, 12.9])
def test_t0_is_the_first_step_whose_noise_reaches_rho(rho):
    schedule = NoiseSchedule(512)
    t0, clamped = schedule.t0_for_noise(torch.tensor([rho]))
    t0 = int(t0)
    abar = schedule.alpha_bars
    assert not clamped.any()
    assert abar[t0] <= 1.0 / (1.0 + rho**2) < abar[t0 - 1]


def test_t0_clamps_and_reports_beyond_the_schedule():
    schedule = NoiseSchedule(512)
    t0, clamped = schedule.t0_for_noise(torch.tensor([0.0, 20.0]))
    assert t0.tolist() == [0, 512] and clamped.tolist() == [False, True]


def test_rho_schedules():
    np.testing.assert_allclose(rho_schedule("constant", 3, 0, 4), [3, 3, 3, 3])
    np.testing.assert_allclose(rho_schedule("linear", 5, 1, 5), [5, 4, 3, 2, 1])
    np.testing.assert_allclose(rho_schedule("exponential", 8, 1, 4), [8, 4, 2, 1])
    with pytest.raises(ValueError):
        rho_schedule("cosine", 1, 1, 3)


def test_likelihood_step_matches_proposition_3_1():
    """Monte Carlo mean and covariance against Lambda = (V^T V / s2 + I / rho2)^-1 with V orthonormal."""
    rng = np.random.default_rng(0)
    d, k, sigma2, rho2 = 30, 3, 0.7, 2.0
    loadings, _ = np.linalg.qr(rng.normal(size=(d, k)))
    x = rng.normal(size=d)
    u = rng.normal(size=k)
    cov = np.linalg.inv(loadings.T @ loadings / sigma2 + np.eye(k) / rho2)
    mean = cov @ (loadings.T @ x / sigma2 + u / rho2)
    n = 200_000
    scores = torch.tensor(loadings.T @ x, dtype=torch.float64).expand(n, k)
    state = torch.tensor(u, dtype=torch.float64).expand(n, k)
    generator = torch.Generator().manual_seed(0)
    z = likelihood_step(
        scores,
        state,
        torch.full((n, 1), sigma2, dtype=torch.float64),
        torch.full((n, 1), rho2, dtype=torch.float64),
        generator,
    ).numpy()
    np.testing.assert_allclose(z.mean(axis=0), mean, atol=0.01)
    np.testing.assert_allclose(np.cov(z.T), cov, atol=0.01)


def test_likelihood_step_limits():
    generator = torch.Generator().manual_seed(0)
    s, u = torch.ones(4, 2), torch.zeros(4, 2)
    z = likelihood_step(s, u, torch.ones(4, 1), torch.zeros(4, 1), generator)
    assert torch.equal(z, u)  # rho = 0: z is tied to u


@pytest.mark.parametrize("method", ["ancestral", "strided", "tweedie"])
def test_prior_step_samples_the_gaussian_posterior(method):
    """With an exact noise predictor for a Gaussian prior, p(u | z) is known in closed form."""
    schedule = NoiseSchedule(512)
    prior_mean, prior_var, rho = torch.tensor([1.0, -0.5]), 1.0, 0.8
    oracle = GaussianOracle(schedule, prior_mean, prior_var)
    n = 20_000
    z = torch.tensor([[2.0, 0.5]]).expand(n, 2).contiguous()
    generator = torch.Generator().manual_seed(1)
    out, clamped = prior_step(oracle, schedule, z, torch.full((n,), rho), generator, method=method, n_steps=20)
    expected_mean, expected_var = gaussian_posterior(z[0], prior_mean, prior_var, rho**2)
    assert clamped == 0
    np.testing.assert_allclose(out.mean(0).numpy(), expected_mean.numpy(), atol=0.03)
    ratio = out.var(0).numpy() / expected_var
    if method == "tweedie":
        assert float(out.var(0).max()) < 1e-8  # a posterior-mean estimate, not a sample
    elif method == "ancestral":
        np.testing.assert_allclose(ratio, 1.0, atol=0.05)  # exact up to Monte Carlo error
    else:
        assert np.all((ratio > 0.75) & (ratio < 0.95))  # documented under-dispersion at 20 steps


@pytest.mark.parametrize("level", [0.005, 0.0125, 0.0177, 0.03, 0.1])
def test_ancestral_draws_keep_the_exact_variance_at_levels_between_the_first_grid_steps(level):
    """High-signal data need levels below the schedule's first steps (grid levels 0.010, 0.015, 0.020, ...).

    Rounding the start up to the next grid time and dropping the last step's noise made the variance
    ratio swing between 0 and 3 there; starting at the exact fractional time keeps it at 1.
    """
    schedule = NoiseSchedule(512)
    oracle = GaussianOracle(schedule, torch.zeros(2), 1.0)
    n = 40_000
    z = torch.zeros(n, 2)
    out, _ = prior_step(
        oracle, schedule, z, torch.full((n,), level), torch.Generator().manual_seed(2), method="ancestral"
    )
    _, expected_var = gaussian_posterior(z[0], torch.zeros(2), 1.0, level**2)
    np.testing.assert_allclose(out.var(0).numpy() / expected_var, 1.0, atol=0.03)


def test_fractional_times_invert_the_noise_levels():
    schedule = NoiseSchedule(512)
    levels = torch.tensor([0.0, 0.004, 0.0100005, 0.0177, 0.5, 3.0])
    times, clamped = schedule.time_for_noise(levels)
    assert not clamped.any()
    np.testing.assert_allclose(
        schedule.alpha_bar_at(times).numpy(), (1 / (1 + levels.double() ** 2)).numpy(), rtol=1e-9
    )
    on_grid = torch.tensor([1.0, 7.0, 300.0])
    np.testing.assert_allclose(
        schedule.alpha_bar_at(on_grid).numpy(), schedule.alpha_bars[[1, 7, 300]].numpy(), rtol=1e-12
    )


@pytest.mark.parametrize("method", ["gibbs", "direct"])
def test_sampler_targets_the_inflated_posterior_and_is_scale_free(method):
    """Target: prior x N(s; u, sigma2 (1 + rho^2)); rescaling the data rescales the result exactly."""
    schedule = NoiseSchedule(512)
    oracle = GaussianOracle(schedule, torch.zeros(2), 1.0)
    settings = PosteriorSettings(
        sampler=method, rho=0.5, rho_end=0.5, rho_schedule="constant", n_iter=20, prior_step="ancestral", n_samples=2000
    )
    scores, sigma2 = np.array([[1.5, -1.0]], dtype=np.float32), np.array([0.6])
    result = sample_posterior(
        oracle, schedule, scores, sigma2, 1.0, settings, seed=3, keep_samples=True, progress=False
    )
    samples = result.samples[0]
    mean, var = gaussian_posterior(torch.tensor(scores[0]), torch.zeros(2), 1.0, 0.6 * (1 + 0.5**2))
    np.testing.assert_allclose(samples.mean(0), mean.numpy(), atol=0.05)
    np.testing.assert_allclose(samples.var(0), [var] * 2, rtol=0.12)
    scaled = sample_posterior(
        oracle, schedule, scores * 7.0, sigma2 * 49.0, 7.0, settings, seed=3, keep_samples=True, progress=False
    )
    np.testing.assert_allclose(scaled.samples, result.samples * 7.0, rtol=1e-4, atol=1e-4)


def test_sampler_is_reproducible_and_seed_dependent():
    schedule = NoiseSchedule(512)
    oracle = GaussianOracle(schedule, torch.zeros(3), 1.0)
    settings = PosteriorSettings(
        sampler="gibbs", rho=2.0, rho_end=0.5, rho_schedule="linear", n_iter=3, prior_step="strided", n_samples=5
    )
    scores, sigma2 = np.ones((10, 3), dtype=np.float32), np.full(10, 0.5)
    a = sample_posterior(oracle, schedule, scores, sigma2, 1.0, settings, seed=0, keep_samples=True, progress=False)
    b = sample_posterior(oracle, schedule, scores, sigma2, 1.0, settings, seed=0, keep_samples=True, progress=False)
    c = sample_posterior(oracle, schedule, scores, sigma2, 1.0, settings, seed=1, keep_samples=True, progress=False)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert not np.allclose(a.samples, c.samples)
    assert a.spread.shape == (10,) and np.all(a.spread > 0)


def test_clamped_steps_warn():
    schedule = NoiseSchedule(64)
    oracle = GaussianOracle(schedule, torch.zeros(2), 1.0)
    settings = PosteriorSettings(sampler="direct", rho=100.0, n_samples=2)
    with pytest.warns(UserWarning, match="above the diffusion schedule"):
        sample_posterior(oracle, schedule, np.ones((3, 2), dtype=np.float32), np.ones(3), 1.0, settings, progress=False)


def test_tweedie_mean_is_the_exact_posterior_mean_under_a_gaussian_prior():
    schedule = NoiseSchedule(512)
    prior_mean = torch.tensor([0.5, -1.0])
    oracle = GaussianOracle(schedule, prior_mean, 1.0)
    settings = PosteriorSettings(n_samples=2)  # direct sampler, Tweedie mean
    scores = np.array([[2.0, 0.0], [-1.0, 1.5]], dtype=np.float32)
    sigma2 = np.array([0.3, 0.8])
    result = sample_posterior(oracle, schedule, scores * 3.0, sigma2 * 9.0, 3.0, settings, progress=False)
    for cell in range(2):
        expected, _ = gaussian_posterior(torch.tensor(scores[cell]), prior_mean, 1.0, float(sigma2[cell]))
        np.testing.assert_allclose(result.mean[cell] / 3.0, expected.numpy(), atol=0.01)


@pytest.mark.parametrize("level", [0.019, 0.0177, 0.03])
def test_strided_steps_at_small_levels_fall_back_to_ancestral_steps(level):
    """Within n_steps grid steps of 0 the strided sampler takes every step (it kept 0.2-0.5 of the variance)."""
    schedule = NoiseSchedule(512)
    oracle = GaussianOracle(schedule, torch.zeros(2), 1.0)
    n = 20_000
    out, _ = prior_step(
        oracle,
        schedule,
        torch.zeros(n, 2),
        torch.full((n,), level),
        torch.Generator().manual_seed(4),
        method="strided",
        n_steps=20,
    )
    _, expected_var = gaussian_posterior(torch.zeros(2), torch.zeros(2), 1.0, level**2)
    np.testing.assert_allclose(out.var(0).numpy() / expected_var, 1.0, atol=0.05)


# ------------------------------------------------------------------ device handling (GPU-ready sampler)
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_schedule_lookups_stay_on_the_device_of_their_input(device):
    """A "meta" tensor has no data: any copy to the host (the old ``.cpu()`` calls) raises."""
    schedule = NoiseSchedule(512)
    levels = torch.tensor([0.0, 0.02, 0.5, 20.0], dtype=torch.float32, device=device)
    t0, clamped = schedule.t0_for_noise(levels)
    times, clamped_too = schedule.time_for_noise(levels)
    abar = schedule.alpha_bar_at(times)
    abar32 = schedule.alpha_bar_at(times, dtype=torch.float32)
    for out in (t0, clamped, times, clamped_too, abar, abar32):
        assert out.device == levels.device and out.shape == levels.shape
    assert (t0.dtype, clamped.dtype, times.dtype, abar.dtype, abar32.dtype) == (
        torch.int64,
        torch.bool,
        torch.float64,  # float64 whatever the input, so that the t0 rule is exact
        torch.float64,
        torch.float32,
    )
    assert schedule.noise_std_on(device) is schedule.noise_std_on(device)  # one copy per device, cached
    if device == "cpu":
        assert schedule.noise_std_on(device) is schedule.noise_std
        assert (t0[0], t0[-1]) == (0, 512) and clamped.tolist() == [False, False, False, True]
        np.testing.assert_array_equal(abar32.numpy(), abar.float().numpy())


def test_schedule_pickles_without_its_device_copies():
    import pickle

    schedule = NoiseSchedule(64)
    schedule.noise_std_on("meta")
    restored = pickle.loads(pickle.dumps(schedule))
    assert restored._device_tables == {} and torch.equal(restored.noise_std, schedule.noise_std)


@pytest.mark.parametrize("method", ["ancestral", "strided", "tweedie"])
def test_reverse_diffusion_loops_need_no_data_from_the_device(method, monkeypatch):
    """The whole sampler runs on a data-free "meta" device once the start times are on the host.

    ``_to_host`` (one transfer per call, before the loops) is the only place that reads device data; given its
    result, every step of every loop (network calls, schedule lookups, noise, row updates) runs without a
    value from the device, so on CUDA none of them waits for the GPU.
    """
    from dice.models import _sampler
    from dice.models._network import DiffusionMLP

    schedule = NoiseSchedule(512)
    levels = torch.tensor([0.0, 0.004, 0.015, 0.3, 2.0, 40.0])
    start_host, clamped = schedule.time_for_noise(levels)
    transfers = []

    def fake_to_host(start, clamped_rows):
        assert start.device.type == "meta" and clamped_rows.device.type == "meta"
        transfers.append(1)
        return start_host, int(clamped.sum())

    monkeypatch.setattr(_sampler, "_to_host", fake_to_host)
    network = DiffusionMLP(3, hidden_dim=16, n_blocks=1).eval().to("meta")
    z = torch.empty(len(levels), 3, device="meta")
    out, n_clamped = prior_step(network, schedule, z, levels.to("meta"), None, method=method, n_steps=5)
    assert out.device.type == "meta" and out.shape == z.shape
    assert n_clamped == 1 and len(transfers) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("method", ["ancestral", "strided"])
def test_cuda_reverse_diffusion_does_not_synchronise_and_matches_the_cpu(method, monkeypatch):
    from dice.models import _sampler

    schedule = NoiseSchedule(512)
    oracle = GaussianOracle(schedule, torch.zeros(2), 1.0)
    n = 20_000
    levels = torch.linspace(0.003, 3.0, n)
    original = _sampler._to_host

    def then_forbid_syncs(start, clamped):
        result = original(start, clamped)
        torch.cuda.set_sync_debug_mode("error")  # any later host sync in the loops raises
        return result

    monkeypatch.setattr(_sampler, "_to_host", then_forbid_syncs)
    generator = torch.Generator(device="cuda").manual_seed(0)
    try:
        out, _ = prior_step(
            oracle.cuda(), schedule, torch.zeros(n, 2, device="cuda"), levels.cuda(), generator, method=method
        )
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.device.type == "cuda"
    # not the CPU's random stream, but the same posterior: compare the variance ratio per level band
    _, expected_var = gaussian_posterior(torch.zeros(2), torch.zeros(2), 1.0, levels.double() ** 2)
    ratio = (out.cpu().double() ** 2).mean(1) / expected_var
    low = 0.75 if method == "strided" else 0.9
    assert low < float(ratio.mean()) < 1.1


def test_training_and_sampling_log_the_device_that_ran(caplog):
    import logging

    from dice.models import DicePrior
    from dice.pp._linear import LinearEmbedding
    from dice.tl import TrainSettings

    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(size=(64, 8))).astype(np.float32)
    embedding = LinearEmbedding.fit(x, [f"g{i}" for i in range(8)], n_comps=2)
    latents = rng.normal(size=(64, 2))
    with caplog.at_level(logging.INFO, logger="dice"):
        model = DicePrior.fit(
            embedding, latents, settings=TrainSettings(n_updates=2, batch_size=16), device="auto", progress=False
        )
        model.posterior(latents[:5], np.ones(5), PosteriorSettings(n_samples=2), progress=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert model.config["device"].startswith(expected)
    messages = [r.getMessage() for r in caplog.records if "on device" in r.getMessage()]
    assert len(messages) == 2 and all(expected in m for m in messages)
