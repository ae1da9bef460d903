import numpy as np
import pytest
import scanpy as sc

import dice
from dice._validation import DiceInputError
from dice.tl import PosteriorSettings, TrainSettings
from helpers import assert_unchanged, make_clusters, snapshot


def test_denoise_writes_documented_keys(trained_model, query):
    assert dice.tl.denoise(query, model=trained_model, seed=0, progress=False, store_samples=True) is None
    n, k = query.n_obs, trained_model.embedding.n_comps
    assert query.obsm["X_dice"].shape == (n, k) and query.obsm["X_dice_pca"].shape == (n, k)
    samples = query.obsm["X_dice_samples"]
    assert samples.shape[:2] == (n, PosteriorSettings().n_samples)
    # the Tweedie mean and the sample average estimate the same posterior mean
    spread = np.sqrt(samples.var(axis=1).mean())
    assert np.sqrt(((query.obsm["X_dice"] - samples.mean(1)) ** 2).mean()) < spread
    dice.tl.denoise(
        query,
        model=trained_model,
        seed=0,
        progress=False,
        store_samples=True,
        settings=PosteriorSettings(mean_estimate="samples"),
    )
    np.testing.assert_allclose(query.obsm["X_dice"], query.obsm["X_dice_samples"].mean(1), rtol=1e-5, atol=1e-5)
    assert np.all(query.obs["dice_uncertainty"] > 0)
    record = query.uns["dice"]
    assert record["params"]["seed"] == 0 and record["params"]["sampler"] == "direct" and "versions" in record
    assert record["n_genes_used"] == 60 and "rho" in record["params"] and record["device"] == "cpu"
    assert None not in record["params"].values()


def test_denoise_moves_cells_towards_their_cluster(trained_model):
    """On noisy cells the posterior mean is closer to the true latent structure than the projection."""
    noisy = make_clusters(300, seed=5, noise=2.0)
    dice.tl.denoise(noisy, model=trained_model, seed=0, progress=False)
    labels = noisy.obs["label"].to_numpy()
    pca = dice.metrics.silhouette(noisy.obsm["X_dice_pca"], labels)
    denoised = dice.metrics.silhouette(noisy.obsm["X_dice"], labels)
    assert denoised > pca


def test_same_seed_same_result_and_seed_matters(trained_model, query):
    a, b, c = query.copy(), query.copy(), query.copy()
    for adata, seed in ((a, 1), (b, 1), (c, 2)):
        dice.tl.denoise(adata, model=trained_model, seed=seed, progress=False, store_samples=True)
    np.testing.assert_array_equal(a.obsm["X_dice"], b.obsm["X_dice"])
    np.testing.assert_array_equal(a.obsm["X_dice_samples"], b.obsm["X_dice_samples"])
    assert not np.array_equal(a.obsm["X_dice_samples"], c.obsm["X_dice_samples"])
    np.testing.assert_array_equal(a.obsm["X_dice"], c.obsm["X_dice"])  # the Tweedie mean is deterministic


def test_copy_returns_new_object_and_leaves_input(trained_model, query):
    before = snapshot(query)
    out = dice.tl.denoise(query, model=trained_model, progress=False, copy=True, key_added="dz")
    assert_unchanged(query, before)
    assert "X_dz" in out.obsm and "dz_uncertainty" in out.obs and "dz" in out.uns


def test_atlas_mode_trains_on_the_data_itself(query, torch_threads):
    dice.tl.denoise(query, seed=0, progress=False, n_comps=3, training=TrainSettings(n_updates=100))
    assert query.obsm["X_dice"].shape == (query.n_obs, 3)
    assert query.uns["dice"]["prior_trained_on_this_data"]


def test_scanpy_handoff(trained_model, query):
    dice.tl.denoise(query, model=trained_model, progress=False)
    sc.pp.neighbors(query, use_rep="X_dice", n_neighbors=10)
    sc.tl.leiden(query, flavor="igraph", n_iterations=2, directed=False)
    sc.tl.umap(query)
    assert query.obsm["X_umap"].shape == (query.n_obs, 2) and query.obs["leiden"].nunique() >= 2


def test_missing_genes_drop_out_of_the_likelihood(trained_model, query):
    """Fewer shared genes: the measurement uses only those, and its noise (so the uncertainty) grows."""
    full = query.copy()
    dice.tl.denoise(full, model=trained_model, progress=False)
    noise = [float(full.obs["dice_noise_sd"].mean())]
    for n_genes in (45, 30):
        subset = query[:, query.var_names[::-1][:n_genes]].copy()  # reordered, genes missing
        dice.tl.denoise(subset, model=trained_model, progress=False)
        assert subset.uns["dice"]["n_genes_used"] == n_genes
        noise.append(float(subset.obs["dice_noise_sd"].mean()))
        # still the same cells: the posterior means stay close to the full-gene ones
        error = np.linalg.norm(subset.obsm["X_dice"] - full.obsm["X_dice"], axis=1).mean()
        assert error < 0.5 * np.linalg.norm(full.obsm["X_dice"], axis=1).mean()
    assert noise[0] < noise[1] < noise[2]


@pytest.mark.parametrize("container", ["csr", "csc", "backed"])
def test_identical_results_for_every_container(trained_model, query, container, tmp_path):
    import anndata as ad
    import scipy.sparse as sp

    dense = query.copy()
    dice.tl.denoise(dense, model=trained_model, seed=3, progress=False, store_samples=True)
    if container == "backed":
        query.X = sp.csr_matrix(query.X)
        query.write_h5ad(tmp_path / "q.h5ad")
        other = ad.read_h5ad(tmp_path / "q.h5ad", backed="r")
    else:
        other = query.copy()
        other.X = sp.csr_matrix(other.X) if container == "csr" else sp.csc_matrix(other.X)
    dice.tl.denoise(other, model=trained_model, seed=3, progress=False, store_samples=True)
    out = other
    for key in ("X_dice", "X_dice_pca", "X_dice_samples"):
        np.testing.assert_array_equal(out.obsm[key], dense.obsm[key], err_msg=key)
    np.testing.assert_array_equal(out.obs["dice_uncertainty"], dense.obs["dice_uncertainty"])


def test_results_do_not_depend_on_the_block_size(trained_model, query):
    from dice.tl._latent import measure_cells, posterior_of

    settings = PosteriorSettings()
    results = []
    for block_size in (7, 64, 1000):
        cells = measure_cells(trained_model.embedding, query.X, query.var_names, settings, block_size=block_size)
        results.append(posterior_of(trained_model, cells, settings, seed=2, keep_samples=True, progress=False))
    for other in results[1:]:
        np.testing.assert_array_equal(other.mean, results[0].mean)
        np.testing.assert_array_equal(other.samples, results[0].samples)
        np.testing.assert_array_equal(other.pca, results[0].pca)


def test_rerun_without_samples_drops_the_old_samples(trained_model, query):
    dice.tl.denoise(query, model=trained_model, progress=False, store_samples=True)
    dice.tl.denoise(query, model=trained_model, progress=False, seed=5)
    assert "X_dice_samples" not in query.obsm


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda a: a.X.__setitem__((0, 0), np.nan), "NaN or infinite"),
        (lambda a: a.layers.__setitem__("values", np.round(np.abs(a.X) * 30)), "raw counts"),
    ],
)
def test_bad_values_are_refused_and_adata_untouched(trained_model, query, mutate, match):
    """NaN anywhere; raw counts in a layer named as log-normalised (raw-count X is read as counts instead)."""
    mutate(query)
    before = snapshot(query)
    layer = "values" if "values" in query.layers else None
    with pytest.raises(DiceInputError, match=match):
        dice.tl.denoise(query, model=trained_model, layer=layer, progress=False)
    assert_unchanged(query, before)


def test_too_few_shared_genes_is_refused_and_adata_untouched(trained_model, query):
    query.var_names = [f"other{i}" for i in range(query.n_vars)]
    before = snapshot(query)
    with pytest.raises(DiceInputError, match="Too few genes overlap"):
        dice.tl.denoise(query, model=trained_model, progress=False)
    assert_unchanged(query, before)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"noise_var": "magic"}, "noise_var must be"),
        ({"noise_var": -1.0}, "noise_var must be >"),
        ({"sampler": "langevin"}, "sampler must be"),
        ({"rho_schedule": "cosine"}, "rho_schedule"),
        ({"likelihood": "poisson"}, "likelihood must be"),
        ({"noise_var": 0.5}, "likelihood='isotropic'"),
        ({"rho": float("nan")}, "rho must be a finite"),
        ({"n_samples": 0}, "n_samples must be a positive"),
        ({"n_samples": 2.5}, "n_samples must be a positive"),
        ({"min_shared": 1.5}, "min_shared must be <="),
    ],
)
def test_bad_settings_are_refused(options, match):
    with pytest.raises(DiceInputError, match=match):
        PosteriorSettings(**options)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"settings": "fast"}, "settings must be"),
        ({"seed": -1}, "seed must be"),
        ({"seed": None}, "seed must be"),
        ({"model": "model"}, "model must be a dice.models.DicePrior"),
    ],
)
def test_bad_options_are_refused_and_adata_untouched(trained_model, query, options, match):
    before = snapshot(query)
    with pytest.raises(DiceInputError, match=match):
        dice.tl.denoise(query, **{"model": trained_model, "progress": False, **options})
    assert_unchanged(query, before)


def test_empty_query_is_refused(trained_model, query):
    with pytest.raises(DiceInputError, match="empty"):
        dice.tl.denoise(query[:0].copy(), model=trained_model, progress=False)


def test_train_prior_errors(reference):
    with pytest.raises(DiceInputError, match="labels_key"):
        dice.tl.train_prior(reference, labels_key="missing", progress=False)
    with pytest.raises(DiceInputError, match="n_comps=100"):
        dice.tl.train_prior(reference, n_comps=100, progress=False)


def test_likelihoods_differ_and_are_recorded(trained_model, query):
    weighted, isotropic = query.copy(), query.copy()
    dice.tl.denoise(weighted, model=trained_model, seed=0, progress=False)
    dice.tl.denoise(
        isotropic,
        model=trained_model,
        seed=0,
        progress=False,
        settings=PosteriorSettings(likelihood="isotropic", noise_var=0.5),
    )
    assert weighted.uns["dice"]["likelihood"] == "gene_weighted"
    assert isotropic.uns["dice"]["likelihood"] == "isotropic"
    assert not np.allclose(weighted.obsm["X_dice"], isotropic.obsm["X_dice"])
    np.testing.assert_array_equal(weighted.obsm["X_dice_pca"], isotropic.obsm["X_dice_pca"])  # V^T x in both
    np.testing.assert_allclose(isotropic.obs["dice_noise_sd"], np.sqrt(0.5), rtol=1e-6)


def test_dask_backed_data_give_the_in_memory_result(trained_model, query):
    da = pytest.importorskip("dask.array")
    dense = query.copy()
    dice.tl.denoise(dense, model=trained_model, seed=3, progress=False)
    lazy = query.copy()
    lazy.X = da.from_array(np.asarray(query.X), chunks=(50, 60))
    dice.tl.denoise(lazy, model=trained_model, seed=3, progress=False)
    np.testing.assert_array_equal(lazy.obsm["X_dice"], dense.obsm["X_dice"])
    np.testing.assert_array_equal(lazy.obs["dice_noise_sd"], dense.obs["dice_noise_sd"])
