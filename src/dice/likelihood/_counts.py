"""A count likelihood of a cell's latent state: the measurement that stays right when a query is shallow.

Log-normalising a shallow cell shifts its expression systematically (a detected gene at 70 UMIs becomes
``log1p(1e4 / 70)``), which no Gaussian noise level can express. Here the counts are modelled instead.
A latent state ``u`` decodes to the reference's log1p scale, ``xhat(u) = mean + std * (V u)``; the
expected counts of a cell with ``n`` counts over the genes it has are multinomial,
``lambda_g = n p_g / sum_h p_h`` with ``p_g = exp(b_g) expm1(floor(xhat_g))`` (``b_g`` a per-gene scale
fitted on the reference, ``floor`` a smooth floor at 0), and each count has a negative-binomial variance
``lambda_g (1 + alpha_g lambda_g)`` (``alpha_g`` fitted on the reference's residuals; 0 is Poisson).
Fisher scoring finds the mode ``uhat`` and the Fisher information ``H`` there: the measurement is
``N(u; uhat, H^-1)``, whose covariance widens as depth falls and as genes go missing, and whose centre
does not drift with depth (thinning keeps the expected profile ``p``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ._base import Measurement

__all__ = ["CountReference", "count_measurement", "fit_count_reference", "thin_counts"]

#: Noise variance of a cell without a single count over the genes present, in units of the mean reference
#: latent variance: so wide that its posterior is the prior (and finite, so the sampler needs no special case).
EMPTY_CELL_VAR_FACTOR = 100.0
MAX_LOG1P = 12.0  # decoded log1p expression is capped here (1.6e5 per 1e4 counts: far beyond any real gene)


@dataclass
class CountReference:
    """Per-gene statistics of the count model, fitted on the reference (:func:`fit_count_reference`).

    Attributes
    ----------
    gene_scale
        ``b_g`` (genes): log factor on each gene's decoded rate, so that the reference's expected counts
        sum to its observed counts gene by gene (the decoder alone misses them: ``expm1`` of a mean log1p
        underestimates sparse genes).
    dispersion
        ``alpha_g`` (genes): negative-binomial overdispersion, the excess of the reference's squared
        residuals over Poisson, ``Var = lambda (1 + alpha lambda)``.
    prior_var
        Reference latent variance per dimension (k): the weak Gaussian prior that keeps the mode finite
        for cells too shallow to pin every dimension; it is divided out of the returned measurement.
    floor
        Width of the smooth floor at 0 on the log1p scale (decoded states below zero keep a gradient).
    min_rate
        Rate every gene keeps (per 1e4 counts) however low its decoded expression: without it a zero
        count would pull the state without bound towards rates of exactly zero.
    """

    gene_scale: np.ndarray
    dispersion: np.ndarray
    prior_var: np.ndarray
    floor: float = 0.05
    min_rate: float = 0.1


def thin_counts(counts, keep, rng: np.random.Generator) -> sp.csr_matrix:
    """Binomial thinning: each count kept with probability ``keep`` (a scalar or one value per cell).

    What a shallower sequencing run of the same cells gives. Non-integer counts (e.g. ambient-corrected) keep
    their fractional part with probability ``keep`` too, so the expected depth is ``keep`` times the original.
    """
    out = sp.csr_matrix(counts, dtype=np.float64, copy=True)
    p = np.broadcast_to(np.asarray(keep, dtype=np.float64), (out.shape[0],))
    p = np.repeat(p, np.diff(out.indptr))
    whole = np.floor(out.data)
    out.data = rng.binomial(whole.astype(np.int64), p) + (rng.random(len(p)) < (out.data - whole) * p)
    out.data = out.data.astype(np.float64)
    out.eliminate_zeros()
    return out


def _dense(block) -> np.ndarray:
    return np.asarray(block.toarray() if sp.issparse(block) else block, dtype=np.float64)


def _rates(u, mean, std, loadings, scale, floor, min_rate):
    """Decoded rates ``p`` (cells x genes) and their derivative with respect to ``V u`` (chain rule)."""
    x = mean + std * (u.astype(loadings.dtype) @ loadings.T)
    capped = x > MAX_LOG1P
    x = np.minimum(x, MAX_LOG1P)
    tail = np.exp(-np.abs(x) / floor)
    soft = np.maximum(x, 0.0) + floor * np.log1p(tail)  # smooth max(x, 0): keeps a gradient below zero
    grow = np.expm1(soft)
    rate = scale * (grow + min_rate)
    sigmoid = np.where(x > 0, 1.0, tail) / (1.0 + tail)  # d soft / d x
    slope = np.where(capped, 0.0, scale * (grow + 1.0) * std * sigmoid)
    return rate, slope


def _solve_block(counts, present, embedding, ref, n_iter, u0, tol=1e-3):
    """Damped Fisher scoring of the penalised count log-likelihood for one block; returns ``y``, ``H``, ``uhat``."""
    dtype = np.float32  # cells x genes arithmetic in single precision (2x faster); sums and solves in double
    loadings = embedding.loadings.astype(dtype)[present]
    mean, std = embedding.mean.astype(dtype)[present], embedding.std.astype(dtype)[present]
    scale, alpha = np.exp(ref.gene_scale[present]).astype(dtype), ref.dispersion[present].astype(dtype)
    counts = counts[:, present].astype(dtype)
    n_cells, k = counts.shape[0], loadings.shape[1]
    outer = np.einsum("gk,gl->gkl", loadings, loadings).reshape(-1, k * k)
    depth = counts.sum(axis=1, keepdims=True)
    prec = 1.0 / ref.prior_var
    floor, min_rate = ref.floor, ref.min_rate

    def objective(u, rows):
        rate, _ = _rates(u, mean, std, loadings, scale, floor, min_rate)
        lam = depth[rows] * rate / rate.sum(axis=1, keepdims=True)
        c = counts[rows]
        nb = np.where(alpha > 0, (c + 1.0 / np.maximum(alpha, 1e-12)) * np.log1p(alpha * lam), lam)
        return np.sum(c * np.log(lam) - nb, axis=1, dtype=np.float64) - 0.5 * np.sum(u * u * prec, axis=1)

    def fisher(u, rows):
        rate, slope = _rates(u, mean, std, loadings, scale, floor, min_rate)
        total = rate.sum(axis=1, keepdims=True)
        n = depth[rows]
        lam = n * rate / total
        weight = 1.0 / (lam * (1.0 + alpha * lam))  # 1 / Var(c_g)
        a = n * slope / total  # d lambda_g / d (V u)_g
        m = (slope @ loadings) / total  # d lambda_g / du = a_g V_g - lambda_g m
        resid = weight * (counts[rows] - lam)
        score = resid * a @ loadings - np.sum(resid * lam, axis=1, keepdims=True) * m
        cross = (weight * a * lam) @ loadings
        info = ((weight * a * a) @ outer).reshape(-1, k, k)
        info -= cross[:, :, None] * m[:, None, :] + m[:, :, None] * cross[:, None, :]
        info += np.sum(weight * lam * lam, axis=1)[:, None, None] * m[:, :, None] * m[:, None, :]
        info = info.astype(np.float64)
        return score.astype(np.float64) - u * prec, (info + np.swapaxes(info, 1, 2)) / 2

    if u0 is None:  # start from the log-normalised projection: close to the mode for deep cells
        x = np.log1p(1e4 * counts / np.maximum(depth, 1.0))
        u0 = np.minimum((x - mean) / std, embedding.max_value or np.inf) @ loadings
    u = np.array(u0, dtype=np.float64)
    current = objective(u, slice(None))
    damping = np.full(n_cells, 1e-2)
    eye = np.eye(k)[None]
    active = np.arange(n_cells)  # cells still moving
    for _ in range(n_iter):
        score, info = fisher(u[active], active)
        system = info + np.diag(prec)[None]
        diag = np.diagonal(system, axis1=1, axis2=2)[:, :, None] * eye
        todo = np.arange(active.size)  # positions in ``active``
        gain = np.zeros(active.size)
        for _ in range(8):  # Levenberg-Marquardt: raise a cell's damping until its objective rises
            rows = active[todo]
            step = np.linalg.solve(system[todo] + damping[rows, None, None] * diag[todo], score[todo, :, None])[..., 0]
            trial = u[rows] + step
            value = objective(trial, rows)
            ok = value >= current[rows] - 1e-9  # NaN counts as a failure
            done = rows[ok]
            gain[todo[ok]] = value[ok] - current[done]
            u[done], current[done] = trial[ok], value[ok]
            damping[done] = np.maximum(damping[done] / 10.0, 1e-6)
            todo = todo[~ok]
            damping[active[todo]] *= 10.0
            if todo.size == 0:
                break
        active = active[gain > tol]
        if active.size == 0:
            break
    _, info = fisher(u, slice(None))
    # divide the Gaussian prior out: N(y; u, H^-1) N(u; 0, P^-1) has its mode at u, so y = u + H^-1 P u
    info += 1e-8 * np.eye(k)[None]
    y = u + np.linalg.solve(info, (u * prec)[:, :, None])[:, :, 0]
    return y, info, u


def count_measurement(
    counts,
    embedding,
    reference: CountReference,
    *,
    present: np.ndarray | None = None,
    n_iter: int = 10,
    level: str = "matched",
    block_size: int = 1024,
    return_covariance: bool = False,
) -> Measurement:
    """Measure each cell's latent state from its raw counts (Gaussian approximation at the mode).

    Parameters
    ----------
    counts
        Raw counts, cells x model genes (dense or scipy sparse), columns in ``embedding.genes`` order.
    embedding
        The reference's :class:`dice.pp._linear.LinearEmbedding` (mean, std, loadings ``V``).
    reference
        Per-gene scale, dispersion and latent variance fitted on the reference (:func:`fit_count_reference`).
    present
        Bool mask of the model genes the query actually measured (default: all). Missing genes drop out of
        the library size, the multinomial and the information, so the covariance widens accordingly.
    n_iter
        Maximum damped Fisher-scoring steps, started from the cell's log-normalised projection (exact for
        deep cells, a rough guess for shallow ones); 4-6 usually converge, the rest stop when they gain < 1e-3.
    level
        How the anisotropic ``N(y; u, H^-1)`` becomes the isotropic measurement the direct sampler needs:
        ``"mean_var"`` (centre ``y``, variance ``trace(H^-1) / k``), ``"mean_precision"`` (``y``, ``k / trace(H)``)
        or ``"matched"`` (default): variance ``trace(H^-1) / k``, centre moved so that under the weak Gaussian
        prior the isotropic measurement has the same posterior mean as the full one (the penalised mode), so
        poorly measured directions are not inflated to the mean variance's scale. On shallow CBMC queries it
        was the most accurate (``benchmarks/results/depth_counts.md``).
    block_size
        Cells per vectorised block (memory ~ ``block_size x genes x 8`` bytes per array).
    return_covariance
        Also return ``H^-1`` per cell (cells x k x k).
    """
    n_genes = embedding.n_genes
    present = np.ones(n_genes, dtype=bool) if present is None else np.asarray(present, dtype=bool)
    if counts.shape[1] != n_genes or present.shape != (n_genes,):
        raise ValueError("counts needs one column per model gene, present one entry per model gene")
    if level not in ("mean_var", "mean_precision", "matched"):
        raise ValueError(f"level must be 'mean_var', 'mean_precision' or 'matched', got {level!r}")
    k = embedding.n_comps
    n_cells = counts.shape[0]
    scores, noise = np.zeros((n_cells, k)), np.empty(n_cells)
    covs = np.empty((n_cells, k, k)) if return_covariance else None
    empty_var = EMPTY_CELL_VAR_FACTOR * float(np.mean(reference.prior_var))
    for start in range(0, n_cells, block_size):
        stop = min(start + block_size, n_cells)
        block = _dense(counts[start:stop])
        full = np.flatnonzero(block[:, present].sum(axis=1) > 0)  # a cell without counts carries no information
        rows = slice(start, stop)
        noise[rows] = empty_var
        if return_covariance:
            covs[rows] = empty_var * np.eye(k)
        if full.size == 0:
            continue
        y, info, mode = _solve_block(block[full], present, embedding, reference, n_iter, None)
        cov = np.linalg.inv(info)
        at = start + full
        scores[at] = y
        noise[at] = (
            k / np.trace(info, axis1=1, axis2=2) if level == "mean_precision" else np.trace(cov, axis1=1, axis2=2) / k
        )
        if level == "matched":  # the isotropic centre whose Gaussian-prior posterior mean is the full one's
            scores[at] = mode * (1.0 + noise[at, None] / reference.prior_var)
        if return_covariance:
            covs[at] = cov
    return Measurement(scores, noise, covs)


def fit_count_reference(
    counts,
    embedding,
    *,
    latents=None,
    n_rounds: int = 2,
    n_iter: int = 10,
    floor: float = 0.05,
    min_rate: float = 0.1,
    block_size: int = 1024,
) -> CountReference:
    """Fit the per-gene scale and dispersion of the count model on the reference's own counts.

    Alternates: measure every reference cell, set each gene's scale so that its expected counts sum to its
    observed counts, then its dispersion by moments, ``alpha_g = sum((c - lambda)^2 - lambda) / sum(lambda^2)``
    (floored at 0). ``latents`` (default ``V^T x_std``) only sets the weak prior's variance. The reference
    latents to train the prior on are then ``count_measurement(counts, embedding, reference).scores``.
    """
    k = embedding.n_comps
    if latents is None:
        prior_var = embedding.singular_values[:k] ** 2 / max(counts.shape[0] - 1, 1)
    else:
        prior_var = np.var(np.asarray(latents, dtype=np.float64), axis=0)
    ref = CountReference(np.zeros(embedding.n_genes), np.zeros(embedding.n_genes), prior_var, floor, min_rate)
    present = np.ones(embedding.n_genes, dtype=bool)
    loadings = embedding.loadings.astype(np.float64)
    for _ in range(n_rounds):
        observed, expected, square, excess = (np.zeros(embedding.n_genes) for _ in range(4))
        for start in range(0, counts.shape[0], block_size):
            block = _dense(counts[start : start + block_size])
            _, _, u = _solve_block(block, present, embedding, ref, n_iter, None)
            rate, _ = _rates(u, embedding.mean, embedding.std, loadings, np.exp(ref.gene_scale), floor, min_rate)
            lam = block.sum(axis=1, keepdims=True) * rate / rate.sum(axis=1, keepdims=True)
            observed += block.sum(axis=0)
            expected += lam.sum(axis=0)
            square += np.sum(lam * lam, axis=0)
            excess += np.sum((block - lam) ** 2 - lam, axis=0)
        ref.gene_scale = ref.gene_scale + np.log((observed + 1e-3) / (expected + 1e-3))
        ref.dispersion = np.maximum(excess / np.maximum(square, 1e-12), 0.0)
    return ref
