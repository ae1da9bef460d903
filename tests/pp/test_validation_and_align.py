import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from dice._validation import DiceInputError, check_adata, looks_like_counts
from dice.pp._align import align_genes
from helpers import assert_unchanged, make_clusters, snapshot


def test_nan_and_inf_are_refused_and_adata_untouched():
    adata = make_clusters(50)
    adata.X[3, 4] = np.nan
    adata.X[5, 6] = np.inf
    before = snapshot(adata)
    with pytest.raises(DiceInputError, match="2 NaN or infinite"):
        check_adata(adata, expect="log-normalised")
    assert_unchanged(adata, before)


def test_empty_adata_is_refused():
    with pytest.raises(DiceInputError, match="empty"):
        check_adata(ad.AnnData(np.zeros((0, 5), dtype=np.float32)))
    with pytest.raises(DiceInputError, match="empty"):
        check_adata(ad.AnnData(np.zeros((5, 0), dtype=np.float32)))


def test_raw_counts_are_detected():
    rng = np.random.default_rng(0)
    counts = sp.csr_matrix(rng.poisson(3.0, size=(40, 30)).astype(np.float32) * 20)
    assert looks_like_counts(counts)
    adata = ad.AnnData(counts)
    with pytest.raises(DiceInputError, match="raw counts"):
        check_adata(adata, expect="log-normalised")
    logged = np.log1p(counts.toarray())
    assert not looks_like_counts(logged)
    check_adata(ad.AnnData(logged), expect="log-normalised")  # accepted


def test_missing_layer_message_lists_layers():
    adata = make_clusters(20)
    adata.layers["lognorm"] = adata.X.copy()
    with pytest.raises(DiceInputError, match="lognorm"):
        check_adata(adata, layer="counts")


def test_align_reorders_and_keeps_only_present_genes():
    adata = make_clusters(30, n_genes=20)
    reference_genes = [*adata.var_names[::-1], "extra"]
    alignment = align_genes(adata.var_names, reference_genes, min_shared=0.5)
    assert alignment.n_shared == 20 and not alignment.present[20]
    np.testing.assert_array_equal(alignment.take(adata.X), adata.X[:, ::-1])
    np.testing.assert_array_equal(alignment.take(sp.csr_matrix(adata.X)), adata.X[:, ::-1])


def test_align_refuses_too_few_shared_genes():
    adata = make_clusters(30, n_genes=20)
    reference_genes = [f"other{i}" for i in range(40)] + list(adata.var_names[:5])
    with pytest.raises(DiceInputError, match="Too few genes overlap"):
        align_genes(adata.var_names, reference_genes)


def test_align_refuses_duplicate_gene_names():
    adata = make_clusters(10, n_genes=5)
    adata.var_names = ["a", "a", "b", "c", "d"]
    with pytest.raises(DiceInputError, match="var_names_make_unique"):
        align_genes(adata.var_names, ["a", "b", "c", "d"])
