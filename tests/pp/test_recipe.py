import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

import dice
from dice._validation import DiceInputError
from helpers import assert_unchanged, snapshot


def _counts(n_cells=300, n_genes=400, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.gamma(0.6, 2.0, size=n_genes)
    counts = rng.poisson(means[None, :] * rng.uniform(0.5, 2.0, size=(n_cells, 1)))
    adata = ad.AnnData(sp.csr_matrix(counts.astype(np.float32)))
    adata.var_names = [f"MT-{i}" if i < 5 else f"gene{i}" for i in range(n_genes)]
    adata.obs_names = [f"cell{i}" for i in range(n_cells)]
    return adata


def test_recipe_applies_qc_normalisation_and_hvg():
    adata = _counts()
    adata.X[0] = 0  # a cell with no genes: dropped by min_genes
    adata.X[1, 5:] = 0  # a cell with only mitochondrial reads: dropped by the MT filter
    adata.X[1, :5] = 500
    out = dice.pp.recipe_paper(adata, n_top_genes=100, min_genes=50, copy=True)
    assert "cell0" not in out.obs_names and "cell1" not in out.obs_names
    assert out.n_vars == 100 and "counts" in out.layers
    totals = np.expm1(out.X.toarray() if sp.issparse(out.X) else out.X).sum(axis=1)
    assert np.all(totals <= 1e4 + 1)  # normalised to 1e4 before HVG subsetting
    assert adata.n_obs == 300  # copy=True leaves the input alone


def test_recipe_in_place_returns_none():
    adata = _counts()
    assert dice.pp.recipe_paper(adata, n_top_genes=50, min_genes=50) is None
    assert adata.n_vars == 50 and "dice_recipe" in adata.uns


def test_recipe_refuses_log_data_and_leaves_it_untouched():
    adata = _counts()
    adata.X = np.log1p(adata.X.toarray())
    before = snapshot(adata)
    with pytest.raises(DiceInputError, match="raw counts"):
        dice.pp.recipe_paper(adata)
    assert_unchanged(adata, before)


def test_recipe_harmony_reduces_batch_separation():
    pytest.importorskip("harmonypy")
    a, b = _counts(seed=1), _counts(seed=2)
    b.X = b.X.multiply(3.0).tocsr()
    b.X.data = np.round(b.X.data)
    b.obs_names = [f"b{i}" for i in range(b.n_obs)]
    both = ad.concat([a, b], label="batch")
    both.var_names = a.var_names
    plain = dice.pp.recipe_paper(both, n_top_genes=100, min_genes=50, batch_key="batch", copy=True)
    corrected = dice.pp.recipe_paper(both, n_top_genes=100, min_genes=50, batch_key="batch", harmony=True, copy=True)

    def gap(x, batch):
        x = x.toarray() if sp.issparse(x) else x
        return np.linalg.norm(x[batch == "0"].mean(0) - x[batch == "1"].mean(0))

    assert gap(corrected.X, corrected.obs["batch"].to_numpy()) < gap(plain.X, plain.obs["batch"].to_numpy())
