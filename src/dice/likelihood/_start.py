"""Where the count solve starts: a linear map from a cell's log-normalised projection to its count mode.

Newton's method from the log-normalised projection ``V^T x_std`` (the natural first guess) needs three to
five full steps, because that projection is biased in a systematic way: ``log1p(1e4 c / n)`` of a shallow
cell is not the decoded log1p scale the count model works on, and the bias grows as depth falls (6-8
posterior standard deviations from the mode on CBMC). Most of that bias is linear in the projection and in
log depth, so a map fitted once on the reference's own modes, at its depth and thinned to lower depths,
starts each cell within 1.5-3.5 posterior sd instead (BENCHMARKS.md section 1); every cell still converges
to a mode of its own likelihood, in fewer steps.
"""

from __future__ import annotations

import numpy as np

__all__ = ["START_FRACTIONS", "fit_start_map", "start_features", "start_point"]

#: Depths the map is fitted at, as fractions of the reference's own (each reference cell binomially thinned).
START_FRACTIONS = (1.0, 0.2, 0.05)
LOG_DEPTH_CENTRE = float(np.log(1e3))  # log depth enters as log(n / 1000), so its coefficients stay O(1)


def start_features(proj: np.ndarray, depth: np.ndarray, log_depth_range=None) -> np.ndarray:
    """``[p, p * l, l, 1]`` per cell: the projection ``p``, its interaction with ``l = log(n / 1000)`` (clipped
    to ``log_depth_range``, the depths the map was fitted at, so it never extrapolates in depth), ``l``, 1."""
    log_depth = np.log(np.maximum(np.asarray(depth, dtype=np.float64).reshape(-1, 1), 1.0))
    if log_depth_range is not None:
        log_depth = np.clip(log_depth, *log_depth_range)
    centred = log_depth - LOG_DEPTH_CENTRE
    return np.hstack([proj, proj * centred, centred, np.ones_like(centred)])


def start_point(proj: np.ndarray, depth: np.ndarray, reference) -> np.ndarray:
    """Each cell's starting point: ``reference.start`` applied to its projection ``proj`` and depth; the
    projection itself when the reference has no map (models saved before it existed)."""
    if reference.start is None:
        return proj
    features = start_features(proj, depth, reference.start_log_depth)
    return features @ np.asarray(reference.start, dtype=features.dtype)


def fit_start_map(
    counts, embedding, reference, *, n_cells: int = 2048, fractions=START_FRACTIONS, seed: int = 0, n_iter: int = 10
) -> tuple[np.ndarray, tuple[float, float]]:
    """Least-squares map from :func:`start_features` to the count mode, on reference cells at several depths.

    ``n_cells`` evenly spaced reference cells are solved (from their projections) at each fraction of their
    depth in ``fractions`` (binomial thinning, seeded by ``seed``). Returns the map, ``(2k + 2) x k``, and the
    range of log depths it saw (queries outside it are clipped to it).
    """
    from ._counts import thin_counts
    from ._newton import dense, log_projection, newton_modes

    rows = np.unique(np.linspace(0, counts.shape[0] - 1, min(n_cells, counts.shape[0])).astype(np.intp))
    base = counts[rows]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    present = np.ones(embedding.n_genes, dtype=bool)
    features, modes, log_depths = [], [], []
    for fraction in fractions:
        block = dense(base if fraction >= 1 else thin_counts(base, fraction, rng))
        depth = block.sum(axis=1, keepdims=True)
        keep = depth[:, 0] > 0
        block, depth = block[keep], depth[keep]
        if not block.shape[0]:
            continue
        proj = log_projection(block, depth, embedding.mean, embedding.std, embedding.loadings, embedding.max_value)
        # from the projection itself, whatever map ``reference`` has already: the fit does not depend on it
        mode, _ = newton_modes(block, present, embedding, reference, n_iter, proj, information_at_mode=False)
        features.append(start_features(proj, depth))
        modes.append(mode)
        log_depths.append(np.log(depth[:, 0]))
    x, y = np.vstack(features), np.vstack(modes)
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    seen = np.concatenate(log_depths)
    return coef, (float(seen.min()), float(seen.max()))
