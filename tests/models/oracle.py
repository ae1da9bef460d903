"""An exact noise predictor for a Gaussian prior N(m, s^2 I): lets tests check the sampler against closed forms."""

from __future__ import annotations

import torch
from torch import nn

from dice.models import NoiseSchedule


class GaussianOracle(nn.Module):
    """``E[eps | x_t]`` for ``x_t = sqrt(a) w + sqrt(1 - a) eps`` with ``w ~ N(mean, var I)``."""

    def __init__(self, schedule: NoiseSchedule, mean: torch.Tensor, var: float):
        super().__init__()
        self.schedule = schedule
        self.register_buffer("mean", mean.float())
        self.var = var

    def forward(self, x: torch.Tensor, t_normalised: torch.Tensor) -> torch.Tensor:
        a = self.schedule.alpha_bar_at(t_normalised.double() * self.schedule.n_timesteps)
        a = a.to(device=x.device, dtype=x.dtype)[:, None]
        return (1 - a).sqrt() * (x - a.sqrt() * self.mean) / (a * self.var + 1 - a)


def gaussian_posterior(z: torch.Tensor, mean: torch.Tensor, var: float, noise_var: float):
    """Posterior of w ~ N(mean, var) observed as z = w + N(0, noise_var)."""
    post_var = var * noise_var / (var + noise_var)
    post_mean = post_var * (z / noise_var + mean / var)
    return post_mean, post_var


class GaussianCovarianceOracle(nn.Module):
    """``E[eps | x_t]`` for ``x_t = sqrt(a) w + sqrt(1 - a) eps`` with ``w ~ N(mean, cov)`` (full covariance)."""

    def __init__(self, schedule: NoiseSchedule, mean: torch.Tensor, cov: torch.Tensor):
        super().__init__()
        self.schedule = schedule
        self.register_buffer("mean", mean.double())
        self.register_buffer("cov", cov.double())

    def forward(self, x: torch.Tensor, t_normalised: torch.Tensor) -> torch.Tensor:
        a = self.schedule.alpha_bar_at(t_normalised.double() * self.schedule.n_timesteps).to(x.device)
        eye = torch.eye(len(self.mean), dtype=torch.float64, device=x.device)
        marginal = a[:, None, None] * self.cov + (1 - a)[:, None, None] * eye  # Cov[x_t]
        centred = x.double() - a.sqrt()[:, None] * self.mean
        solved = torch.linalg.solve(marginal, centred.unsqueeze(-1)).squeeze(-1)
        return ((1 - a).sqrt()[:, None] * solved).to(x.dtype)


def gaussian_posterior_cov(cov: torch.Tensor, noise_var: float) -> torch.Tensor:
    """Posterior covariance of w ~ N(m, cov) observed as z = w + N(0, noise_var I): ``cov (cov + s2 I)^-1 s2``."""
    eye = torch.eye(cov.shape[0], dtype=cov.dtype)
    return noise_var * cov @ torch.linalg.inv(cov + noise_var * eye)


class GaussianMixtureOracle(nn.Module):
    """``E[eps | x_t]`` for ``w ~ sum_j weights_j N(means_j, var I)``: a multimodal prior with a closed form."""

    def __init__(self, schedule: NoiseSchedule, means: torch.Tensor, var: float, weights: torch.Tensor):
        super().__init__()
        self.schedule = schedule
        self.register_buffer("means", means.double())
        self.register_buffer("log_weights", weights.double().log())
        self.var = var

    def forward(self, x: torch.Tensor, t_normalised: torch.Tensor) -> torch.Tensor:
        a = self.schedule.alpha_bar_at(t_normalised.double() * self.schedule.n_timesteps).to(x.device)[:, None]
        spread = a * self.var + 1 - a  # variance of x_t within a component
        centred = x.double()[:, None, :] - a.sqrt()[:, :, None] * self.means[None]  # rows x components x k
        logits = self.log_weights[None] - 0.5 * (centred**2).sum(-1) / spread
        resp = torch.softmax(logits, dim=1)
        return ((1 - a).sqrt() * (resp[:, :, None] * centred).sum(1) / spread).to(x.dtype)


def mixture_posterior(z: torch.Tensor, means: torch.Tensor, var: float, weights: torch.Tensor, noise_var: float):
    """Mean and covariance of w | z for the mixture prior of :class:`GaussianMixtureOracle`, z = w + N(0, s2 I)."""
    z, means = z.double(), means.double()
    logits = weights.double().log() - 0.5 * ((z - means) ** 2).sum(-1) / (var + noise_var)
    resp = torch.softmax(logits, dim=0)
    shrink = var / (var + noise_var)
    component_means = means + shrink * (z - means)
    mean = resp @ component_means
    centred = component_means - mean
    cov = torch.eye(len(z), dtype=torch.float64) * shrink * noise_var + (resp[:, None] * centred).T @ centred
    return mean, cov
