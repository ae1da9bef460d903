"""Posterior variance without sampling: the second-order Tweedie formula.

For a measurement ``z = u + tau * e`` with ``e ~ N(0, I)`` the posterior mean is
``D(z) = E[u | z] = z + tau^2 grad log p(z)`` and the posterior covariance is its Jacobian scaled by the
noise variance, ``Cov[u | z] = tau^2 dD/dz`` (exact for any prior, multimodal ones included). The prior
network gives ``D`` in one call: with ``x = sqrt(a) z`` at the diffusion time whose noise level is ``tau``,
``D(z) = z - tau eps(x, t)`` (the Tweedie step of :func:`dice.models._sampler.prior_step`), so

``Cov[u | z] = tau^2 (I - tau sqrt(a) J_eps(x))``

and only Jacobian-vector products of the noise predictor are needed. They are taken by central finite
differences (two network calls per probe; forward-mode autodiff through the network cost 8 calls' worth
on CPU), with a step of ``1e-2`` times the noise sd ``sqrt(1 - a)`` of ``x``: small against the scale on
which a denoiser at that level can vary, large against float32 rounding.

The trace (the reported spread) and the diagonal come from Rademacher probes ``v`` (Hutchinson:
``E[v * A v] = diag A``); with at least as many probes as latent dimensions the unit vectors are used
instead and the result is exact. Probes are drawn from the generator passed in, so results are
deterministic given the seed.
"""

from __future__ import annotations

import torch
from torch import nn

from ._sampler import _predict_noise
from ._schedule import NoiseSchedule

__all__ = ["FD_STEP", "jacobian_covariance", "jacobian_variance", "mean_variance"]

#: Finite-difference step in units of the noise sd of the network's input at the start time.
FD_STEP = 1e-2


def _start(schedule: NoiseSchedule, z: torch.Tensor, noise_std: torch.Tensor):
    """Start time, ``sqrt(a)``, the network input ``x`` and the level ``tau`` the schedule really reaches.

    ``tau`` equals ``noise_std`` except for rows above the schedule's maximum, which start at ``T`` (as the
    draws do) and get the level there.
    """
    time, _ = schedule.time_for_noise(noise_std.reshape(-1))
    abar = schedule.alpha_bar_at(time).to(device=z.device, dtype=z.dtype)[:, None]
    root = abar.sqrt()
    tau = torch.sqrt((1.0 - abar) / abar)
    return time.to(z.device), root, root * z, tau


@torch.no_grad()
def _noise_jvp(
    network: nn.Module, schedule: NoiseSchedule, x: torch.Tensor, time: torch.Tensor, root: torch.Tensor, probes
) -> torch.Tensor:
    """``J_eps(x) v`` for each probe ``v`` (probes x rows x k), one network call for all of them."""
    n_probes = probes.shape[0]
    step = FD_STEP * torch.sqrt(1.0 - root**2)  # rows x 1: the noise sd of x
    shift = step[None] * probes
    points = torch.cat([(x[None] + shift).reshape(-1, x.shape[1]), (x[None] - shift).reshape(-1, x.shape[1])])
    times = time.repeat(2 * n_probes)
    eps = _predict_noise(network, points, times, schedule.n_timesteps).reshape(2, n_probes, *x.shape)
    return (eps[0] - eps[1]) / (2.0 * step[None])


def _probes(n_rows: int, n_latent: int, n_probes: int, generator: torch.Generator, device, dtype):
    """Unit vectors (exact) when ``n_probes >= n_latent``, else Rademacher vectors; probes x rows x k."""
    if n_probes >= n_latent:
        eye = torch.eye(n_latent, device=device, dtype=dtype)
        return eye[:, None, :].expand(n_latent, n_rows, n_latent), True
    signs = torch.randint(0, 2, (n_probes, n_rows, n_latent), generator=generator, device=device)
    return (2 * signs - 1).to(dtype), False


def jacobian_variance(
    network: nn.Module,
    schedule: NoiseSchedule,
    z: torch.Tensor,
    noise_std: torch.Tensor,
    generator: torch.Generator,
    *,
    n_probes: int = 4,
) -> torch.Tensor:
    """Diagonal of ``Cov[u | z]`` under the prior and ``z = u + noise_std * N(0, I)``, in the network's units.

    Parameters
    ----------
    network, schedule
        The prior's noise predictor and its schedule.
    z
        Measurements in the network's units (rows x k).
    noise_std
        Each row's noise sd in the same units (rows, or rows x 1).
    generator
        Draws the Rademacher probes (unused when the result is exact).
    n_probes
        Probes per row; ``>= k`` gives the exact diagonal (k unit vectors).

    Returns
    -------
    Rows x k: the posterior variance per latent dimension, each entry clamped at 0. Probe estimates are
    unbiased per dimension before the clamp; for the total use :func:`mean_variance`, which clamps the
    total instead (no upward bias from clamping noisy dimensions one by one).
    """
    return _diagonal(network, schedule, z, noise_std, generator, n_probes).clamp(min=0.0)


def _diagonal(network, schedule, z, noise_std, generator, n_probes) -> torch.Tensor:
    if n_probes < 1:
        raise ValueError("n_probes must be at least 1")
    n_rows, n_latent = z.shape
    time, root, x, tau = _start(schedule, z, noise_std)
    probes, exact = _probes(n_rows, n_latent, n_probes, generator, z.device, z.dtype)
    jvp = _noise_jvp(network, schedule, x, time, root, probes)
    # v * (Cov v) with Cov v = tau^2 (v - tau sqrt(a) J_eps v)
    products = probes * (tau**2)[None] * (probes - (tau * root)[None] * jvp)
    return products.sum(0) if exact else products.mean(0)


def mean_variance(
    network: nn.Module,
    schedule: NoiseSchedule,
    z: torch.Tensor,
    noise_std: torch.Tensor,
    generator: torch.Generator,
    *,
    n_probes: int = 4,
) -> torch.Tensor:
    """Trace of ``Cov[u | z]`` over ``k`` (the mean posterior variance per dimension), clamped at 0; rows."""
    return _diagonal(network, schedule, z, noise_std, generator, n_probes).mean(1).clamp(min=0.0)


def jacobian_covariance(
    network: nn.Module, schedule: NoiseSchedule, z: torch.Tensor, noise_std: torch.Tensor
) -> torch.Tensor:
    """The full ``Cov[u | z]`` (rows x k x k, network units): symmetrised, eigenvalues clamped at 0.

    Costs ``2 k`` network calls per row (benchmarks and diagnostics; the package reports the trace).
    """
    n_rows, n_latent = z.shape
    time, root, x, tau = _start(schedule, z, noise_std)
    probes, _ = _probes(n_rows, n_latent, n_latent, torch.Generator(device=z.device), z.device, z.dtype)
    jvp = _noise_jvp(network, schedule, x, time, root, probes)  # column i: J_eps e_i
    columns = (tau**2)[None] * (probes - (tau * root)[None] * jvp)  # k x rows x k: Cov e_i
    cov = columns.permute(1, 2, 0)  # rows x k (output) x k (probe)
    cov = 0.5 * (cov + cov.transpose(1, 2))
    values, vectors = torch.linalg.eigh(cov.double())
    return ((vectors * values.clamp(min=0.0)[:, None, :]) @ vectors.transpose(1, 2)).to(z.dtype)
