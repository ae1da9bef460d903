"""Newton ascent of the count log-likelihood of a block of cells: the numerical core of the count measurement.

:mod:`dice.likelihood._counts` defines the model (decoded rates, multinomial-NB counts, a weak Gaussian
prior); this module finds each cell's mode and the Fisher information there, vectorised over a block of
cells (cells x genes arithmetic in single precision, sums and k x k solves in double).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._start import start_point

__all__ = ["cholesky", "decoded_rates", "dense", "log_projection", "newton_modes", "solve_lower"]

#: A cell whose Newton decrement (the gain its next step would bring, by the information at its current point)
#: is below this many ``tol`` takes that step unchecked and stops (the step is then tiny and the quadratic
#: model exact enough); that information is its ``H``.
FREE_STEP_GAIN = 3.0
MAX_LOG1P = 12.0  # decoded log1p expression is capped here (1.6e5 per 1e4 counts: far beyond any real gene)


def dense(block) -> np.ndarray:
    return np.asarray(block.toarray() if sp.issparse(block) else block, dtype=np.float64)


def decoded_rates(u, mean, std, loadings, scale, floor, min_rate):
    """Decoded rates ``p`` (cells x genes) and their derivative with respect to ``V u`` (chain rule).

    Written in place, without ``np.where`` and ``np.maximum`` against a scalar (both several times slower
    than plain arithmetic on these arrays) and without fresh temporaries (their page faults cost as much
    as the arithmetic): twice as fast as the direct expression, with the same bits.
    """
    x = u.astype(loadings.dtype) @ loadings.T
    x *= std
    x += mean
    over = x > MAX_LOG1P  # beyond the cap the rate is constant
    capped = bool(over.any())
    if capped:
        np.minimum(x, MAX_LOG1P, out=x)
    size = np.abs(x)
    soft = x + size
    soft *= 0.5  # max(x, 0)
    size *= -1.0 / floor
    tail = np.exp(size, out=size)
    grow = np.log1p(tail)
    grow *= floor
    soft += grow  # smooth max(x, 0): keeps a gradient below zero
    grow = np.expm1(soft, out=grow)
    rate = grow + min_rate
    rate *= scale
    sigmoid = np.maximum(tail, x > 0)  # d soft / d x: 1 / (1 + tail) above 0, tail / (1 + tail) below
    tail += 1.0
    sigmoid /= tail
    slope = grow
    slope += 1.0
    slope *= scale * std
    slope *= sigmoid
    if capped:
        slope *= ~over
    return rate, slope


def log_projection(counts, depth, mean, std, loadings, max_value):
    """The log-normalised projection of raw counts, ``V^T min((log1p(1e4 c / n) - mean) / std, max_value)``:
    the count solve's starting point and the neighbourhoods of the local dispersions."""
    x = np.log1p(1e4 * counts / np.maximum(depth, 1.0))
    return np.minimum((x - mean) / std, max_value or np.inf) @ loadings


def cholesky(matrices: np.ndarray) -> np.ndarray:
    """Batched lower Cholesky factors; a matrix that is not numerically positive definite gets its
    eigenvalues floored first (a cell measured in too few genes to pin every direction)."""
    try:
        return np.linalg.cholesky(matrices)
    except np.linalg.LinAlgError:
        values, vectors = np.linalg.eigh(matrices)
        floor = 1e-10 * np.maximum(values[:, -1:], 1e-12)
        return np.linalg.cholesky((vectors * np.maximum(values, floor)[:, None, :]) @ np.swapaxes(vectors, 1, 2))


def solve_lower(lower: np.ndarray, rhs: np.ndarray, *, transpose: bool = False) -> np.ndarray:
    """``L x = b`` (or ``L^T x = b``) for a batch of lower-triangular ``L`` (cells x k x k); ``b`` is cells x k
    or cells x k x m. One batched triangular solve in torch, far cheaper than k numpy substitution steps over
    the cells; only the lower triangle of ``L`` is read, in double precision. Inside
    :func:`dice._threads.map_in_threads` torch runs at one thread, as the blocks' threads expect."""
    import torch

    def tensor(array):  # torch shares numpy's memory, but only of a writable array
        return torch.from_numpy(np.require(array, dtype=np.float64, requirements=("W",)))

    matrix = tensor(lower)
    vector = rhs.ndim == 2
    right = tensor(rhs[..., None] if vector else rhs)
    if transpose:
        out = torch.linalg.solve_triangular(matrix.mT, right, upper=True)
    else:
        out = torch.linalg.solve_triangular(matrix, right, upper=False)
    out = out.numpy()
    return out[..., 0] if vector else out


def _rows(values: tuple, rows: np.ndarray) -> tuple:
    """Each array of ``values`` at ``rows``: how the working arrays shrink to the cells still moving."""
    return tuple(v[rows] for v in values)


def newton_modes(counts, present, embedding, ref, n_iter, u0, tol=1e-3, information_at_mode=True):
    """Newton ascent of the penalised count log-likelihood for one block; returns the mode ``uhat`` and ``H``.

    Each iteration computes, for the cells still moving, the Fisher information at the current point and
    the Newton step with its decrement (the gain the quadratic model predicts). A cell whose decrement is
    below ``FREE_STEP_GAIN * tol`` takes that step unchecked (no line search, decode or new information:
    the step is tiny and the quadratic model exact enough) and stops, and the information just computed
    is its ``H``, at most a tiny step from the mode. The others step with a line search: a step that
    does not raise the objective is halved along the same direction, so no cell needs a second solve.
    The working arrays (counts, decoded rates, score parts) hold only the cells still moving, so no
    iteration gathers or scatters the cells that stopped. A frozen information (one solve, many cheap
    steps) was measured and rejected: it needed every iteration to converge and lost accuracy on
    5 %-depth cells. Cells still moving after ``n_iter`` steps get ``H`` at their last point.
    ``information_at_mode=False`` (the reference fit needs only the mode) returns ``None`` for ``H``.
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
    shifted = counts + inv_alpha
    prec = 1.0 / ref.prior_var
    floor, min_rate = ref.floor, ref.min_rate
    rho, ambient = 0.0, ref.ambient_profile(present)  # None without ambient RNA
    if ambient is not None:
        rho = float(ref.ambient_fraction)
        ambient = (ambient * rho).astype(dtype)  # each cell's ambient expected counts per unit depth

    # in place, as in decoded_rates: fresh cells x genes temporaries cost as much as the arithmetic
    def decode(u, cell_depth):
        """``(slope, total, lambda)``, plus ``lambda_cell`` with ambient RNA: ``lambda`` the expected counts,
        ``terms[-1]`` the cell's own part of them (the ambient part does not move with ``u``)."""
        rate, slope = decoded_rates(u, mean, std, loadings, scale, floor, min_rate)
        total = rate @ ones  # a row sum as a matrix-vector product: far cheaper than numpy's sum over rows
        rate *= (cell_depth if ambient is None else cell_depth * (1.0 - rho)) / total
        if ambient is None:
            return slope, total, rate
        return slope, total, rate + cell_depth * ambient, rate

    def objective(u, lam, data):
        cell_counts, cell_shifted = data[:2]
        nb = alpha * lam
        np.log1p(nb, out=nb)
        nb *= cell_shifted  # (c + 1 / alpha) log1p(alpha lam) -> lam as alpha -> 0
        value = np.log(lam)
        value *= cell_counts
        value -= nb
        return np.einsum("cg->c", value, dtype=np.float64) - 0.5 * np.sum(u * u * prec, axis=1)  # summed in double

    def score(u, terms, data):
        (slope, total, lam), own = terms[:3], terms[-1]
        cell_counts, cell_depth = data[0], data[2]
        weight = alpha * lam
        weight += 1.0
        weight *= lam
        np.divide(1.0, weight, out=weight)  # 1 / Var(c_g)
        a = slope * (cell_depth * (1.0 - rho) / total)  # d lambda_g / d (V u)_g
        m = (slope @ loadings) / total  # d lambda_g / du = a_g V_g - lambda_cell_g m
        resid = cell_counts - lam
        resid *= weight
        work = resid * a
        grad = work @ loadings
        np.multiply(resid, own, out=work)
        grad -= (work @ ones) * m
        return grad.astype(np.float64) - u * prec, (weight, a, m)

    def information(terms, parts):
        """The Fisher information's lower triangle, cells x k x k in double (the upper is 0): all that the
        Cholesky factor reads; :func:`_symmetric` fills in the rest of the matrices returned."""
        lam, (weight, a, m) = terms[-1], parts  # the cell's own expected counts
        wa = weight * a
        # the cells x genes x k^2 cost as one GEMM on the lower triangle only (a symmetric matrix), minus the
        # multinomial's rank-2 part, cross m^T + m cross^T - s m m^T, written as d m^T + m d^T; all in the
        # triangle, in single precision (as the GEMM's sums are), then placed in k x k and widened
        work = wa * a
        tri = work @ outer
        np.multiply(wa, lam, out=work)
        d = work @ loadings
        np.multiply(weight, lam, out=work)
        work *= lam
        d -= 0.5 * (work @ ones) * m
        tri -= np.take(d, tri_rows, axis=1) * np.take(m, tri_cols, axis=1)
        tri -= np.take(m, tri_rows, axis=1) * np.take(d, tri_cols, axis=1)
        lower = np.zeros((tri.shape[0], k * k))
        lower[:, tri_flat] = tri
        return lower.reshape(-1, k, k)

    tri_rows, tri_cols = np.tril_indices(k)
    outer = loadings[:, tri_rows] * loadings[:, tri_cols]  # genes x k (k + 1) / 2
    tri_flat = tri_rows * k + tri_cols  # the lower triangle's places in a flattened k x k matrix
    ones = np.ones((loadings.shape[0], 1), dtype=dtype)
    if u0 is None:  # the log-normalised projection, moved by the reference's start map (dice.likelihood._start)
        u0 = start_point(log_projection(counts, depth, mean, std, loadings, embedding.max_value), depth, ref)
    u_all = np.array(u0, dtype=np.float64)
    info_all = np.empty((n_cells, k, k)) if information_at_mode else None
    diagonal = np.arange(k)
    # the working arrays, for the cells still moving (``cells``, their rows in the block)
    cells, u = np.arange(n_cells), u_all.copy()
    data = (counts, shifted, depth)
    terms = decode(u, depth)
    current = objective(u, terms[2], data)
    grad, parts = score(u, terms, data)
    for _ in range(n_iter):
        info = information(terms, parts)
        likelihood_diagonal = info[:, diagonal, diagonal]
        info[:, diagonal, diagonal] += prec  # the prior's precision, in place
        lower = cholesky(info)
        half = solve_lower(lower, grad)
        step = solve_lower(lower, half, transpose=True)
        predicted = 0.5 * np.sum(half * half, axis=1)  # the Newton decrement: the gain still to come
        last = predicted <= FREE_STEP_GAIN * tol
        if last.any():  # a tiny step: taken unchecked, and this information is the one at the mode
            u_all[cells[last]] = u[last] + step[last]
            if information_at_mode:
                info[:, diagonal, diagonal] = likelihood_diagonal
                info_all[cells[last]] = info[last]
            going = np.flatnonzero(~last)
            if going.size == 0:
                return u_all, _symmetric(info_all)
            cells, u, current, step, grad = _rows((cells, u, current, step, grad), going)
            data, terms = _rows(data, going), _rows(terms, going)
        todo = np.arange(cells.size)  # the cells whose step is still being halved
        for _ in range(8):  # halve the step until the objective rises
            trial = u[todo] + step[todo]
            whole = todo.size == cells.size
            trial_data = data if whole else _rows(data, todo)
            trial_terms = decode(trial, trial_data[2])
            value = objective(trial, trial_terms[2], trial_data)
            ok = value >= current[todo] - 1e-9  # NaN counts as a failure
            done = todo[ok]
            u[done], current[done] = trial[ok], value[ok]
            if whole and ok.all():
                terms = trial_terms
            else:
                for term, new in zip(terms, trial_terms, strict=True):
                    term[done] = new[ok]
            todo = todo[~ok]
            if todo.size == 0:
                break
            step[todo] *= 0.5
        grad, parts = score(u, terms, data)
        u_all[cells] = u
    if information_at_mode:  # cells still moving after n_iter steps: the information at their last point
        info_all[cells] = information(terms, parts)
    return u_all, _symmetric(info_all)


def _symmetric(info):
    """The full information (plus ``1e-8 I``) from its lower triangle (the upper one 0)."""
    if info is None:
        return None
    full = info + np.swapaxes(info, 1, 2)
    diagonal = np.arange(info.shape[1])
    full[:, diagonal, diagonal] = info[:, diagonal, diagonal] + 1e-8
    return full
