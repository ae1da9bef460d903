"""The loadings refitted to the reference's counts (dice.models._loadings) and TrainSettings.count_loadings_width."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

import dice
from dice._validation import DiceInputError
from dice.models._loadings import fit_rows, refit_loadings
from dice.pp._linear import LinearEmbedding

N_GENES = 60


def _simulate(n_cells: int, seed: int, depth: float):
    """Poisson counts of a rank-3 log-rate model (programme fixed by seed 0) and its factors (3 x genes)."""
    programme = np.random.default_rng(0)
    base = programme.normal(0.0, 1.0, N_GENES)
    factors = programme.normal(0.0, 0.5, (3, N_GENES))
    rng = np.random.default_rng(seed)
    log_rate = base + rng.normal(0.0, 1.0, (n_cells, 3)) @ factors
    p = np.exp(log_rate)
    p /= p.sum(axis=1, keepdims=True)
    n = rng.lognormal(np.log(depth), 0.3, n_cells)[:, None]
    return rng.poisson(n * p).astype(np.float64), factors


def _lognorm(counts):
    return np.log1p(1e4 * counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0))


def _embedding(counts, k=3):
    return LinearEmbedding.fit(_lognorm(counts), [f"g{i}" for i in range(counts.shape[1])], n_comps=k)


def _largest_angle(a, b) -> float:
    """Largest principal angle (degrees) between the column spaces of a and b."""
    qa, _ = np.linalg.qr(a)
    qb, _ = np.linalg.qr(b)
    cosines = np.linalg.svd(qa.T @ qb, compute_uv=False)
    return float(np.degrees(np.arccos(np.clip(cosines.min(), -1.0, 1.0))))


@pytest.mark.parametrize("seed", [1, 2])
def test_refit_moves_the_loadings_towards_the_true_subspace(seed):
    # ~100 counts per cell: PCA of log-normalised counts sees the factors through depth noise. The decoder is
    # mean + std * V u on the log1p scale, so the true V spans diag(1 / std) F^T.
    counts, factors = _simulate(800, seed, depth=100.0)
    embedding = _embedding(counts)
    truth = (factors / embedding.std).T
    refit, _ = refit_loadings(embedding, sp.csr_matrix(counts), width=1.5)
    before, after = _largest_angle(embedding.loadings, truth), _largest_angle(refit.loadings, truth)
    assert after < before - 4.0, (before, after)  # measured: 19 -> 13 and 28 -> 17 degrees


def test_refit_leaves_the_embedding_alone_is_orthonormal_and_raises_the_likelihood():
    counts, _ = _simulate(300, 3, depth=60.0)
    embedding = _embedding(counts)
    before = embedding.loadings.copy()
    refit, info = refit_loadings(embedding, sp.csr_matrix(counts), width=2.0, n_steps=60)
    np.testing.assert_array_equal(embedding.loadings, before)  # the optimiser's parameters are copies
    np.testing.assert_allclose(refit.loadings.T @ refit.loadings, np.eye(3), atol=1e-5)
    assert np.all(np.sum(refit.loadings * before, axis=0) > 0)  # each axis keeps its orientation
    assert _largest_angle(refit.loadings, before) > 1.0  # it did move
    assert info["objective_after"] < info["objective_before"]  # penalised negative log-likelihood per cell
    assert info == {**info, "kind": "counts", "width": 2.0, "n_cells": 300, "n_steps": 60}
    np.testing.assert_array_equal(refit.mean, embedding.mean)  # only V changes


def test_a_narrow_penalty_keeps_pca_subspace_and_no_penalty_moves_furthest():
    counts, _ = _simulate(300, 4, depth=60.0)
    embedding = _embedding(counts)
    angles = {
        w: _largest_angle(refit_loadings(embedding, counts, width=w, n_steps=100)[0].loadings, embedding.loadings)
        for w in (1e-3, 1.5, None)
    }
    assert angles[1e-3] < 0.5 < angles[1.5] < angles[None], angles


def test_large_references_are_subsampled_reproducibly():
    rows = fit_rows(10_000, 500, seed=3, max_entries=500 * 1200)
    assert rows.size == 1200 and np.all(np.diff(rows) > 0)
    np.testing.assert_array_equal(rows, fit_rows(10_000, 500, seed=3, max_entries=500 * 1200))
    assert not np.array_equal(rows, fit_rows(10_000, 500, seed=4, max_entries=500 * 1200))
    np.testing.assert_array_equal(fit_rows(900, 500, seed=3, max_entries=500 * 1200), np.arange(900))
    counts, _ = _simulate(400, 5, depth=60.0)
    embedding = _embedding(counts)
    one, info = refit_loadings(embedding, counts, width=1.5, n_steps=20, max_entries=N_GENES * 150, seed=1)
    two, _ = refit_loadings(embedding, counts, width=1.5, n_steps=20, max_entries=N_GENES * 150, seed=1)
    assert info["n_cells"] == 150
    np.testing.assert_array_equal(one.loadings, two.loadings)


def _reference(counts):
    adata = ad.AnnData(_lognorm(counts).astype(np.float32))
    adata.var_names = [f"g{i}" for i in range(counts.shape[1])]
    adata.layers["counts"] = sp.csr_matrix(counts.astype(np.float32))
    return adata


def test_train_prior_refits_records_and_round_trips(tmp_path):
    counts, _ = _simulate(300, 6, depth=80.0)
    adata = _reference(counts)
    settings = dice.tl.TrainSettings(n_updates=20, count_loadings_width=1.5)
    model = dice.tl.train_prior(adata, n_comps=3, settings=settings, seed=0, progress=False)
    pca = dice.tl.train_prior(
        adata, n_comps=3, settings=settings.replace(count_loadings_width=None), seed=0, progress=False
    )
    assert model.config["loadings_fit"]["kind"] == "counts" and model.config["loadings_fit"]["n_cells"] == 300
    assert pca.config["loadings_fit"] == {"kind": "pca"}
    assert _largest_angle(model.embedding.loadings, pca.embedding.loadings) > 1.0
    model.save(tmp_path / "m")
    loaded = dice.models.DicePrior.load(tmp_path / "m")
    assert loaded.config["loadings_fit"] == model.config["loadings_fit"]
    np.testing.assert_array_equal(loaded.embedding.loadings, model.embedding.loadings)
    again = dice.tl.train_prior(adata, n_comps=3, settings=settings, seed=0, progress=False)
    np.testing.assert_array_equal(again.embedding.loadings, model.embedding.loadings)  # same seed, same V


def test_without_counts_the_loadings_stay_pca():
    counts, _ = _simulate(200, 7, depth=80.0)
    adata = _reference(counts)
    del adata.layers["counts"]
    settings = dice.tl.TrainSettings(n_updates=20, count_loadings_width=1.5)
    model = dice.tl.train_prior(adata, n_comps=3, settings=settings, seed=0, progress=False)
    assert model.config["loadings_fit"] == {"kind": "pca"}


@pytest.mark.parametrize("width", [0.0, -1.0, float("nan"), "wide"])
def test_bad_width_is_refused(width):
    with pytest.raises(DiceInputError, match="count_loadings_width"):
        dice.tl.TrainSettings(count_loadings_width=width)


@pytest.mark.parametrize("width2", [0.3, None])
def test_hand_written_gradient_equals_autograd(width2):
    # the refit steps on _set_gradients (three transcendentals per entry instead of autograd's seven): it must
    # be the exact gradient of _objective, including the multinomial normalisation and the soft floor's slope
    import torch

    from dice.models._loadings import _FitData, _objective, _set_gradients

    rng = np.random.default_rng(0)
    n, g, k = 50, 40, 3

    def t(a):
        return torch.tensor(np.asarray(a), dtype=torch.float64)

    c = t(rng.poisson(2.0, (n, g)))
    data = _FitData(
        counts=c,
        depth=c.sum(1, keepdim=True),
        mean=t(rng.normal(0.5, 0.5, g)),
        std=t(rng.uniform(0.5, 1.5, g)),
        alpha=t(rng.uniform(0.01, 0.5, g)),
        precision=t(rng.uniform(0.5, 2.0, k)),
        start=t(rng.normal(0.0, 0.2, (g, k))),
        width2=width2,
        floor=0.05,
        min_rate=0.1,
    )
    params = [torch.nn.Parameter(t(rng.normal(0.0, s, shape))) for s, shape in ((0.3, (g, k)), (1.0, (n, k)), (0.3, g))]
    _objective(*params, data).backward()
    auto = [p.grad.clone() for p in params]
    with torch.no_grad():
        _set_gradients(*params, data)
    for expected, got in zip(auto, (p.grad for p in params), strict=True):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-7, atol=1e-9)

    # a cell without counts carries no likelihood: finite gradients, its state pulled by the weak prior alone
    data.counts[0] = 0.0
    data.depth[0] = 0.0
    with torch.no_grad():
        _set_gradients(*params, data)
        assert all(bool(torch.isfinite(p.grad).all()) for p in params)
        np.testing.assert_allclose(params[1].grad[0].numpy(), (params[1][0] * data.precision / n).numpy())
        assert np.isfinite(float(_objective(*params, data)))


def test_progress_bar_counts_the_steps_only_when_asked(capsys):
    counts, _ = _simulate(100, 5, depth=60.0)
    embedding = _embedding(counts)
    refit_loadings(embedding, sp.csr_matrix(counts), width=1.5, n_steps=7)
    assert "fitting loadings" not in capsys.readouterr().err
    refit_loadings(embedding, sp.csr_matrix(counts), width=1.5, n_steps=7, progress=True)
    err = capsys.readouterr().err
    assert "fitting loadings to counts" in err and "7/7" in err
