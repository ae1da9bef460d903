"""The denoising network: the paper's residual MLP ("TabularDiffusionMLP", appendix C)."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["DiffusionMLP"]


class SinusoidalTimeEmbedding(nn.Module):
    """Sinusoidal features of the normalised time ``t / T`` in [0, 1].

    The angles use ``1000 * t / T`` so that the fastest frequency resolves neighbouring diffusion steps
    (features of ``t / T`` itself would barely vary over [0, 1]).
    """

    def __init__(self, dim: int = 16):
        super().__init__()
        half = dim // 2
        frequencies = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("frequencies", frequencies, persistent=False)

    def forward(self, t_normalised: torch.Tensor) -> torch.Tensor:
        angles = 1000.0 * t_normalised[:, None] * self.frequencies[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=1)


def _norm(kind: str, width: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm1d(width)
    if kind == "layer":
        return nn.LayerNorm(width)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'batch', 'layer' or 'none', got {kind!r}")


class ResidualBlock(nn.Module):
    """``x + Norm(Linear(SiLU(Norm(Linear(x)))))`` with a 2x expansion inside."""

    def __init__(self, width: int, norm: str):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(width, 2 * width),
            _norm(norm, 2 * width),
            nn.SiLU(),
            nn.Linear(2 * width, width),
            _norm(norm, width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DiffusionMLP(nn.Module):
    """Noise-prediction network ``eps_theta(u_t, t)`` for latent vectors of size ``n_latent``.

    Parameters
    ----------
    n_latent
        Latent dimension k.
    hidden_dim
        D in the paper: the data and time branches each map to D features, the trunk has width 2D.
    n_blocks
        M in the paper: number of residual blocks.
    time_dim
        Size of the sinusoidal time features.
    norm
        ``"batch"`` (the paper's BatchNorm1d), ``"layer"`` or ``"none"``.
    """

    def __init__(self, n_latent: int, hidden_dim: int = 64, n_blocks: int = 2, time_dim: int = 16, norm: str = "batch"):
        super().__init__()
        self.data_branch = nn.Linear(n_latent, hidden_dim)
        self.time_branch = nn.Sequential(
            SinusoidalTimeEmbedding(time_dim),
            nn.Linear(time_dim, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.SiLU(),
        )
        width = 2 * hidden_dim
        self.blocks = nn.Sequential(*[ResidualBlock(width, norm) for _ in range(n_blocks)])
        self.head = nn.Sequential(nn.Linear(width, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, n_latent))

    def forward(self, x: torch.Tensor, t_normalised: torch.Tensor) -> torch.Tensor:
        features = torch.cat([self.data_branch(x), self.time_branch(t_normalised)], dim=1)
        return self.head(self.blocks(features))
