"""Measurement models: how a cell's data informs its latent state (the likelihood step of DICE).

Each model turns a block of cells into a :class:`Measurement`: a Gaussian likelihood ``N(y; u, Sigma)`` of the
latent state ``u``, which the posterior sampler combines with the diffusion prior. Gaussian models of
log-normalised data live in :mod:`._gaussian`, the count likelihood (raw counts, a Laplace approximation of
a negative-binomial model at each cell's mode) in :mod:`._counts`.
"""

from ._base import Measurement
from ._counts import CountReference, count_measurement, fit_count_reference, thin_counts
from ._gaussian import GAUSSIAN_LIKELIHOODS, GaussianLikelihood

__all__ = [
    "GAUSSIAN_LIKELIHOODS",
    "CountReference",
    "GaussianLikelihood",
    "Measurement",
    "count_measurement",
    "fit_count_reference",
    "thin_counts",
]
