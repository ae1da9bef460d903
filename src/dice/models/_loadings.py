"""Loadings refitted to the reference's raw counts, under a penalty that keeps them near PCA's.

PCA of log-normalised, standardised genes finds the directions of largest variance of ``log1p(1e4 c / n)``.
On a shallow reference (tens of UMIs per cell) that transform is dominated by depth and zeros, so PCA's
``V`` mixes cell-type signal with sampling noise, and a count-based measurement of a query through that
``V`` inherits it. Here ``V`` is moved to raise the count model's own likelihood of the reference
(:mod:`dice.likelihood._counts`: decoded rates, multinomial library size, negative-binomial noise), jointly
with each cell's state and each gene's scale, as in GLM-PCA. Unpenalised, that fit overfits the
reference's noise (it lowered clustering accuracy by 0.13 ARI at 5 % depth in our screen); a Gaussian
penalty of width ``width / sqrt(genes)`` per entry around PCA's loadings keeps what the counts support
and nothing more. The result is orthonormalised (``V = Q R``; ``Q`` spans the fitted subspace), so the
rest of the model (projection, count measurement, prior) is unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["refit_loadings"]

#: Full-batch Adam steps and learning rate (the screen's setting; the objective changes little after ~200).
N_STEPS = 300
LEARNING_RATE = 0.01
#: Largest cells x genes fitted at once: bigger references are subsampled (``V`` is shared by all cells, so
#: a few thousand cells pin it); 2^24 entries are ~64 MB per float32 array, ~1 GB with autograd's buffers.
MAX_ENTRIES = 2**24


def fit_rows(n_cells: int, n_genes: int, seed: int, max_entries: int = MAX_ENTRIES) -> np.ndarray:
    """Sorted rows of the cells the loadings are fitted on: all of them, or a seeded subsample."""
    n_fit = max(1, min(n_cells, max_entries // max(n_genes, 1)))
    if n_fit >= n_cells:
        return np.arange(n_cells)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    return np.sort(rng.choice(n_cells, size=n_fit, replace=False))


def refit_loadings(
    embedding,
    counts,
    *,
    width: float | None,
    latents: np.ndarray | None = None,
    dispersion: str = "local",
    seed: int = 0,
    device: str | torch.device = "cpu",
    n_steps: int = N_STEPS,
    lr: float = LEARNING_RATE,
    max_entries: int = MAX_ENTRIES,
    progress: bool = False,
):
    """The embedding with its loadings refitted to the reference's counts (see the module docstring).

    Parameters
    ----------
    embedding
        The reference's :class:`dice.pp._linear.LinearEmbedding` (PCA loadings); not modified.
    counts
        The reference's raw counts, cells x model genes (scipy sparse or dense), in ``embedding.genes`` order.
    width
        Penalty width in units of ``1 / sqrt(genes)`` (an orthonormal loading's typical entry): each entry of
        ``V`` is held near PCA's by ``N(V_gj; V_pca_gj, width^2 / genes)``. 1.5-3 helped in our screen;
        ``None`` fits without the penalty (kept for that screen: it overfits).
    latents
        The reference's projection latents (rows as ``counts``): they set the count model's weak prior.
    dispersion
        The count model's dispersion: per gene, pooled or local (:func:`dice.likelihood.fit_count_reference`).
    seed
        Seeds the subsample when the reference has more than ``max_entries / genes`` cells.
    device
        Torch device of the fit.
    n_steps, lr, max_entries
        Adam steps (full batch), learning rate, largest cells x genes fitted.
    progress
        Show a progress bar over the Adam steps (the refit takes minutes on thousands of cells x genes).

    Returns
    -------
    ``(embedding, info)``: a copy of ``embedding`` with the new orthonormal loadings (each axis oriented as
    PCA's), and a JSON-ready record of the fit (width, cells, steps, penalised negative log-likelihood per
    cell before and after).
    """
    from tqdm.auto import tqdm

    from ..likelihood._counts import count_measurement, fit_count_reference

    rows = fit_rows(counts.shape[0], embedding.n_genes, seed, max_entries)
    values = sp.csr_matrix(counts, dtype=np.float64)[rows]
    reference = fit_count_reference(
        values, embedding, latents=None if latents is None else latents[rows], dispersion=dispersion
    )
    measured = count_measurement(values, embedding, reference)
    modes = measured.scores / (1.0 + measured.noise_var[:, None] / reference.prior_var)

    def tensor(array):  # always a copy: the parameters are updated in place and must not alias the embedding
        return torch.tensor(np.asarray(array, dtype=np.float32), device=device)

    c = tensor(values.toarray())
    data = _FitData(
        counts=c,
        depth=c.sum(dim=1, keepdim=True),
        mean=tensor(embedding.mean),
        std=tensor(embedding.std),
        alpha=tensor(np.maximum(reference.dispersion, 1e-6)),
        precision=tensor(1.0 / reference.prior_var),
        start=tensor(embedding.loadings),
        width2=None if width is None else width**2 / embedding.n_genes,
        floor=reference.floor,
        min_rate=reference.min_rate,
    )
    loadings = torch.nn.Parameter(tensor(embedding.loadings))
    states = torch.nn.Parameter(tensor(modes))
    scale = torch.nn.Parameter(tensor(reference.gene_scale))
    optimizer = torch.optim.Adam([loadings, states, scale], lr=lr)
    with torch.no_grad():
        before = float(_objective(loadings, states, scale, data))
        for _ in tqdm(range(n_steps), desc="fitting loadings to counts", disable=not progress, mininterval=1.0):
            _set_gradients(loadings, states, scale, data)
            optimizer.step()
        after = float(_objective(loadings, states, scale, data))
    fitted = loadings.detach().cpu().numpy().astype(np.float64)
    q, _ = np.linalg.qr(fitted)
    q *= np.where(np.sum(q * embedding.loadings, axis=0) < 0, -1.0, 1.0)  # keep each axis's orientation
    info = {
        "kind": "counts",
        "width": None if width is None else float(width),
        "n_cells": int(c.shape[0]),
        "n_steps": int(n_steps),
        "objective_before": before,
        "objective_after": after,
    }
    return dataclasses.replace(embedding, loadings=q.astype(embedding.loadings.dtype)), info


class _FitData(NamedTuple):
    """The fixed inputs of the refit (torch tensors on the fit's device) and the count model's constants."""

    counts: torch.Tensor  # cells x genes
    depth: torch.Tensor  # cells x 1
    mean: torch.Tensor  # genes
    std: torch.Tensor  # genes
    alpha: torch.Tensor  # genes, negative-binomial dispersion (> 0)
    precision: torch.Tensor  # k, the weak prior on the states
    start: torch.Tensor  # genes x k, PCA's loadings (the penalty's centre)
    width2: float | None  # the penalty's variance per entry; None: no penalty
    floor: float
    min_rate: float


def _objective(loadings, states, scale, data: _FitData) -> torch.Tensor:
    """The penalised negative log-likelihood per cell: the count model of :mod:`dice.likelihood._counts`."""
    x = data.mean + data.std * (states @ loadings.T)
    soft = torch.nn.functional.softplus(x, beta=1.0 / data.floor)  # the smooth floor at 0
    rate = torch.exp(scale) * (torch.expm1(soft) + data.min_rate)
    lam = data.depth * rate / rate.sum(dim=1, keepdim=True)
    c = data.counts
    loglik = torch.xlogy(c, lam) - (c + 1.0 / data.alpha) * torch.log1p(data.alpha * lam)  # 0 log 0 = 0
    n_cells = c.shape[0]
    loss = -(loglik.sum() - 0.5 * (states * states * data.precision).sum()) / n_cells
    if data.width2 is not None:  # the penalty is per reference, the likelihood per cell
        loss = loss + 0.5 * ((loadings - data.start) ** 2).sum() / data.width2 / n_cells
    return loss


def _set_gradients(loadings, states, scale, data: _FitData) -> None:
    """:func:`_objective`'s gradient in ``V``, the states and the gene scales, written by hand into ``.grad``.

    Autograd of the same objective takes about three times as long on the CPU: it evaluates seven
    transcendental functions per cell and gene (forward and backward) where three suffice, and keeps every
    intermediate. With ``w = (c - lambda) / (1 + alpha lambda)`` (``lambda`` times the log-likelihood's
    derivative in ``lambda``), the multinomial normalisation makes ``a = w - lambda sum(w) / n`` the
    derivative in ``log(rate)``; the chain rule through the decoder ``rate = e^b (expm1(soft(x)) + m)``
    then gives it in ``x = mean + std V u``. Checked against autograd in the tests.
    """
    n_cells = data.counts.shape[0]
    x = (states @ loadings.T).mul_(data.std).add_(data.mean)
    beta = 1.0 / data.floor
    tail = torch.exp(-beta * x.abs())  # softplus and its slope from one exponential
    grow = torch.log1p(tail).div_(beta).add_(x.clamp(min=0.0))  # soft(x), the smooth max(x, 0)
    sigmoid = torch.where(x > 0, 1.0, tail).div_(tail.add_(1.0))  # d soft / d x
    grow = torch.expm1(grow)
    ratio = grow.add(1.0).div_(grow.add_(data.min_rate))  # d log(rate) / d soft
    lam = grow.mul_(torch.exp(scale))  # the rates, then (next line) the expected counts
    lam.mul_(data.depth / lam.sum(dim=1, keepdim=True))
    w = (data.counts - lam).div_(lam.mul(data.alpha).add_(1.0))
    a = w.sub_(lam.mul_(w.sum(dim=1, keepdim=True) / data.depth.clamp(min=1.0)))  # d loglik / d log(rate)
    scale.grad = -a.sum(dim=0) / n_cells
    g = a.mul_(ratio).mul_(sigmoid).mul_(data.std)  # d loglik / d (V u)
    states.grad = (states * data.precision - g @ loadings) / n_cells
    loadings.grad = -(g.T @ states) / n_cells
    if data.width2 is not None:
        loadings.grad += (loadings - data.start) / data.width2 / n_cells
