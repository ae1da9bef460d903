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
