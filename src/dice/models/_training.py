"""DDPM training of the prior network on reference latents."""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn

from ._schedule import NoiseSchedule

__all__ = ["SameLabelMixup", "train_diffusion"]


class SameLabelMixup:
    """Paper appendix C: replace a latent, with probability ``prob``, by a Dirichlet(1) convex
    combination of it and ``n_partners`` other cells of the same label (drawn with replacement)."""

    def __init__(self, labels: np.ndarray, prob: float = 0.9, n_partners: int = 4, device="cpu"):
        codes = np.unique(np.asarray(labels), return_inverse=True)[1].astype(np.int64)
        order = np.argsort(codes, kind="stable")
        counts = np.bincount(codes)
        self.codes = torch.as_tensor(codes, device=device)
        self.order = torch.as_tensor(order, device=device)
        self.starts = torch.as_tensor(np.concatenate([[0], np.cumsum(counts)[:-1]]), device=device)
        self.counts = torch.as_tensor(counts, device=device)
        self.prob = prob
        self.n_partners = n_partners

    def __call__(self, latents: torch.Tensor, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        batch = latents[index]
        codes = self.codes[index]
        draws = torch.rand(len(index), self.n_partners, generator=generator, device=latents.device)
        offsets = (draws * self.counts[codes, None]).long()
        partners = self.order[self.starts[codes, None] + offsets]
        group = torch.cat([batch[:, None, :], latents[partners]], dim=1)
        weights = -torch.log(torch.rand(group.shape[:2], generator=generator, device=latents.device).clamp_min(1e-12))
        weights = weights / weights.sum(dim=1, keepdim=True)
        mixed = (weights[:, :, None] * group).sum(dim=1)
        use = torch.rand(len(index), generator=generator, device=latents.device) < self.prob
        return torch.where(use[:, None], mixed, batch)


def train_diffusion(
    network: nn.Module,
    schedule: NoiseSchedule,
    latents: torch.Tensor,
    *,
    n_steps: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    generator: torch.Generator,
    mixup: SameLabelMixup | None = None,
    warmup_fraction: float = 0.02,
    progress: bool = True,
    log_every: int = 50,
) -> dict:
    """Minimise ``||eps - eps_theta(sqrt(abar_t) u + sqrt(1 - abar_t) eps, t)||^2`` with AdamW.

    The learning rate warms up linearly over the first ``warmup_fraction`` of the steps, then follows a
    cosine decay to zero. Returns a history with the mean loss of every ``log_every`` steps.
    """
    from tqdm.auto import tqdm

    device = latents.device
    alpha_bars = schedule.alpha_bars.to(device=device, dtype=torch.float32)
    n_cells = latents.shape[0]
    optimizer = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=weight_decay)
    warmup = max(1, int(warmup_fraction * n_steps))

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, n_steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    network.train()
    history = {"step": [], "loss": [], "lr": []}
    running, count = 0.0, 0
    started = time.perf_counter()
    bar = tqdm(range(n_steps), desc="training prior", disable=not progress, mininterval=1.0)
    for step in bar:
        index = torch.randint(n_cells, (min(batch_size, n_cells),), generator=generator, device=device)
        clean = mixup(latents, index, generator) if mixup is not None else latents[index]
        t = torch.randint(1, schedule.n_timesteps + 1, (len(index),), generator=generator, device=device)
        noise = torch.randn(clean.shape, generator=generator, device=device)
        abar = alpha_bars[t][:, None]
        noisy = abar.sqrt() * clean + (1.0 - abar).sqrt() * noise
        loss = torch.mean((network(noisy, t.float() / schedule.n_timesteps) - noise) ** 2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        running += float(loss.detach())
        count += 1
        if count == log_every or step == n_steps - 1:
            history["step"].append(step + 1)
            history["loss"].append(running / count)
            history["lr"].append(scheduler.get_last_lr()[0])
            bar.set_postfix(loss=f"{running / count:.4f}", refresh=False)
            running, count = 0.0, 0
    network.eval()
    history["seconds"] = time.perf_counter() - started
    return history
