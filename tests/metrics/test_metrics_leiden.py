from __future__ import annotations

import numpy as np
import pytest
import scanpy as sc

from dice.metrics import DEFAULT_RESOLUTIONS, LeidenSweepResult, leiden_sweep


@pytest.fixture(scope="module")
def sweep(blobs) -> LeidenSweepResult:
    x, labels, _ = blobs
    return leiden_sweep(x, labels)


def test_default_grid():
    grid = np.asarray(DEFAULT_RESOLUTIONS)
    assert grid.size == 15
    assert grid[0] == pytest.approx(0.05) and grid[-1] == pytest.approx(2.0)
    assert np.all(np.diff(grid) > 0)


def test_three_blobs_recovered_by_every_rule(sweep):
    assert sweep.n_classes == 3
    for rule in ("oracle", "count", "stable"):
        choice = sweep.choice(rule)
        assert choice["ari"] == pytest.approx(1.0, abs=1e-9), rule
        assert choice["nmi"] == pytest.approx(1.0, abs=1e-9), rule
        assert choice["n_clusters"] == 3, rule
    assert sweep.oracle_index == int(np.argmax(sweep.ari))


def test_sweep_table_consistent(sweep):
    frame = sweep.to_frame()
    assert list(frame.columns) == [
        "resolution",
        "n_clusters",
        "ari",
        "nmi",
        "v_measure",
        "seed_agreement",
        "neighbor_agreement",
        "stability",
    ]
    assert len(frame) == 15
    np.testing.assert_allclose(frame["nmi"], frame["v_measure"], atol=1e-12)
    assert np.all((frame["stability"] >= -0.5) & (frame["stability"] <= 1.0))
    assert sweep.clusterings.shape == (15, 300)
    # the stable choice maximises stability among resolutions with >= 2 clusters
    ok = sweep.n_clusters >= 2
    assert sweep.stability[sweep.stable_index] == pytest.approx(sweep.stability[ok].max())
    # the count choice minimises the distance to the class count
    assert abs(sweep.n_clusters[sweep.count_index] - 3) == np.abs(sweep.n_clusters - 3).min()
    # more resolution never gives far fewer clusters
    assert sweep.n_clusters[-1] >= sweep.n_clusters[0]


def test_summary_keys(sweep):
    summary = sweep.summary()
    expected = {
        f"leiden_{rule}_{field}"
        for rule in ("oracle", "count", "stable")
        for field in ("ari", "nmi", "v_measure", "resolution", "n_clusters")
    }
    assert set(summary) == expected
    assert all(isinstance(v, float) for v in summary.values())


def test_one_graph_for_the_whole_grid(blobs, monkeypatch):
    calls = []
    original = sc.pp.neighbors

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(sc.pp, "neighbors", spy)
    x, labels, _ = blobs
    result = leiden_sweep(x, labels, resolutions=[0.1, 0.5, 1.0], seed_check=False)
    assert len(calls) == 1
    assert calls[0]["n_neighbors"] == 15
    assert np.all(np.isnan(result.seed_agreement))
    assert np.all(np.isfinite(result.stability))


def test_leiden_sweep_errors(blobs):
    x, labels, _ = blobs
    with pytest.raises(ValueError, match="positive"):
        leiden_sweep(x, labels, resolutions=[0.0, 1.0])
    with pytest.raises(ValueError, match="at least 2"):
        leiden_sweep(x, np.zeros(len(x)))
    with pytest.raises(ValueError, match="Unknown rule"):
        leiden_sweep(x, labels, resolutions=[0.5], seed_check=False).choice("best")
