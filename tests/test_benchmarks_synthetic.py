"""Smoke tests of the synthetic-study benchmark functions (tiny sizes; the real runs are in benchmarks/)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.benchmark

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

synthetic = pytest.importorskip("synthetic")
uncertainty_rho = pytest.importorskip("uncertainty_rho")

TINY = {"n_reference": 80, "n_query": 40, "n_genes": 40, "n_steps": 5}


def test_run_seed_rows_and_markdown(tmp_path: Path) -> None:
    synthetic.set_threads(1)
    records = synthetic.run_seed(0, ["1"], sizes=TINY, paper_iters=1, heavy_rhos=(20.0,), verbose=False)
    frame = pd.DataFrame(records)
    assert list(frame["method"]) == list(synthetic.METHOD_ORDER)
    for column in ("silhouette", "clisi", "mse", "seconds", "mse_to_bayes"):
        assert np.isfinite(frame[column]).all()
    clean = frame.set_index("method").loc["Clean latents"]
    assert clean["mse"] == 0.0
    assert frame.set_index("method").loc["Bayes posterior mean", "posterior"] == "exact"
    text = synthetic.results_markdown(frame)
    assert "Side by side" in text and "0.25 → 0.37" in text


def test_bayes_posterior_moment_matched_for_setup_3() -> None:
    import dice

    ref, query = dice.datasets.synthetic("3", n_reference=60, n_query=10, n_genes=30, seed=1)
    model = synthetic.train(ref, seed=1, n_updates=5)
    mean, cov, kind = synthetic.bayes_posterior(query, model)
    assert kind == "moment-matched"
    assert mean.shape == (10, 15) and cov.shape == (10, 15, 15)


def test_region_coverage_is_nominal_for_exact_gaussian_samples() -> None:
    rng = np.random.default_rng(0)
    n_cells, n_samples, k = 2000, 60, 3
    centre = rng.normal(size=(n_cells, k))
    samples = centre[:, None] + rng.normal(size=(n_cells, n_samples, k))
    truth = centre + rng.normal(size=(n_cells, k))
    coverage = uncertainty_rho.region_coverage(samples, truth, (0.5, 0.9))
    assert abs(coverage[0.5] - 0.5) < 0.05
    assert abs(coverage[0.9] - 0.9) < 0.04
    too_narrow = centre[:, None] + 0.5 * rng.normal(size=(n_cells, n_samples, k))
    assert uncertainty_rho.region_coverage(too_narrow, truth, (0.9,))[0.9] < 0.6


def test_cluster_assignment_threshold() -> None:
    clusters = {
        "names": ["a", "b"],
        "centres": np.array([[0.0, 0.0], [10.0, 0.0]]),
        "precision": np.eye(2),
        "threshold": 4.0,
    }
    points = np.array([[0.5, 0.0], [9.0, 1.0], [5.0, 0.0]])
    assert list(uncertainty_rho.assign(points, clusters)) == ["a", "b", "none"]
    assert uncertainty_rho.assign(points[None], clusters).shape == (1, 3)
