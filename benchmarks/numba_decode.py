"""Would a compiled kernel make the count solve cheaper? Numba's fused decode + objective against numpy's.

The count solve's cells x genes arithmetic (``dice.likelihood._newton``) is numpy: BLAS for the products and
numpy's SIMD loops for the exponentials and logarithms, one memory pass per operation. A kernel that fuses the
decode and the objective into one pass per cell saves the passes but computes each exponential and logarithm
with a scalar call unless numba finds Intel's SVML. This times both on one synthetic 512-cell block (the
solve's block size), 500 genes, k = 25, single precision, one thread, after checking that they agree.

Run::

    .venv/bin/python benchmarks/numba_decode.py
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import time  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402

from dice.likelihood._newton import decoded_rates  # noqa: E402


@numba.njit(fastmath=True)
def _fused(x, mean, std, scale, alpha, counts, floor, min_rate, rate, slope, objective):  # pragma: no cover
    """Rates, their slope and each cell's NB objective from ``x = u V^T``, one pass per cell (as decoded_rates)."""
    n_cells, n_genes = counts.shape
    for c in range(n_cells):
        total = np.float32(0.0)
        for g in range(n_genes):
            value = min(mean[g] + std[g] * x[c, g], np.float32(12.0))
            size = abs(value)
            tail = np.exp(-size / floor)
            grow = np.expm1(0.5 * (value + size) + floor * np.log1p(tail))
            sigmoid = (1.0 if value > 0 else tail) / (1.0 + tail)
            slope[c, g] = (grow + 1.0) * scale[g] * std[g] * sigmoid
            rate[c, g] = (grow + min_rate) * scale[g]
            total += rate[c, g]
        depth = np.float32(0.0)
        for g in range(n_genes):
            depth += counts[c, g]
        out = 0.0
        for g in range(n_genes):
            lam = rate[c, g] * depth / total
            rate[c, g] = lam
            out += counts[c, g] * np.log(lam) - (counts[c, g] + 1.0 / alpha[g]) * np.log1p(alpha[g] * lam)
        objective[c] = out


def main() -> None:
    rng = np.random.default_rng(0)
    n_cells, n_genes, k = 512, 500, 25
    loadings = (rng.normal(size=(n_genes, k)) / np.sqrt(n_genes)).astype(np.float32)
    mean = (0.5 * rng.normal(size=n_genes)).astype(np.float32)
    std = (0.5 + rng.random(n_genes)).astype(np.float32)
    scale = np.exp(rng.normal(size=n_genes) - 6).astype(np.float32)
    alpha = (0.1 + rng.random(n_genes)).astype(np.float32)
    u = (2.0 * rng.normal(size=(n_cells, k))).astype(np.float32)
    counts = rng.poisson(1.0, size=(n_cells, n_genes)).astype(np.float32)
    floor, min_rate = np.float32(0.3), np.float32(1e-3)
    ones = np.ones((n_genes, 1), np.float32)
    rate, slope, objective = (
        np.empty((n_cells, n_genes), np.float32),
        np.empty((n_cells, n_genes), np.float32),
        np.empty(n_cells),
    )

    def with_numpy():  # as newton_modes' decode and objective
        lam, _ = decoded_rates(u, mean, std, loadings, scale, floor, min_rate)
        lam *= counts.sum(axis=1, keepdims=True) / (lam @ ones)
        nb = alpha * lam
        np.log1p(nb, out=nb)
        nb *= counts + 1 / alpha
        value = np.log(lam)
        value *= counts
        value -= nb
        return np.einsum("cg->c", value, dtype=np.float64)

    def with_numba():  # the product by BLAS, the rest fused
        _fused(u @ loadings.T, mean, std, scale, alpha, counts, floor, min_rate, rate, slope, objective)
        return objective

    expected, got = with_numpy(), with_numba().copy()
    print(f"objective: largest relative difference {np.max(np.abs(got - expected) / np.abs(expected)):.1e}")
    for name, run in (("numpy", with_numpy), ("numba", with_numba)):
        rounds = []
        for _ in range(7):
            started = time.perf_counter()
            for _ in range(20):
                run()
            rounds.append((time.perf_counter() - started) / 20 * 1e3)
        print(f"{name}: {np.median(rounds):.2f} ms per block (min {min(rounds):.2f}, max {max(rounds):.2f}, 7 rounds)")
    print(f"numba {numba.__version__}, SVML: {numba.config.USING_SVML}")


if __name__ == "__main__":
    main()
