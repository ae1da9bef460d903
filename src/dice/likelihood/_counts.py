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
does not drift with depth (thinning keeps the expected profile ``p``). Droplet data also carry ambient RNA:
with ``CountReference.ambient_fraction`` ``rho > 0``, a share ``rho`` of each cell's expected counts follows
the reference's pooled profile instead, and carries no information on the cell's state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .._threads import map_in_threads
from ._base import Measurement
from ._newton import cholesky, decoded_rates, dense, newton_modes, solve_lower
from ._start import fit_start_map

__all__ = ["CountReference", "count_measurement", "fit_count_reference", "thin_counts"]

#: Noise variance of a cell without a single count over the genes present, in units of the mean reference
#: latent variance: so wide that its posterior is the prior (and finite, so the sampler needs no special case).
EMPTY_CELL_VAR_FACTOR = 100.0
#: Cells per block of the count solve: a block's dozen cells x genes float32 working arrays (12 MB at 500
#: genes) stay within the shared cache with two blocks side by side (BENCHMARKS.md section 1).
SOLVE_BLOCK_CELLS = 512


def _block_bytes(block_size: int, n_genes: int) -> int:
    """Working memory of one block's solve: about 16 cells x genes float32 arrays."""
    return 16 * 4 * int(block_size) * int(n_genes)


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
        residuals over Poisson, ``Var = lambda (1 + alpha lambda)``; per gene, or one value for all
        (:func:`fit_count_reference`).
    prior_var
        Reference latent variance per dimension (k): the weak Gaussian prior that keeps the mode finite
        for cells too shallow to pin every dimension; it is divided out of the returned measurement.
    floor
        Width of the smooth floor at 0 on the log1p scale (decoded states below zero keep a gradient).
    min_rate
        Rate every gene keeps (per 1e4 counts) however low its decoded expression: without it a zero
        count would pull the state without bound towards rates of exactly zero.
    ambient
        The reference's pooled expression profile over the model genes (sums to 1): the shape of the
        ambient RNA a droplet picks up from the cells lysed around it.
    ambient_fraction
        Share ``rho`` of each cell's counts modelled as ambient, ``lambda_g = n ((1 - rho) p_g / sum_h p_h +
        rho a_g)``: a T cell's few counts of a monocyte gene are then explained by the soup instead of
        pulling its state towards monocytes. 0 (the default) is the model without ambient RNA.
    start
        Where each cell's Newton solve starts: a linear map, ``(2k + 2) x k``, from its log-normalised
        projection and log depth to its mode (:func:`dice.likelihood._start.fit_start_map`); ``None``
        starts from the projection itself.
    start_log_depth
        The range of log depths the map was fitted at; a query's depths are clipped to it.
    """

    gene_scale: np.ndarray
    dispersion: np.ndarray
    prior_var: np.ndarray
    floor: float = 0.05
    min_rate: float = 0.1
    ambient: np.ndarray | None = None
    ambient_fraction: float = 0.0
    start: np.ndarray | None = None
    start_log_depth: tuple[float, float] | None = None

    def ambient_profile(self, present: np.ndarray) -> np.ndarray | None:
        """The ambient profile over the genes ``present``, renormalised; ``None`` without ambient RNA."""
        if self.ambient_fraction <= 0:
            return None
        if self.ambient is None:
            raise ValueError("ambient_fraction > 0 needs the reference's ambient profile (CountReference.ambient)")
        profile = np.asarray(self.ambient, dtype=np.float64)[present]
        return profile / profile.sum()


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


def count_measurement(
    counts,
    embedding,
    reference: CountReference,
    *,
    present: np.ndarray | None = None,
    n_iter: int = 10,
    level: str = "matched",
    block_size: int = SOLVE_BLOCK_CELLS,
    return_covariance: bool = False,
    n_threads: int | None = None,
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
        Maximum damped Fisher-scoring steps, started from the reference's start map of the cell's
        log-normalised projection and depth (:attr:`CountReference.start`). A cell stops once its next step
        would gain less than 3e-3 (the Newton decrement): it takes that step unchecked, and the information
        just computed, a tiny step from the mode, is its ``H``. Most cells stop after 2-3 steps.
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
    n_threads
        Blocks solved at once, each in its own thread with BLAS pinned to one thread (default: BLAS's own
        thread limit, so ``OMP_NUM_THREADS`` and :func:`threadpoolctl.threadpool_limits` are honoured; at
        most what :data:`dice._threads.THREADS_BYTES` of working memory allows). The solve is mostly element-wise
        numpy, which runs on one core per thread; the result does not depend on the number of threads.
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

    def measure(start: int) -> None:  # one block, written into its own rows (blocks never overlap)
        stop = min(start + block_size, n_cells)
        block = dense(counts[start:stop])
        full = np.flatnonzero(block[:, present].sum(axis=1) > 0)  # a cell without counts carries no information
        rows = slice(start, stop)
        noise[rows] = empty_var
        if return_covariance:
            covs[rows] = empty_var * np.eye(k)
        if full.size == 0:
            return
        mode, info = newton_modes(block[full], present, embedding, reference, n_iter, None)
        lower = cholesky(info)
        root = solve_lower(lower, np.broadcast_to(np.eye(k), info.shape))  # L^-1: H^-1 = L^-T L^-1
        at = start + full
        variance = np.sum(root * root, axis=(1, 2)) / k  # trace(H^-1) / k
        noise[at] = k / np.trace(info, axis1=1, axis2=2) if level == "mean_precision" else variance
        if level == "matched":  # the isotropic centre whose Gaussian-prior posterior mean is the full one's
            scores[at] = mode * (1.0 + noise[at, None] / reference.prior_var)
        else:  # divide the Gaussian prior out: N(y; u, H^-1) N(u; 0, P^-1) has its mode at u, so y = u + H^-1 P u
            scores[at] = mode + solve_lower(lower, solve_lower(lower, mode / reference.prior_var), transpose=True)
        if return_covariance:
            covs[at] = np.swapaxes(root, 1, 2) @ root

    map_in_threads(
        measure, range(0, n_cells, block_size), n_threads=n_threads, block_bytes=_block_bytes(block_size, n_genes)
    )
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
    ambient_fraction: float = 0.0,
    dispersion: str = "local",
    block_size: int = SOLVE_BLOCK_CELLS,
    n_threads: int | None = None,
) -> CountReference:
    """Fit the per-gene scale and dispersion of the count model on the reference's own counts.

    Alternates: measure every reference cell, set each gene's scale so that its expected counts sum to its
    observed counts, then the dispersion by moments, ``alpha = sum((c - lambda)^2 - lambda) / sum(lambda^2)``
    (floored at 0): summed over cells for each gene (``dispersion="gene"``) or over cells and genes for one
    value shared by every gene (``"pooled"``). The residuals are taken around the rank-k decoder, so a
    gene's own estimate also counts what the decoder misses of it as noise, most for the markers of small
    populations; the pooled value, dominated by well-expressed genes, does not down-weight them, and
    ``"local"`` measures each gene's dispersion around each cell's neighbours instead of the decoder
    (:func:`dice.likelihood._dispersion.local_dispersion`, fixed before the rounds; the default, see the
    benchmarks, section 4). ``latents`` (default ``V^T x_std``) only sets the weak prior's variance. The prior is
    then trained on the reference's ``count_measurement`` (or draws from it: ``TrainSettings.count_latents``).
    The ambient profile is the reference's pooled counts; ``ambient_fraction`` of every cell's counts is
    modelled as drawn from it (:class:`CountReference`). Blocks are solved in ``n_threads`` threads as in
    :func:`count_measurement`. Last, the map that starts every later solve near its mode is fitted on
    2,048 of the reference's cells at their depth and thinned to 20 % and 5 % of it
    (:func:`dice.likelihood._start.fit_start_map`, seeded).
    """
    if dispersion not in ("gene", "pooled", "local"):
        raise ValueError(f"dispersion must be 'gene', 'pooled' or 'local', got {dispersion!r}")
    k = embedding.n_comps
    if latents is None:
        prior_var = embedding.singular_values[:k] ** 2 / max(counts.shape[0] - 1, 1)
    else:
        prior_var = np.var(np.asarray(latents, dtype=np.float64), axis=0)
    pooled = np.asarray(counts.sum(axis=0), dtype=np.float64).ravel() + 1e-3  # every gene keeps a little ambient
    ref = CountReference(
        np.zeros(embedding.n_genes),
        np.zeros(embedding.n_genes),
        prior_var,
        floor,
        min_rate,
        ambient=pooled / pooled.sum(),
        ambient_fraction=float(ambient_fraction),
    )
    if dispersion == "local":  # fixed before the rounds: it does not depend on the decoder
        from ._dispersion import local_dispersion

        ref.dispersion = local_dispersion(counts, embedding, block_size=block_size)
    for _ in range(n_rounds):
        observed, expected, square, excess = count_moments(
            counts, embedding, ref, n_iter=n_iter, block_size=block_size, n_threads=n_threads
        )
        ref.gene_scale = ref.gene_scale + np.log((observed + 1e-3) / (expected + 1e-3))
        if dispersion == "gene":
            ref.dispersion = np.maximum(excess / np.maximum(square, 1e-12), 0.0)
        elif dispersion == "pooled":
            ref.dispersion = np.full_like(excess, max(excess.sum() / max(square.sum(), 1e-12), 0.0))
    ref.start, ref.start_log_depth = fit_start_map(counts, embedding, ref, n_iter=n_iter)
    return ref


def count_moments(
    counts, embedding, reference: CountReference, *, n_iter=10, block_size=SOLVE_BLOCK_CELLS, n_threads=None
):
    """Per-gene sums over cells at each cell's mode under ``reference``: observed counts, expected counts
    ``lambda``, ``lambda^2`` and the excess ``(c - lambda)^2 - lambda`` (what :func:`fit_count_reference`
    sets each gene's scale and dispersion from). Blocks are solved in ``n_threads`` threads and summed in
    block order, so the result does not depend on the number of threads.
    """
    present = np.ones(embedding.n_genes, dtype=bool)
    loadings = embedding.loadings.astype(np.float64)
    scale = np.exp(reference.gene_scale)
    ambient, rho = reference.ambient_profile(present), reference.ambient_fraction

    def moments(start: int) -> np.ndarray:  # one block's observed and expected counts, squares, excess
        block = dense(counts[start : start + block_size])
        u, _ = newton_modes(block, present, embedding, reference, n_iter, None, information_at_mode=False)
        rate, _ = decoded_rates(u, embedding.mean, embedding.std, loadings, scale, reference.floor, reference.min_rate)
        depth = block.sum(axis=1, keepdims=True)
        lam = depth * rate / rate.sum(axis=1, keepdims=True)
        if ambient is not None:
            lam = (1.0 - rho) * lam + rho * depth * ambient
        return np.stack(
            [block.sum(axis=0), lam.sum(axis=0), np.sum(lam * lam, axis=0), np.sum((block - lam) ** 2 - lam, axis=0)]
        )

    parts = map_in_threads(
        moments,
        range(0, counts.shape[0], block_size),
        n_threads=n_threads,
        block_bytes=_block_bytes(block_size, embedding.n_genes),
    )
    return np.sum(parts, axis=0)
