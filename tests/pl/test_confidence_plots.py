"""Confidence plots return matplotlib objects and write nothing unless asked."""

from __future__ import annotations

import os

import anndata as ad
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

import dice
from dice._validation import DiceInputError


@pytest.fixture
def adata():
    rng = np.random.default_rng(0)
    n, k, s = 60, 4, 50
    a = ad.AnnData(np.zeros((n, 3), dtype=np.float32))
    a.obsm["X_dice_pca"] = rng.normal(size=(n, k))
    a.obsm["X_dice"] = a.obsm["X_dice_pca"] * 0.9
    a.obsm["X_dice_samples"] = a.obsm["X_dice"][:, None, :] + 0.1 * rng.normal(size=(n, s, k))
    a.obs["dice_label_confidence"] = rng.uniform(size=n)
    return a


def test_plots_return_axes_and_write_nothing(adata, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ax = dice.pl.posterior_samples(adata, 3)
    assert isinstance(ax, plt.Axes)
    assert len(ax.collections) == 3  # reference, samples, observed point
    assert ax.collections[1].get_offsets().shape == (50, 2)
    ax = dice.pl.confidence(adata, "dice_label_confidence", basis="pca")
    assert isinstance(ax, plt.Axes)
    conf = adata.obs["dice_label_confidence"].to_numpy()
    ax = dice.pl.reliability_diagram(conf, conf > 0.5)
    assert "ECE" in ax.get_title()
    assert os.listdir(tmp_path) == []
    plt.close("all")


def test_save_writes_file(adata, tmp_path):
    path = tmp_path / "samples.png"
    dice.pl.posterior_samples(adata, adata.obs_names[0], save=str(path))
    assert path.exists() and path.stat().st_size > 0
    plt.close("all")


def test_missing_keys_raise(adata):
    with pytest.raises(DiceInputError, match="nope"):
        dice.pl.confidence(adata, "nope")
    del adata.obsm["X_dice_samples"]
    with pytest.raises(DiceInputError, match="store_samples"):
        dice.pl.posterior_samples(adata, 0)
