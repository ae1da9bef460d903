"""The documentation's benchmark figures render from the committed records (no training, a few seconds).

``benchmarks/plot_rho.py`` (rho sweep, from ``results/synthetic_uncertainty_{spread,e2}.csv``) and the plotting step of
``benchmarks/figures_cbmc.py`` (reliability diagram, PCA-vs-DICE UMAPs, from ``results/figures_cbmc.csv``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
pytest.importorskip("matplotlib")
plot_rho = pytest.importorskip("plot_rho")
figures_cbmc = pytest.importorskip("figures_cbmc")


def _check_png(path: Path, min_width: int = 800) -> None:
    import matplotlib.image

    assert path.exists() and path.stat().st_size > 20_000
    image = matplotlib.image.imread(path)
    assert image.shape[1] >= min_width and image.shape[0] >= 300
    assert image[..., :3].std() > 0.05  # something was drawn, not a blank canvas


def test_rho_sweep_figure(tmp_path):
    spread, e2 = plot_rho.read_records()
    assert len(spread) == 24 and set(spread["sampler"]) == {"direct", "gibbs"}
    assert set(e2["experiment"]) == {"e2_novel", "e2_single"}
    assert spread["sd_ratio"].between(0.5, 1.5).all()
    _check_png(plot_rho.main(out=tmp_path / "rho_sweep.png"))


def test_cbmc_figures(tmp_path):
    records = pd.read_csv(figures_cbmc.RECORDS)
    assert sorted(records["f"].unique()) == [0.05, 1.0]
    assert records["dice_confidence"].between(0, 1).all() and records["pca_confidence"].between(0, 1).all()
    reliability, umaps = figures_cbmc.main(out_dir=tmp_path)
    _check_png(reliability)
    _check_png(umaps)


def test_reliability_bins_match_the_package_ece():
    dice = pytest.importorskip("dice")
    rng = np.random.default_rng(0)
    confidence = np.r_[rng.uniform(0, 1, 500), 0.0, 0.1, 1.0]  # bin edges included
    correct = rng.uniform(size=confidence.size) < confidence
    table = figures_cbmc.reliability(confidence, correct)
    assert table["count"].sum() == confidence.size
    expected = dice.metrics.reliability_table(confidence, correct)
    assert np.array_equal(table["count"].to_numpy(), expected["count"].to_numpy())
    assert figures_cbmc.ece(table) == pytest.approx(dice.metrics.expected_calibration_error(confidence, correct))
