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
    """Decoded rates ``p`` (cells x genes) and their derivative with respect to ``V u`` (chain rule).

    Written without ``np.where`` (several times slower than arithmetic on these arrays): masks multiply.
    """
    x = mean + std * (u.astype(loadings.dtype) @ loadings.T)
    live = x <= MAX_LOG1P  # beyond the cap the rate is constant
    x = np.minimum(x, MAX_LOG1P)
    tail = np.exp(np.abs(x) * (-1.0 / floor))
    soft = np.maximum(x, 0.0) + floor * np.log1p(tail)  # smooth max(x, 0): keeps a gradient below zero
    grow = np.expm1(soft)
    rate = scale * (grow + min_rate)
    sigmoid = np.maximum(tail, x > 0) / (1.0 + tail)  # d soft / d x: 1 / (1 + tail) above 0, tail / (1 + tail) below
    slope = (scale * std) * (grow + 1.0) * sigmoid * live
    return rate, slope


def _cholesky(matrices: np.ndarray) -> np.ndarray:
    """Batched lower Cholesky factors; a matrix that is not numerically positive definite gets its
    eigenvalues floored first (a cell measured in too few genes to pin every direction)."""
    try:
        return np.linalg.cholesky(matrices)
    except np.linalg.LinAlgError:
        values, vectors = np.linalg.eigh(matrices)
        floor = 1e-10 * np.maximum(values[:, -1:], 1e-12)
        return np.linalg.cholesky((vectors * np.maximum(values, floor)[:, None, :]) @ np.swapaxes(vectors, 1, 2))


def _solve_lower(lower: np.ndarray, rhs: np.ndarray, *, transpose: bool = False) -> np.ndarray:
    """``L x = b`` (or ``L^T x = b``) for a batch of lower-triangular ``L`` (cells x k x k); ``b`` is cells x k
    or cells x k x m. Substitution vectorised over cells: k small steps, far cheaper than k x k inverses."""
    k = lower.shape[1]
    out = np.empty(rhs.shape)
    order = range(k - 1, -1, -1) if transpose else range(k)
    for i in order:
        if transpose:  # row i of L^T is column i of L below the diagonal
            known, done = lower[:, i + 1 :, i], out[:, i + 1 :]
        else:
            known, done = lower[:, i, :i], out[:, :i]
        acc = np.einsum("cj,cj...->c...", known, done)
        out[:, i] = (rhs[:, i] - acc) / (lower[:, i, i] if rhs.ndim == 2 else lower[:, i, i, None])
    return out


def _solve_block(counts, present, embedding, ref, n_iter, u0, tol=1e-3, information_at_mode=True):
    """Newton ascent of the penalised count log-likelihood for one block; returns the mode ``uhat`` and ``H``.

    Each iteration decodes, scores and computes the Fisher information of the cells still moving once
    (the decode of an accepted step is kept for the next iteration); a step that does not raise the
    objective is halved along the same direction, so no cell needs a second solve. A frozen information
    (one solve, many cheap steps) was measured and rejected: it needed every iteration to converge and
    lost accuracy on 5 %-depth cells. ``H`` is the information at the mode (skipped when
    ``information_at_mode`` is false, as the reference fit needs only the mode).
    """
    dtype = np.float32  # cells x genes arithmetic in single precision (2x faster); sums and solves in double
    loadings = embedding.loadings.astype(dtype)[present]
    mean, std = embedding.mean.astype(dtype)[present], embedding.std.astype(dtype)[present]
    scale = np.exp(ref.gene_scale[present]).astype(dtype)
    # a Poisson gene (alpha = 0) as the limit alpha = 1e-6: one expression for every gene, no branch
    alpha = np.maximum(ref.dispersion[present], 1e-6).astype(dtype)
    inv_alpha = (1.0 / alpha).astype(dtype)
    counts = counts[:, present].astype(dtype)
    n_cells, k = counts.shape[0], loadings.shape[1]
    depth = counts.sum(axis=1, keepdims=True)
    prec = 1.0 / ref.prior_var
    floor, min_rate = ref.floor, ref.min_rate

    def decode(u, rows):
        rate, slope = _rates(u, mean, std, loadings, scale, floor, min_rate)
        total = rate.sum(axis=1, keepdims=True)
        return slope, total, depth[rows] * rate / total

    def objective(u, lam, rows):
        c = counts[rows]
        nb = (c + inv_alpha) * np.log1p(alpha * lam)  # -> lam as alpha -> 0 (alpha is floored at 1e-6)
        return np.sum(c * np.log(lam) - nb, axis=1, dtype=np.float64) - 0.5 * np.sum(u * u * prec, axis=1)

    def score(u, terms, rows):
        slope, total, lam = terms
        weight = 1.0 / (lam * (1.0 + alpha * lam))  # 1 / Var(c_g)
        a = depth[rows] * slope / total  # d lambda_g / d (V u)_g
        m = (slope @ loadings) / total  # d lambda_g / du = a_g V_g - lambda_g m
        resid = weight * (counts[rows] - lam)
        grad = resid * a @ loadings - np.sum(resid * lam, axis=1, keepdims=True) * m
        return grad.astype(np.float64) - u * prec, (weight, a, m)

    def information(terms, parts):
        lam, (weight, a, m) = terms[2], parts
        cross = ((weight * a * lam) @ loadings).astype(np.float64)
        info = np.empty((lam.shape[0], k, k))
        info[:, upper[0], upper[1]] = (weight * a * a) @ outer  # the cells x genes x k^2 cost, halved by symmetry
        info[:, upper[1], upper[0]] = info[:, upper[0], upper[1]]
        m = m.astype(np.float64)
        info -= cross[:, :, None] * m[:, None, :] + m[:, :, None] * cross[:, None, :]
        info += np.sum(weight * lam * lam, axis=1, dtype=np.float64)[:, None, None] * m[:, :, None] * m[:, None, :]
        return info

    upper = np.triu_indices(k)
    outer = loadings[:, upper[0]] * loadings[:, upper[1]]  # genes x k(k+1)/2
    if u0 is None:  # start from the log-normalised projection: close to the mode for deep cells
        x = np.log1p(1e4 * counts / np.maximum(depth, 1.0))
        u0 = np.minimum((x - mean) / std, embedding.max_value or np.inf) @ loadings
    u = np.array(u0, dtype=np.float64)
    everyone = np.arange(n_cells)
    terms = decode(u, everyone)
    current = objective(u, terms[2], everyone)
    grad, parts = score(u, terms, everyone)
    active = everyone  # cells still moving
    for _ in range(n_iter):
        info = information(tuple(t[active] for t in terms), tuple(p[active] for p in parts))
        lower = _cholesky(info + np.diag(prec)[None])
        step = _solve_lower(lower, _solve_lower(lower, grad[active]), transpose=True)
        predicted = 0.5 * np.sum(step * grad[active], axis=1)  # the Newton decrement: the gain still to come
        todo = np.arange(active.size)  # positions in ``active``
        gain = np.zeros(active.size)
        for _ in range(8):  # halve the step until the objective rises
            rows = active[todo]
            trial = u[rows] + step[todo]
            trial_terms = decode(trial, rows)
            value = objective(trial, trial_terms[2], rows)
            ok = value >= current[rows] - 1e-9  # NaN counts as a failure
            done = rows[ok]
            gain[todo[ok]] = value[ok] - current[done]
            u[done], current[done] = trial[ok], value[ok]
            for whole, part in zip(terms, trial_terms, strict=True):
                whole[done] = part[ok]
            todo = todo[~ok]
            step[todo] *= 0.5
            if todo.size == 0:
                break
        active = active[(gain > tol) & (predicted > tol)]
        if active.size == 0:
            break
        sub = tuple(t[active] for t in terms)
        grad[active], moved = score(u[active], sub, active)
        for whole, part in zip(parts, moved, strict=True):
            whole[active] = part
    if not information_at_mode:
        return u, None
    _, parts = score(u, terms, everyone)  # parts of the cells that stopped early are from before their last step
    return u, information(terms, parts) + 1e-8 * np.eye(k)[None]


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
        mode, info = _solve_block(block[full], present, embedding, reference, n_iter, None)
        lower = _cholesky(info)
        root = _solve_lower(lower, np.broadcast_to(np.eye(k), info.shape))  # L^-1: H^-1 = L^-T L^-1
        at = start + full
        # divide the Gaussian prior out: N(y; u, H^-1) N(u; 0, P^-1) has its mode at u, so y = u + H^-1 P u
        scores[at] = mode + _solve_lower(lower, _solve_lower(lower, mode / reference.prior_var), transpose=True)
        variance = np.sum(root * root, axis=(1, 2)) / k  # trace(H^-1) / k
        noise[at] = k / np.trace(info, axis1=1, axis2=2) if level == "mean_precision" else variance
        if level == "matched":  # the isotropic centre whose Gaussian-prior posterior mean is the full one's
            scores[at] = mode * (1.0 + noise[at, None] / reference.prior_var)
        if return_covariance:
            covs[at] = np.swapaxes(root, 1, 2) @ root
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
            u, _ = _solve_block(block, present, embedding, ref, n_iter, None, information_at_mode=False)
            rate, _ = _rates(u, embedding.mean, embedding.std, loadings, np.exp(ref.gene_scale), floor, min_rate)
            lam = block.sum(axis=1, keepdims=True) * rate / rate.sum(axis=1, keepdims=True)
            observed += block.sum(axis=0)
            expected += lam.sum(axis=0)
            square += np.sum(lam * lam, axis=0)
            excess += np.sum((block - lam) ** 2 - lam, axis=0)
        ref.gene_scale = ref.gene_scale + np.log((observed + 1e-3) / (expected + 1e-3))
        ref.dispersion = np.maximum(excess / np.maximum(square, 1e-12), 0.0)
    return ref
