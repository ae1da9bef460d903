"""The variants screen (benchmarks/prior_variants.py): anisotropic posterior mean and report (the loadings refit
is the package's, tested in tests/models/test_loadings.py)."""

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
