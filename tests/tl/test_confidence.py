"""Cluster confidence and credible sets from posterior samples (hand-built samples, no training)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import dice
from dice._validation import DiceInputError
from dice.metrics import expected_calibration_error, reliability_table
from dice.tl._confidence import credible_sets, set_strings


def _two_clusters(n_per: int = 40, n_samples: int = 20, spread: float = 0.3, midway: int = 0, seed: int = 0):
    """Posterior means in two clusters 10 apart (2-D) plus `midway` cells whose samples straddle both."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [10.0, 0.0]])
    labels = np.repeat([0, 1], n_per)
    means = centres[labels] + rng.normal(scale=1.0, size=(2 * n_per, 2))
    samples = means[:, None, :] + rng.normal(scale=spread, size=(2 * n_per, n_samples, 2))
    if midway:
        half = n_samples // 2
        mid_samples = np.concatenate(
            [
                centres[0] + rng.normal(size=(midway, half, 2)),
                centres[1] + rng.normal(size=(midway, half, 2)),
            ],
            axis=1,
        )
        samples = np.concatenate([samples, mid_samples])
        means = np.concatenate([means, mid_samples.mean(axis=1)])
        labels = np.concatenate([labels, np.zeros(midway, dtype=int)])
    adata = ad.AnnData(np.zeros((len(means), 3), dtype=np.float32))
    adata.obsm["X_dice"] = means
    adata.obsm["X_dice_samples"] = samples
    adata.obs["leiden"] = pd.Categorical(labels.astype(str))
    return adata


def test_confidence_is_one_for_separated_clusters_and_lower_midway():
    adata = _two_clusters(midway=5)
    dice.tl.cluster_confidence(adata, cluster_key="leiden", alpha=0.1)
    conf = adata.obs["dice_cluster_confidence"].to_numpy()
    assert np.all(conf[:80] == 1.0)
    assert np.all(conf[80:] <= 0.7)
    assert np.all(adata.obs["dice_cluster_set_size"].to_numpy()[:80] == 1)
    assert set(adata.obs["dice_cluster_set"].to_numpy()[80:]) <= {"0|1", "1|0"}
    assert np.allclose(adata.obsm["dice_cluster_probabilities"].sum(axis=1), 1.0)
    assert adata.uns["dice_cluster_confidence"]["params"]["alpha"] == 0.1


def test_copy_returns_new_and_leaves_input():
    adata = _two_clusters()
    out = dice.tl.cluster_confidence(adata, copy=True)
    assert out is not None and "dice_cluster_confidence" in out.obs
    assert "dice_cluster_confidence" not in adata.obs
    assert dice.tl.cluster_confidence(adata) is None


def test_credible_sets_hand_built():
    p = np.array(
        [
            [0.95, 0.05, 0.0],  # one label already holds 90 %
            [0.5, 0.45, 0.05],  # needs two
            [0.4, 0.3, 0.3],  # needs all three
            [0.0, 0.0, 1.0],
        ]
    )
    mask = credible_sets(p, alpha=0.1)
    assert mask.sum(axis=1).tolist() == [1, 2, 3, 1]
    assert mask[3].tolist() == [False, False, True]
    names = set_strings(mask, p, ["a", "b", "c"])
    assert names.tolist() == ["a", "a|b", "a|b|c", "c"]
    # coverage logic: with alpha = 0.6 the top label suffices everywhere
    assert credible_sets(p, alpha=0.6).sum(axis=1).tolist() == [1, 1, 1, 1]
    with pytest.raises(DiceInputError):
        credible_sets(p, alpha=1.0)


def test_cluster_sets_from_sample_counts():
    """A cell with 14/20 samples in its own cluster and 6/20 in the other: confidence 0.7, set of both."""
    adata = _two_clusters(n_per=30, n_samples=20, spread=0.1)
    samples = adata.obsm["X_dice_samples"].copy()
    samples[0, :6] = np.array([10.0, 0.0])  # 6 samples of cell 0 (cluster 0) sit in cluster 1
    adata.obsm["X_dice_samples"] = samples
    dice.tl.cluster_confidence(adata, alpha=0.1)
    assert adata.obs["dice_cluster_confidence"].iloc[0] == pytest.approx(0.7)
    assert adata.obs["dice_cluster_set"].iloc[0] == "0|1"
    dice.tl.cluster_confidence(adata, alpha=0.35)
    assert adata.obs["dice_cluster_set"].iloc[0] == "0"


def test_missing_samples_and_cluster_key_leave_adata_untouched():
    adata = _two_clusters()
    del adata.obsm["X_dice_samples"]
    before = (set(adata.obs), set(adata.obsm), set(adata.uns))
    with pytest.raises(DiceInputError, match="store_samples=True"):
        dice.tl.cluster_confidence(adata)
    adata2 = _two_clusters()
    with pytest.raises(DiceInputError, match="leiden"):
        dice.tl.cluster_confidence(adata2, cluster_key="louvain")
    assert (set(adata.obs), set(adata.obsm), set(adata.uns)) == before
    assert "dice_cluster_confidence" not in adata2.obs


def test_ece_and_reliability_table():
    conf = np.array([0.95] * 10 + [0.55] * 10)
    correct = np.array([1] * 9 + [0] + [1] * 5 + [0] * 5)
    table = reliability_table(conf, correct, n_bins=10)
    assert table["count"].sum() == 20
    assert table.loc[9, "accuracy"] == pytest.approx(0.9)
    assert expected_calibration_error(conf, correct) == pytest.approx(0.5 * 0.05 + 0.5 * 0.05)
    assert expected_calibration_error(np.ones(4), np.ones(4)) == 0.0
    with pytest.raises(ValueError):
        expected_calibration_error([1.5], [1])
