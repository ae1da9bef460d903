"""Measurement models: how a cell's data informs its latent state (the likelihood step of DICE).

Each model turns a block of cells into a :class:`Measurement`: a Gaussian likelihood ``N(y; u, Sigma)`` of the
latent state ``u``, which the posterior sampler combines with the diffusion prior. Gaussian models of
log-normalised data live in :mod:`._gaussian`.
"""

from ._base import Measurement
from ._gaussian import GAUSSIAN_LIKELIHOODS, GaussianLikelihood

__all__ = ["GAUSSIAN_LIKELIHOODS", "GaussianLikelihood", "Measurement"]
