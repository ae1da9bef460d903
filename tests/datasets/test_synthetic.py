from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from dice.datasets import SYNTHETIC_SETUPS, synthetic

SMALL = {"n_reference": 300, "n_query": 120, "n_genes": 60}


def _noise(adata: ad.AnnData) -> np.ndarray:
    info = adata.uns["synthetic"]
    return adata.X.astype(np.float64) - adata.obsm["X_true_latent"] @ info["loadings"].T


@pytest.mark.parametrize("setup", SYNTHETIC_SETUPS)
def test_shapes_labels_and_metadata(setup: str) -> None:
    reference, query = synthetic(setup, **SMALL)
    for adata, n_cells in ((reference, 300), (query, 120)):
        assert adata.shape == (n_cells, 60)
        assert adata.X.dtype == np.float32
        assert list(adata.var_names[:2]) == ["gene_0", "gene_1"]
        assert isinstance(adata.obs["label"].dtype, pd.CategoricalDtype)
        assert adata.obsm["X_true_latent"].shape == (n_cells, 15)
        info = adata.uns["synthetic"]
        assert info["loadings"].shape == (60, 15)
        n_components = len(info["weights"])
        assert info["means"].shape == (n_components, 15)
        assert info["covariances"].shape == (n_components, 15, 15)
        assert np.isclose(info["weights"].sum(), 1.0)
        assert set(adata.obs["label"]) <= set(info["component_labels"])
        assert info["setup"] == setup
    # V is shared by reference and query.
    np.testing.assert_array_equal(reference.uns["synthetic"]["loadings"], query.uns["synthetic"]["loadings"])
    if not setup.startswith("e2"):
        assert list(reference.obs["label"].cat.categories) == ["cluster_1", "cluster_2"]


def test_paper_default_sizes() -> None:
    reference, query = synthetic(1)
    assert reference.shape == (1600, 2000) and query.shape == (400, 2000)
    reference, query = synthetic("e2_novel", n_reference=10, n_query=10)
    assert reference.shape == (10, 200)


@pytest.mark.parametrize("setup", SYNTHETIC_SETUPS)
def test_reproducible_and_seed_dependent(setup: str) -> None:
    first = synthetic(setup, seed=3, **SMALL)
    again = synthetic(setup, seed=3, **SMALL)
    other = synthetic(setup, seed=4, **SMALL)
    for a, b, c in zip(first, again, other):
        np.testing.assert_array_equal(a.X, b.X)
        np.testing.assert_array_equal(a.obsm["X_true_latent"], b.obsm["X_true_latent"])
        assert list(a.obs["label"]) == list(b.obs["label"])
        assert not np.allclose(a.X, c.X)
        assert not np.allclose(a.uns["synthetic"]["loadings"], c.uns["synthetic"]["loadings"])


@pytest.mark.parametrize("setup", ["2", "e2_novel"])
def test_loadings_prior_and_reference_do_not_depend_on_query_size(setup: str) -> None:
    ref_a, query_a = synthetic(setup, n_reference=50, n_query=20, n_genes=30)
    ref_b, query_b = synthetic(setup, n_reference=50, n_query=70, n_genes=30)
    np.testing.assert_array_equal(ref_a.X, ref_b.X)
    for key in ("loadings", "means", "covariances", "weights"):
        np.testing.assert_array_equal(query_a.uns["synthetic"][key], query_b.uns["synthetic"][key])


def test_reference_shared_across_paper_setups() -> None:
    references = [synthetic(s, **SMALL)[0] for s in ("1", "2", "3", "4")]
    for other in references[1:]:
        np.testing.assert_array_equal(references[0].X, other.X)


def test_two_cluster_prior_moments() -> None:
    reference, _ = synthetic(1, n_reference=4000, n_query=10, n_genes=20)
    latents = reference.obsm["X_true_latent"]
    labels = reference.obs["label"].to_numpy()
    cluster_1, cluster_2 = latents[labels == "cluster_1"], latents[labels == "cluster_2"]
    assert abs(len(cluster_1) / len(latents) - 0.5) < 0.03
    np.testing.assert_allclose(cluster_1.mean(0), 1.0, atol=0.1)
    np.testing.assert_allclose(cluster_2.mean(0), 0.0, atol=0.1)
    assert abs(cluster_1.var(0).mean() - 1.3) < 0.05
    assert abs(cluster_2.var(0).mean() - 1.5) < 0.05


@pytest.mark.parametrize(("setup", "reference_var", "query_var"), [("1", 1, 1), ("2", 1, 10), ("4", 1, 10)])
def test_gaussian_noise_variance(setup: str, reference_var: float, query_var: float) -> None:
    reference, query = synthetic(setup, n_reference=200, n_query=200, n_genes=500)
    for adata, expected in ((reference, reference_var), (query, query_var)):
        assert adata.uns["synthetic"]["noise_family"] == "gaussian"
        assert adata.uns["synthetic"]["noise_var"] == expected
        noise = _noise(adata)
        assert abs(noise.var() / expected - 1) < 0.02
        assert abs(noise.mean()) < 0.02 * np.sqrt(expected)


def test_e2_noise_variance_and_overrides() -> None:
    reference, query = synthetic("e2_single", n_reference=400, n_query=400)
    assert abs(_noise(reference).var() / 0.5 - 1) < 0.02
    assert abs(_noise(query).var() / 1.0 - 1) < 0.02
    reference, query = synthetic("e2_single", n_reference=400, n_query=400, reference_noise_var=0.1, query_noise_var=3)
    assert abs(_noise(reference).var() / 0.1 - 1) < 0.02 and abs(_noise(query).var() / 3 - 1) < 0.02


def test_multivariate_t_noise_of_setup_3() -> None:
    _, query = synthetic(3, n_reference=10, n_query=2000, n_genes=400)
    info = query.uns["synthetic"]
    assert info["noise_family"] == "student_t" and info["noise_df"] == 4 and info["noise_var"] == 1
    assert info["noise_marginal_var"] == 2.0
    noise = _noise(query)
    per_cell_var = noise.var(axis=1)
    # One chi-square per cell: the per-cell variance is scale * 4 / chi2_4, whose median is 4 / 3.357.
    expected_median = 4 / stats.chi2(4).median()
    assert abs(np.median(per_cell_var) / expected_median - 1) < 0.05
    # ... so cells differ wildly in noise level, unlike Gaussian noise (per-cell spread ~ sqrt(2 / 400)).
    _, gaussian_query = synthetic(1, n_reference=10, n_query=2000, n_genes=400)
    gaussian_per_cell = _noise(gaussian_query).var(axis=1)
    assert np.std(per_cell_var) > 10 * np.std(gaussian_per_cell)
    # Heavier tails than Gaussian: excess kurtosis of the pooled noise well above 0.
    assert stats.kurtosis(noise.ravel()) > 1.0
    assert abs(stats.kurtosis(_noise(gaussian_query).ravel())) < 0.1
    # Mean variance 2 (the t4 scale mixture has no finite 4th moment, hence the loose check).
    assert abs(noise.var() / 2.0 - 1) < 0.15


def test_setup_4_latent_shift() -> None:
    reference, query = synthetic(4, n_reference=10, n_query=4000, n_genes=20)
    info = query.uns["synthetic"]
    np.testing.assert_array_equal(info["component_df"], [np.inf, 4.0])
    assert not info["exact_posterior_available"] and reference.uns["synthetic"]["exact_posterior_available"]
    latents, labels = query.obsm["X_true_latent"], query.obs["label"].to_numpy()
    cluster_1, cluster_2 = latents[labels == "cluster_1"], latents[labels == "cluster_2"]
    np.testing.assert_allclose(cluster_1.mean(0), 1.0, atol=0.1)
    assert abs(cluster_1.var(0).mean() - 1.5) < 0.06
    assert abs(np.median(cluster_2, axis=0)).max() < 0.15  # centred at 0
    # t_4 with scale 1.3 I: heavy tails (excess kurtosis >> 0) around a covariance of 2.6 I.
    assert stats.kurtosis(cluster_2.ravel()) > 1.0
    assert abs(stats.kurtosis(cluster_1.ravel())) < 0.2


def test_e2_single_query_has_one_training_cluster() -> None:
    reference, query = synthetic("e2_single", query_cluster=3, n_reference=500, n_query=100)
    assert set(query.obs["label"]) == {"cluster_3"}
    assert set(reference.obs["label"]) == {f"cluster_{i}" for i in range(1, 6)}
    assert not query.obs["novel"].any()
    centre = reference.uns["synthetic"]["means"][2]
    np.testing.assert_array_equal(query.uns["synthetic"]["means"][0], centre)
    np.testing.assert_allclose(query.obsm["X_true_latent"].mean(0), centre, atol=0.25)
    with pytest.raises(ValueError, match="query_cluster"):
        synthetic("e2_single", query_cluster=6)


def test_e2_novel_cluster_is_absent_from_reference() -> None:
    reference, query = synthetic("e2_novel", n_reference=1000, n_query=1000)
    assert "cluster_6" not in set(reference.obs["label"])
    assert not reference.obs["novel"].any()
    novel = query.obs["novel"].to_numpy()
    np.testing.assert_array_equal(novel, query.obs["label"].to_numpy() == "cluster_6")
    assert 0.45 < novel.mean() < 0.55
    assert set(query.obs["label"][~novel]) == {f"cluster_{i}" for i in range(1, 6)}
    # The training clusters of the query are those of the reference; the novel one is far from all of them.
    training_centres = reference.uns["synthetic"]["means"]
    np.testing.assert_array_equal(query.uns["synthetic"]["means"][:5], training_centres)
    novel_centre = query.uns["synthetic"]["means"][5]
    assert np.linalg.norm(training_centres - novel_centre, axis=1).min() >= 3.0
    # No reference cell lies near the novel centre: its cluster is outside the training support.
    reference_distances = np.linalg.norm(reference.obsm["X_true_latent"] - novel_centre, axis=1)
    novel_radius = np.linalg.norm(query.obsm["X_true_latent"][novel] - novel_centre, axis=1).max()
    assert reference_distances.min() > novel_radius * 0.5

    _, all_novel = synthetic("e2_novel", novel_fraction=1.0, n_reference=10, n_query=50)
    assert all_novel.obs["novel"].all()


def test_invalid_setup() -> None:
    with pytest.raises(ValueError, match="unknown setup"):
        synthetic(5)


def test_h5ad_round_trip(tmp_path) -> None:
    _, query = synthetic("3", **SMALL)
    path = tmp_path / "query.h5ad"
    query.write_h5ad(path)
    back = ad.read_h5ad(path)
    np.testing.assert_array_equal(back.X, query.X)
    assert back.uns["synthetic"]["noise_family"] == "student_t"
    np.testing.assert_array_equal(back.uns["synthetic"]["loadings"], query.uns["synthetic"]["loadings"])
