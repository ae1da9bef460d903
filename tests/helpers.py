"""Test helpers shared across folders (importable because pyproject puts tests/ on pythonpath)."""

from __future__ import annotations

from types import SimpleNamespace

import anndata as ad
import numpy as np


def toy_embedding(rng: np.random.Generator, n_genes: int, k: int) -> SimpleNamespace:
    """An embedding-like object for the count likelihood's tests (it reads only these fields): orthonormal
    loadings, then per-gene means and sds drawn from ``rng`` in that order."""
    loadings, _ = np.linalg.qr(rng.normal(size=(n_genes, k)))
    return SimpleNamespace(
        mean=rng.uniform(0.3, 2.5, n_genes),
        std=rng.uniform(0.3, 0.8, n_genes),
        loadings=loadings,
        max_value=10.0,
        singular_values=np.full(k, 10.0),
        n_genes=n_genes,
        n_comps=k,
    )


def make_clusters(
    n_cells: int,
    *,
    n_genes: int = 60,
    n_latent: int = 4,
    noise: float = 0.5,
    seed: int = 0,
    loadings_seed: int = 123,
    centres: np.ndarray | None = None,
) -> ad.AnnData:
    """Two (or more) Gaussian clusters in a low-rank factor model, log-normalised-like values."""
    loadings = np.random.default_rng(loadings_seed).normal(size=(n_genes, n_latent))
    rng = np.random.default_rng(seed)
    if centres is None:
        centres = np.stack([np.zeros(n_latent), np.full(n_latent, 2.0)])
    labels = rng.integers(0, len(centres), n_cells)
    latents = centres[labels] + 0.5 * rng.normal(size=(n_cells, n_latent))
    # offset so that the values are non-negative, like log-normalised expression (negative values are refused)
    x = np.maximum(latents @ loadings.T + noise * rng.normal(size=(n_cells, n_genes)) + 25.0, 0.0)
    adata = ad.AnnData(x.astype(np.float32))
    adata.var_names = [f"g{i}" for i in range(n_genes)]
    adata.obs_names = [f"c{seed}_{i}" for i in range(n_cells)]
    adata.obs["label"] = [f"type{label}" for label in labels]
    adata.obs["label"] = adata.obs["label"].astype("category")
    adata.obsm["X_true"] = latents
    return adata


def snapshot(adata: ad.AnnData) -> dict:
    """Everything a failed call must leave unchanged."""
    x = adata.X.toarray() if hasattr(adata.X, "toarray") else np.array(adata.X, copy=True)
    return {
        "X": x,
        "obs": adata.obs.copy(),
        "var": adata.var.copy(),
        "obsm": set(adata.obsm),
        "uns": set(adata.uns),
        "shape": adata.shape,
    }


def assert_unchanged(adata: ad.AnnData, before: dict) -> None:
    after = snapshot(adata)
    assert after["shape"] == before["shape"]
    np.testing.assert_array_equal(after["X"], before["X"])
    assert after["obs"].equals(before["obs"])
    assert after["var"].equals(before["var"])
    assert after["obsm"] == before["obsm"]
    assert after["uns"] == before["uns"]
