"""Dask-backed denoise on the local schedulers: every row chunk a task, the in-memory numbers exactly."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

import dice
from dice._validation import DiceInputError
from dice.tl import PosteriorSettings, TrainSettings
from helpers import assert_unchanged, make_clusters, snapshot

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")

TRAINING = TrainSettings(n_updates=30, batch_size=128, hidden_dim=16, n_blocks=1)


@pytest.fixture(scope="module")
def model(torch_threads):
    reference = make_clusters(300, seed=11)
    return dice.tl.train_prior(reference, n_comps=3, settings=TRAINING, seed=0, progress=False, device="cpu")


def _same(result, expected, keys=("X_dice", "X_dice_pca")) -> None:
    for key in keys:
        assert isinstance(result.obsm[key], np.ndarray), key
        np.testing.assert_array_equal(result.obsm[key], expected.obsm[key], err_msg=key)
    for key in ("dice_uncertainty", "dice_noise_sd"):
        np.testing.assert_array_equal(result.obs[key], expected.obs[key], err_msg=key)


@pytest.mark.parametrize("scheduler", ["threads", "synchronous"])
@pytest.mark.parametrize(
    "settings",
    [PosteriorSettings(n_samples=2), PosteriorSettings(n_samples=3, uncertainty="samples", noise_var="cell")],
    ids=["jacobian-dataset-noise", "samples-cell-noise"],
)
def test_chunks_give_the_in_memory_result(model, scheduler, settings):
    query = make_clusters(2300, seed=12)
    dense = query.copy()
    dice.tl.denoise(dense, model, settings=settings, seed=3, progress=False, store_samples=True)
    for x, chunks in ((np.asarray(query.X), (500, 30)), (sp.csr_matrix(query.X), (1100, 60))):
        lazy = query.copy()
        lazy.X = da.from_array(x, chunks=chunks, asarray=False)
        with dask.config.set(scheduler=scheduler):
            dice.tl.denoise(lazy, model, settings=settings, seed=3, progress=False, store_samples=True)
        _same(lazy, dense, keys=("X_dice", "X_dice_pca", "X_dice_samples"))
        record = lazy.uns["dice"]["dask"]
        assert record["n_chunks"] == 3 and record["chunk_cells"] == 1024  # rows rounded to 1,024 cells
        assert lazy.uns["dice"]["noise_var_mean"] == dense.uns["dice"]["noise_var_mean"]


def test_a_dask_counts_layer_gives_the_in_memory_result(torch_threads):
    rng = np.random.default_rng(0)
    rates = np.exp(rng.normal(0.0, 1.0, 40) + rng.normal(0.0, 0.5, (2, 40))[rng.integers(0, 2, 2400)])
    counts = rng.poisson(rates * 20).astype(np.float32)
    full = ad.AnnData(np.log1p(1e4 * counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)).astype(np.float32))
    full.var_names = [f"g{i}" for i in range(40)]
    full.layers["counts"] = sp.csr_matrix(counts)
    reference, query = full[:400].copy(), full[400:].copy()
    model = dice.tl.train_prior(reference, n_comps=3, settings=TRAINING, seed=0, progress=False, device="cpu")
    dense = query.copy()
    dice.tl.denoise(dense, model, settings=PosteriorSettings(n_samples=2), seed=1, progress=False)
    assert dense.uns["dice"]["likelihood"] == "counts"
    lazy = query.copy()
    lazy.layers["counts"] = da.from_array(query.layers["counts"], chunks=(700, 40), asarray=False)
    dice.tl.denoise(lazy, model, settings=PosteriorSettings(n_samples=2), seed=1, progress=False)
    _same(lazy, dense)
    assert lazy.uns["dice"]["dask"]["n_chunks"] == 2


def test_invalid_values_raise_before_any_posterior_and_leave_the_data_untouched(model):
    query = make_clusters(1500, seed=12)
    x = np.asarray(query.X).copy()
    x[1200, 3] = np.nan  # in the second chunk
    query.X = da.from_array(x, chunks=(1024, 60))
    before = snapshot(query)
    with pytest.raises(DiceInputError, match="1 NaN or infinite values"):
        dice.tl.denoise(query, model, progress=False)
    assert_unchanged(query, before)  # X (a dask array) reads back the same, and nothing was written
