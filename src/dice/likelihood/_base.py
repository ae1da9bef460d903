"""What every measurement model returns: a Gaussian likelihood of each cell's latent state.

The posterior sampler only ever sees a cell through its *measurement*: the likelihood of the latent state
``u`` (k dimensions) given the cell's data, approximated as ``N(y; u, Sigma)``. ``y`` is the measurement
(cells x k) and ``Sigma`` its noise covariance. The direct posterior sampler needs an isotropic noise level
per cell (``noise_var``, the variance per latent dimension); a model that knows more can also return the
full covariance (cells x k x k), which the split Gibbs sampler's likelihood step can use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Measurement"]


@dataclass
class Measurement:
    """The latent measurement of a block of cells.

    Attributes
    ----------
    scores
        ``y`` (cells x k, float32): the likelihood of ``u`` is approximately ``N(y; u, Sigma)``.
    noise_var
        Per-cell noise variance per latent dimension (cells, float64): the isotropic level the direct
        sampler uses (for an anisotropic ``Sigma``, its mean eigenvalue ``trace(Sigma) / k``).
    covariance
        Optional full ``Sigma`` per cell (cells x k x k), when the model has one.
    """

    scores: np.ndarray
    noise_var: np.ndarray
    covariance: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float32)
        self.noise_var = np.asarray(self.noise_var, dtype=np.float64).reshape(-1)
        if self.noise_var.shape[0] != self.scores.shape[0]:
            raise ValueError("noise_var needs one value per cell")

    @property
    def noise_sd(self) -> np.ndarray:
        return np.sqrt(self.noise_var)
