"""The variants screen (benchmarks/prior_variants.py): anisotropic posterior mean, report, loadings refit."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
variants = pytest.importorskip("prior_variants")


def test_anisotropic_mean_is_the_exact_posterior_mean_under_a_gaussian_prior(monkeypatch):
    # prior N(0, s2 I): its Tweedie mean at level tau is z s2 / (s2 + tau^2), so the split is exact
    s2, k, n = 12.0, 6, 200
    rng = np.random.default_rng(0)
    monkeypatch.setattr(variants, "tweedie", lambda model, z, sd: z * s2 / (s2 + sd[:, None] ** 2))
    roots = rng.normal(size=(n, k, k)) * np.geomspace(0.3, 3.0, k)  # eigenvalues spanning about 100x
    cov = roots @ np.swapaxes(roots, 1, 2) + 0.05 * np.eye(k)
    y = rng.normal(scale=4.0, size=(n, k))
    exact = np.linalg.solve(np.eye(k) / s2 + np.linalg.inv(cov), np.linalg.solve(cov, y[..., None]))[..., 0]
    got = variants.anisotropic_mean(None, y, cov, c=0.5)
    assert np.max(np.abs(got - exact)) < 1e-3 * np.max(np.abs(exact))
    isotropic = y * s2 / (s2 + np.trace(cov, axis1=1, axis2=2)[:, None] / k)  # what the default approximates
    assert np.max(np.abs(isotropic - exact)) > 0.1 * np.max(np.abs(exact))


def test_report_pairs_each_variant_with_the_default_of_the_same_seed():
    rows = []
    for seed, base, variant in [(0, 0.50, 0.55), (1, 0.60, 0.61), (2, 0.40, 0.43)]:
        for name, ari in (("base", base), ("aniso0.5", variant)):
            rows.append({"task": "worm", "seed": seed, "f": 0.2, "variant": name, "ari": ari, "fidelity": 0.1})
    table = variants.report(pd.DataFrame(rows))
    line = next(row for row in table.splitlines() if "aniso0.5" in row)
    diffs = np.array([0.05, 0.01, 0.03])
    assert f"{diffs.mean():+.3f} ± {diffs.std(ddof=1):.3f}" in line
    assert "| 3 | 0.500 | 0.530 |" in line


def test_count_loadings_leave_the_base_model_alone_and_stay_orthonormal():
    from types import SimpleNamespace

    import scipy.sparse as sp

    from dice.likelihood._counts import fit_count_reference
    from dice.pp._linear import LinearEmbedding

    rng = np.random.default_rng(0)
    profiles = rng.dirichlet(np.full(40, 0.5), size=3)
    counts = np.vstack([rng.multinomial(300, profiles[i % 3]) for i in range(150)]).astype(np.float64)
    logged = np.log1p(1e4 * counts / counts.sum(axis=1, keepdims=True))
    embedding = LinearEmbedding.fit(logged, [f"g{i}" for i in range(40)], n_comps=3)
    base = SimpleNamespace(embedding=embedding, count_reference=fit_count_reference(counts, embedding))
    before = embedding.loadings.copy()
    refit = variants.count_loadings(base, sp.csr_matrix(counts), n_steps=20)
    np.testing.assert_array_equal(embedding.loadings, before)  # the optimiser's parameters are copies
    np.testing.assert_allclose(refit.loadings.T @ refit.loadings, np.eye(3), atol=1e-5)
    assert not np.allclose(refit.loadings, before, atol=1e-3)  # it did move
    assert np.all(np.sum(refit.loadings * before, axis=0) > 0)  # each axis keeps its orientation
