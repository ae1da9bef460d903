"""Run the sampler over many cells: chunking, seeding, progress, posterior summaries.

Cells are processed in chunks of :data:`CHUNK_CELLS`; chunk ``c`` (cells ``c * CHUNK_CELLS`` onwards) draws
from a generator seeded with ``(seed, c)``. The result therefore depends on the seed and the machine only,
never on how the data were read in blocks. A piece of a larger dataset that starts at cell
``first_chunk * CHUNK_CELLS`` passes ``first_chunk`` and draws what the whole dataset would draw for its cells
(how :mod:`dice.tl._dask` samples row chunks on Dask workers).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .._settings import PosteriorSettings
from ._covariance import mean_variance
from ._sampler import likelihood_step, prior_step, rho_schedule
from ._schedule import NoiseSchedule

__all__ = ["CHUNK_CELLS", "PosteriorSamples", "sample_posterior", "warn_clamped", "warn_outside"]

#: Cells per sampler chunk (times ``n_samples`` rows per network call).
CHUNK_CELLS = 1024


@dataclass
class PosteriorSamples:
    """Posterior summaries in latent units: the mean (cells x k), the per-cell spread, optionally the draws.

    ``spread`` is the root mean over latent dimensions of the posterior variance: with ``uncertainty``
    ``"samples"`` the across-draw variance (NaN with one draw), with ``"jacobian"`` the second-order Tweedie
    variance of the same target posterior (:mod:`dice.models._covariance`), with ``"none"`` NaN.
    ``samples`` (cells x n_samples x k) is kept only when asked for.
    """

    mean: np.ndarray
    spread: np.ndarray
    samples: np.ndarray | None
    n_clamped: int
    mean_estimate: str
    uncertainty: str = "samples"
    n_outside: int = 0  # cells whose posterior used the Gaussian prior (dice.models._outside)


def _generator(seed: int, chunk: int, device, stream: int = 0) -> torch.Generator:
    """Chunk ``chunk``'s generator; ``stream`` 0 draws the samples, 1 the Jacobian probes (independent)."""
    generator = torch.Generator(device=device)
    entropy = [seed, chunk] if stream == 0 else [seed, chunk, stream]
    generator.manual_seed(int(np.random.SeedSequence(entropy).generate_state(1)[0]))
    return generator


def sample_posterior(
    network: nn.Module,
    schedule: NoiseSchedule,
    scores: np.ndarray,
    sigma2: np.ndarray,
    latent_scale: float,
    settings: PosteriorSettings,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    keep_samples: bool = False,
    progress: bool = True,
    first_chunk: int = 0,
    warn: bool = True,
) -> PosteriorSamples:
    """Posterior mean, spread and (optionally) ``settings.n_samples`` draws for every cell.

    ``scores`` are the cells' latent measurements and ``sigma2`` their noise variances per latent dimension
    (:class:`dice.likelihood.Measurement`); the posterior is the prior times ``N(scores; u, sigma2 I)``.
    ``first_chunk`` is the sampler chunk of the first cell when these cells are rows
    ``first_chunk * CHUNK_CELLS`` onwards of a larger dataset (the seeding then matches the whole dataset's);
    ``warn=False`` leaves the clamped-steps warning to the caller (``PosteriorSamples.n_clamped``).
    """
    from tqdm.auto import tqdm

    n_cells, n_latent = scores.shape
    n_draws = settings.n_samples
    tweedie = settings.sampler == "direct" and settings.mean_estimate == "tweedie"
    uncertainty = settings.uncertainty_method
    # draws only when something uses them: the stored samples, their mean, or their spread
    need_draws = keep_samples or not tweedie or uncertainty == "samples"
    means = np.empty((n_cells, n_latent), dtype=np.float32)
    spread = np.full(n_cells, np.nan, dtype=np.float32)
    samples = np.empty((n_cells, n_draws, n_latent), dtype=np.float32) if keep_samples else None
    n_clamped = 0
    network.eval()
    with tqdm(total=n_cells, desc="sampling posterior", unit="cells", disable=not progress, mininterval=1.0) as bar:
        for chunk, start in enumerate(range(0, n_cells, CHUNK_CELLS), start=first_chunk):
            stop = min(start + CHUNK_CELLS, n_cells)
            s = torch.as_tensor(np.asarray(scores[start:stop], dtype=np.float32), device=device)
            sig2 = torch.as_tensor(np.asarray(sigma2[start:stop]), device=device, dtype=torch.float32)[:, None]
            if need_draws:
                draws, clamped = _draw(
                    network, schedule, s, sig2, latent_scale, settings, _generator(seed, chunk, device)
                )
                n_clamped += clamped
                draws = draws.reshape(stop - start, n_draws, n_latent)
                if uncertainty == "samples" and n_draws > 1:
                    spread[start:stop] = np.sqrt(draws.var(axis=1, ddof=1).mean(axis=1))
                if samples is not None:
                    samples[start:stop] = draws
            if uncertainty == "jacobian":
                generator = _generator(seed, chunk, device, stream=1)
                spread[start:stop] = _jacobian_spread(network, schedule, s, sig2, latent_scale, settings, generator)
            if tweedie:
                mean, clamped = _tweedie(network, schedule, s, sig2, latent_scale, settings.rho)
                means[start:stop] = mean
                n_clamped += 0 if need_draws else clamped
            else:
                means[start:stop] = draws.mean(axis=1)
            bar.update(stop - start)
    if n_clamped and warn:
        warn_clamped(n_clamped, schedule, stacklevel=4)
    return PosteriorSamples(means, spread, samples, n_clamped, "tweedie" if tweedie else "samples", uncertainty)


def warn_clamped(n_clamped: int, schedule: NoiseSchedule, *, stacklevel: int = 2) -> None:
    """Warn that ``n_clamped`` prior steps asked for more noise than the schedule has."""
    warnings.warn(
        f"{n_clamped} prior steps asked for a noise level above the diffusion schedule's maximum "
        f"({schedule.max_noise_std:.1f} x the latent scale) and started at t = T instead. Lower rho, "
        "or train the prior with a longer schedule (n_timesteps).",
        stacklevel=stacklevel,
    )


def warn_outside(n_outside: int, *, stacklevel: int = 2) -> None:
    """Warn that ``n_outside`` cells were measured outside the reference's latent states."""
    warnings.warn(
        f"{n_outside} {'cell was' if n_outside == 1 else 'cells were'} measured far outside the reference's "
        "latent states (more than twice the "
        "reference's radius from its centre beyond what their noise explains, or with more noise than the "
        "prior's diffusion schedule spans); their posterior uses a Gaussian approximation of the prior "
        "(the reference latents' mean and variances) instead of the diffusion prior, which never saw such "
        "inputs. Such cells are often another species, doublets, debris or nearly empty droplets; "
        "uns[key]['n_outside_prior'] counts them.",
        stacklevel=stacklevel,
    )


def _draw(network, schedule, s, sig2, latent_scale, settings, generator) -> tuple[np.ndarray, int]:
    """``n_samples`` draws per cell (rows cell-major: cell 0's draws first)."""
    s = torch.repeat_interleave(s, settings.n_samples, dim=0)
    sig2 = torch.repeat_interleave(sig2, settings.n_samples, dim=0)
    if settings.sampler == "direct":
        u, clamped = prior_step(
            network,
            schedule,
            s / latent_scale,
            _direct_level(sig2, settings.rho, latent_scale),
            generator,
            method=settings.prior_step,
            n_steps=settings.n_prior_steps,
        )
        return (u * latent_scale).cpu().numpy(), clamped
    rhos = rho_schedule(settings.rho_schedule, settings.rho, settings.rho_end_value, settings.n_iter)
    u, n_clamped = s.clone(), 0
    for rho in rhos.tolist():
        rho2 = sig2 * rho**2
        z = likelihood_step(s, u, sig2, rho2, generator)
        u, clamped = prior_step(
            network,
            schedule,
            z / latent_scale,
            torch.sqrt(rho2) / latent_scale,
            generator,
            method=settings.prior_step,
            n_steps=settings.n_prior_steps,
        )
        u = u * latent_scale
        n_clamped += clamped
    return u.cpu().numpy(), n_clamped


def _direct_level(sig2: torch.Tensor, rho: float, latent_scale: float) -> torch.Tensor:
    """The direct sampler's target noise sd ``sigma sqrt(1 + rho^2)``, in the network's units."""
    return torch.sqrt(sig2 * (1.0 + rho**2)) / latent_scale


def _tweedie(network, schedule, s, sig2, latent_scale, rho) -> tuple[np.ndarray, int]:
    """One deterministic network call per cell: ``E[u | s]`` at the direct sampler's target noise level.

    Returns the means and the number of clamped rows (level above the schedule's maximum).
    """
    generator = torch.Generator(device=s.device)  # unused by the deterministic step
    u, clamped = prior_step(
        network, schedule, s / latent_scale, _direct_level(sig2, rho, latent_scale), generator, method="tweedie"
    )
    return (u * latent_scale).cpu().numpy(), clamped


def _jacobian_spread(network, schedule, s, sig2, latent_scale, settings, generator) -> np.ndarray:
    """Root mean over dimensions of ``Cov[u | s]`` at the draws' target level (second-order Tweedie)."""
    variance = mean_variance(
        network,
        schedule,
        s / latent_scale,
        _direct_level(sig2, settings.rho, latent_scale),
        generator,
        n_probes=settings.n_probes,
    )
    return (torch.sqrt(variance) * latent_scale).cpu().numpy()
