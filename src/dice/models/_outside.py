"""Cells measured far outside the reference's latent states: a Gaussian prior instead of the network there.

The diffusion network is trained on reference latents plus noise. A measurement far beyond anything that
training saw at the cell's noise level (another species, debris, or a count measurement whose isotropic
centre was stretched by a very wide, very anisotropic likelihood) makes the network extrapolate, and its
posterior mean can land anywhere: on a 5 %-depth CBMC query one such cell got a posterior mean 8x the
norm of its full-depth one and carried 60 % of the whole query's fidelity error. For those cells the prior
is replaced by its Gaussian approximation (the reference latents' mean and per-dimension variances), whose
posterior is exact and bounded: with the count likelihood's matched centre it returns the count
measurement's own penalised mode.

A cell is *outside* when, after removing what its noise explains, its measurement lies more than
:data:`OUTSIDE_FACTOR` times the reference's radius (the largest distance of a reference latent from their
mean) from the reference's centre: ``||s - m|| - level sqrt(k) > OUTSIDE_FACTOR * radius``
(:func:`outside_prior`). With the direct sampler, so is a cell whose noise level exceeds the diffusion
schedule's top level (``max_level``, passed by :meth:`dice.models.DicePrior.posterior`): the network
would start from t = T with an input noisier than any it was trained on, while the Gaussian posterior is
accurate there (the prior is blurred far beyond its structure; the error is of order ``S / level^2``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["OUTSIDE_FACTOR", "apply_gaussian_prior", "latent_moments", "outside_prior"]

#: How many reference radii beyond the reference's centre (after the noise) a measurement must lie to be
#: outside. Twice the radius leaves every cell the prior could plausibly explain to the network.
OUTSIDE_FACTOR = 2.0


def latent_moments(latents: np.ndarray) -> dict:
    """JSON-ready mean, per-dimension variance and radius of the latents the prior was trained on."""
    latents = np.asarray(latents, dtype=np.float64)
    mean = latents.mean(axis=0)
    radius = float(np.sqrt(np.max(np.sum((latents - mean) ** 2, axis=1))))
    return {"mean": mean.tolist(), "var": latents.var(axis=0).tolist(), "radius": radius}


def _level2(sigma2: np.ndarray, rho: float) -> np.ndarray:
    """The posterior's noise variance per dimension, ``sigma^2 (1 + rho^2)`` (the direct sampler's target)."""
    return np.asarray(sigma2, dtype=np.float64) * (1.0 + rho**2)


def outside_prior(
    scores: np.ndarray, sigma2: np.ndarray, moments: dict, rho: float = 0.0, max_level: float | None = None
) -> np.ndarray:
    """Boolean mask of the cells whose measurement lies outside the reference's latent states, or (with
    ``max_level``, the diffusion schedule's top noise sd in latent units) whose noise level exceeds it."""
    mean = np.asarray(moments["mean"], dtype=np.float64)
    level2 = _level2(sigma2, rho)
    distance = np.linalg.norm(np.asarray(scores, dtype=np.float64) - mean, axis=1)
    outside = distance - np.sqrt(level2 * mean.size) > OUTSIDE_FACTOR * float(moments["radius"])
    if max_level is not None:
        outside |= level2 > max_level**2
    return outside


def apply_gaussian_prior(result, mask, scores, sigma2, moments, settings, *, seed: int, first_row: int) -> None:
    """Overwrite the rows ``mask`` of a :class:`PosteriorSamples` with the Gaussian-prior posterior.

    Per dimension the posterior of ``N(u; m, S)`` and ``N(s; u, level^2)`` is
    ``N(m + S (s - m) / (S + level^2), S level^2 / (S + level^2))``. Draws are seeded by the seed and each
    cell's row in the whole dataset (``first_row`` + its row here), so they do not depend on chunking.
    """
    rows = np.flatnonzero(mask)
    if rows.size == 0:
        return
    m = np.asarray(moments["mean"], dtype=np.float64)
    s_var = np.asarray(moments["var"], dtype=np.float64)
    level2 = _level2(np.asarray(sigma2)[rows], settings.rho)[:, None]
    gain = s_var / (s_var + level2)
    mean = m + gain * (np.asarray(scores, dtype=np.float64)[rows] - m)
    variance = gain * level2
    result.mean[rows] = mean
    if settings.uncertainty_method != "none":
        result.spread[rows] = np.sqrt(variance.mean(axis=1))
    if result.samples is not None:
        for row, centre, var in zip(rows, mean, variance, strict=True):
            rng = np.random.default_rng(np.random.SeedSequence([seed, 3, first_row + int(row)]))
            result.samples[row] = centre + np.sqrt(var) * rng.standard_normal(result.samples.shape[1:])
    result.n_outside = int(rows.size)
