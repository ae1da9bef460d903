"""The count likelihood through the AnnData path: training on layers["counts"], auto, thinning, save/load."""

from __future__ import annotations

import contextlib
import warnings

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

import dice
from dice._validation import DiceInputError
from dice.tl import PosteriorSettings, TrainSettings
from dice.tl._latent import DepthWarning

N_GENES = 60
SETTINGS = PosteriorSettings(n_samples=5)
TRAINING = TrainSettings(n_updates=200)


def _lognorm(counts: np.ndarray) -> np.ndarray:
    depth = np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    return np.log1p(1e4 * counts / depth).astype(np.float32)


def _adata(counts: np.ndarray, labels: np.ndarray, *, with_counts: bool = True) -> ad.AnnData:
    adata = ad.AnnData(_lognorm(counts))
    adata.var_names = [f"g{i}" for i in range(counts.shape[1])]
    adata.obs_names = [f"c{i}" for i in range(counts.shape[0])]
    adata.obs["label"] = labels
    if with_counts:
        adata.layers["counts"] = sp.csr_matrix(counts.astype(np.float32))
    return adata


def _simulate(n_cells: int, seed: int, depth: float = 1000.0) -> tuple[np.ndarray, np.ndarray]:
    """Poisson counts of a rank-3 log-rate model with two clusters (fixed gene programme, seed 0)."""
    programme = np.random.default_rng(0)
    base = programme.normal(0.0, 1.0, N_GENES)
    cluster = programme.normal(0.0, 0.3, (2, N_GENES))
    factors = programme.normal(0.0, 0.4, (3, N_GENES))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n_cells)
    log_rate = base + cluster[labels] + rng.normal(0.0, 1.0, (n_cells, 3)) @ factors
    p = np.exp(log_rate)
    p /= p.sum(axis=1, keepdims=True)
    n = rng.lognormal(np.log(depth), 0.3, n_cells)[:, None]
    return rng.poisson(n * p).astype(np.float64), np.array(["a", "b"])[labels]


def _thin(counts: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).binomial(counts.astype(np.int64), fraction).astype(np.float64)


@contextlib.contextmanager
def _outside_allowed():
    """At 5 % depth one toy cell is measured outside the prior's span and gets the Gaussian prior; the
    warning that says so is tested in tests/models/test_outside.py, here it is allowed."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "1 cell was measured far outside", UserWarning)
        yield


def _transfer(query, ref, model, settings=SETTINGS, **transfer):
    """``transfer_labels`` of ``query`` onto ``ref`` with this module's settings, as a copy."""
    return dice.tl.transfer_labels(
        query,
        ref,
        model,
        labels_key="label",
        settings=settings,
        transfer=dice.tl.TransferSettings(**transfer),
        seed=0,
        copy=True,
        progress=False,
    )


@pytest.fixture(scope="module")
def data():
    ref_counts, ref_labels = _simulate(400, seed=1)
    query_counts, query_labels = _simulate(100, seed=2)
    return _adata(ref_counts, ref_labels), query_counts, query_labels


@pytest.fixture(scope="module")
def model(data):
    return dice.tl.train_prior(data[0], n_comps=5, settings=TRAINING, seed=0, progress=False)


def test_training_records_count_reference(model):
    assert model.count_reference is not None
    assert model.count_reference.gene_scale.shape == (N_GENES,)
    assert model.config["prior_latents"] == "counts_posterior_draw"
    assert model.config["loadings_fit"]["kind"] == "counts"  # by default V is refitted to the counts
    assert model.config["loadings_fit"]["width"] == TrainSettings().count_loadings_width


def test_no_counts_layer_is_unchanged(data):
    ref = data[0].copy()
    del ref.layers["counts"]
    plain = dice.tl.train_prior(ref, n_comps=5, settings=TrainSettings(n_updates=20), seed=0, progress=False)
    assert plain.count_reference is None
    assert plain.config["prior_latents"] == "projection"
    assert plain.config["loadings_fit"] == {"kind": "pca"}


def test_auto_picks_counts_and_noise_grows_with_thinning(data, model):
    _, counts, labels = data
    deep = _adata(counts, labels)
    shallow = _adata(_thin(counts, 0.1, seed=3), labels)
    out = {}
    for name, query in (("deep", deep), ("shallow", shallow)):
        if name == "shallow":
            with pytest.warns(DepthWarning, match="fewer than 99 % of the reference's cells"):
                dice.tl.denoise(query, model, settings=SETTINGS, seed=0, progress=False)
        else:
            dice.tl.denoise(query, model, settings=SETTINGS, seed=0, progress=False)
        assert query.uns["dice"]["likelihood"] == "counts"
        assert query.uns["dice"]["counts_layer"] == "counts"
        out[name] = query.obs["dice_noise_sd"].to_numpy()
    ratio = np.median(out["shallow"] / out["deep"])
    assert ratio > 2.0, ratio  # sd ~ 1 / sqrt(depth): about sqrt(10) at 10 %
    assert np.mean(out["shallow"] > out["deep"]) > 0.95


def test_counts_transfer_beats_gene_weighted_on_shallow_query(data, model):
    ref, counts, labels = data
    shallow = _adata(_thin(counts, 0.05, seed=4), labels)
    accuracy = {}
    for likelihood, warning in (("auto", DepthWarning), ("gene_weighted", UserWarning)):
        # counts: far shallower than the reference; gene-weighted: noisier
        with pytest.warns(warning), _outside_allowed():
            out = _transfer(shallow, ref, model, SETTINGS.replace(likelihood=likelihood))
        accuracy[out.uns["dice"]["likelihood"]] = np.mean(out.obs["dice_label"].astype(str).to_numpy() == labels)
    assert set(accuracy) == {"counts", "gene_weighted"}
    assert accuracy["counts"] > accuracy["gene_weighted"] + 0.08, accuracy  # measured 0.93 vs 0.76
    assert accuracy["counts"] > 0.8, accuracy


def test_model_records_reference_depth(model, data):
    depth = model.config["reference_depth"]
    observed = np.asarray(data[0].layers["counts"].sum(axis=1)).ravel()
    assert depth["q01"] <= depth["q05"] <= depth["median"] <= depth["q95"]
    assert depth["median"] == pytest.approx(np.median(observed))


def test_no_depth_warning_at_the_reference_depth(data, model):
    _, counts, labels = data
    query = _adata(_thin(counts, 0.7, seed=5), labels)  # shallower, but within the reference's range
    with warnings.catch_warnings():
        warnings.simplefilter("error", DepthWarning)
        dice.tl.denoise(query, model, settings=SETTINGS, seed=0, progress=False)
    assert query.uns["dice"]["depth"]["median"] == pytest.approx(
        np.median(np.asarray(query.layers["counts"].sum(axis=1)).ravel())
    )
    assert query.uns["dice"]["depth"]["reference_median"] == model.config["reference_depth"]["median"]


def test_transfer_calibrates_at_the_query_depth(data, model):
    """The reference cells are thinned to the query's depths: lower, honest confidence on a shallow query."""
    ref, counts, labels = data
    shallow = _adata(_thin(counts, 0.03, seed=6), labels)
    query_depth = np.median(np.asarray(shallow.layers["counts"].sum(axis=1)).ravel())
    out = {}
    for depth in ("query", "reference"):
        with pytest.warns(UserWarning) as caught:
            out[depth] = _transfer(shallow, ref, model, calibration_depth=depth)
        assert any(w.category is DepthWarning for w in caught)
        noisier = [w for w in caught if "calibrated on cleaner cells" in str(w.message)]
        assert len(noisier) == (depth == "reference")  # the warning is only needed without depth matching
    record = out["query"].uns["dice_label_transfer"]
    assert record["calibration_depth"] == "query"
    assert record["reference_cells_depth"]["median_after"] == pytest.approx(query_depth, rel=0.25)
    assert out["reference"].uns["dice_label_transfer"]["calibration_depth"] == "reference"
    assert "reference_cells_depth" not in out["reference"].uns["dice_label_transfer"]
    confidence = {k: v.obs["dice_label_confidence"].to_numpy() for k, v in out.items()}
    right = {k: v.obs["dice_label"].astype(str).to_numpy() == labels for k, v in out.items()}
    gap = {k: abs(confidence[k].mean() - right[k].mean()) for k in out}
    assert confidence["query"].mean() < confidence["reference"].mean(), confidence
    assert gap["query"] < gap["reference"], gap


def test_counts_without_counts_raises(data, model):
    _, counts, labels = data
    no_counts = _adata(counts, labels, with_counts=False)
    with pytest.raises(DiceInputError, match="layers\\['counts'\\]"):
        dice.tl.denoise(no_counts, model, settings=SETTINGS.replace(likelihood="counts"), progress=False)
    ref = data[0].copy()
    del ref.layers["counts"]
    plain = dice.tl.train_prior(ref, n_comps=5, settings=TrainSettings(n_updates=20), seed=0, progress=False)
    with pytest.raises(DiceInputError, match="count reference"):
        dice.tl.denoise(_adata(counts, labels), plain, settings=SETTINGS.replace(likelihood="counts"), progress=False)
    # auto falls back to the gene-weighted likelihood without counts
    dice.tl.denoise(no_counts, model, settings=SETTINGS, progress=False)
    assert no_counts.uns["dice"]["likelihood"] == "gene_weighted"


def test_save_load_identical(data, model, tmp_path):
    _, counts, labels = data
    model.save(tmp_path / "m")
    loaded = dice.models.DicePrior.load(tmp_path / "m", device="cpu")
    for name in ("gene_scale", "dispersion", "prior_var", "start"):
        np.testing.assert_array_equal(getattr(loaded.count_reference, name), getattr(model.count_reference, name))
    assert loaded.count_reference.floor == model.count_reference.floor
    assert loaded.count_reference.start_log_depth == model.count_reference.start_log_depth
    assert loaded.config["prior_latents"] == "counts_posterior_draw"
    assert loaded.config["reference_depth"] == model.config["reference_depth"]
    query = _adata(_thin(counts, 0.6, seed=5), labels)
    a = dice.tl.denoise(query, model, settings=SETTINGS, seed=0, progress=False, copy=True)
    b = dice.tl.denoise(query, loaded, settings=SETTINGS, seed=0, progress=False, copy=True)
    np.testing.assert_array_equal(a.obsm["X_dice"], b.obsm["X_dice"])


def test_ambient_fraction_travels_with_the_model(data, tmp_path):
    """TrainSettings.ambient_fraction reaches the count reference, is saved and loaded, and changes the query's
    measurement (soup counts carry no information: a wider noise); models saved before it load without it."""
    ref, counts, labels = data
    settings = TRAINING.replace(ambient_fraction=0.1)
    soupy = dice.tl.train_prior(ref, n_comps=5, settings=settings, seed=0, progress=False)
    assert soupy.count_reference.ambient_fraction == 0.1
    np.testing.assert_allclose(soupy.count_reference.ambient.sum(), 1.0)
    path = soupy.save(tmp_path / "soupy")
    loaded = dice.models.DicePrior.load(path, device="cpu")
    assert loaded.count_reference.ambient_fraction == 0.1
    np.testing.assert_array_equal(loaded.count_reference.ambient, soupy.count_reference.ambient)
    plain = dice.tl.train_prior(ref, n_comps=5, settings=TRAINING, seed=0, progress=False)
    query = _adata(counts, labels)
    a = dice.tl.denoise(query, plain, settings=SETTINGS, seed=0, progress=False, copy=True)
    b = dice.tl.denoise(query, loaded, settings=SETTINGS, seed=0, progress=False, copy=True)
    assert np.median(b.obs["dice_noise_sd"] / a.obs["dice_noise_sd"]) > 1.0
    assert (a.uns["dice"]["ambient_fraction"], b.uns["dice"]["ambient_fraction"]) == (0.0, 0.1)
    # a model saved before ambient RNA existed (no ambient tensor, no fraction) loads without it; a fraction
    # without its profile is refused
    import torch

    from dice._validation import DiceModelError
    from dice.models._prior import COUNT_ARRAYS, _load_count_reference

    names = {f"count.{n}" for n in COUNT_ARRAYS}
    tensors = {f"count.{n}": torch.as_tensor(getattr(plain.count_reference, n)) for n in COUNT_ARRAYS}
    floats = {"floor": 0.05, "min_rate": 0.1}
    before = _load_count_reference({"count_reference": floats}, tensors, names, N_GENES, 5, "c")
    assert before.ambient is None and before.ambient_fraction == 0.0
    with pytest.raises(DiceModelError, match="count reference"):
        _load_count_reference({"count_reference": {**floats, "ambient_fraction": 0.1}}, tensors, names, N_GENES, 5, "c")
    with pytest.raises(DiceInputError, match="ambient_fraction"):
        TrainSettings(ambient_fraction=1.0)
    with pytest.raises(DiceInputError, match="ambient_fraction"):
        TrainSettings(ambient_fraction=-0.1)


def test_start_map_travels_with_the_model(data, model):
    """The count solve's start map is fitted in training and checked on load: a model saved before it existed
    loads without it (its solves start from the projection, and still work); a map without its depth range,
    or of the wrong shape, is refused."""
    import torch

    from dice._validation import DiceModelError
    from dice.models._prior import COUNT_ARRAYS, _load_count_reference

    ref = model.count_reference
    assert ref.start.shape == (2 * 5 + 2, 5) and ref.start_log_depth[0] < ref.start_log_depth[1]
    names = {f"count.{n}" for n in COUNT_ARRAYS}
    tensors = {f"count.{n}": torch.as_tensor(getattr(ref, n)) for n in COUNT_ARRAYS}
    floats = {"floor": 0.05, "min_rate": 0.1}
    before = _load_count_reference({"count_reference": floats}, tensors, names, N_GENES, 5, "c")
    assert before.start is None and before.start_log_depth is None
    _, counts, labels = data
    old = dice.models.DicePrior(
        model.embedding, model.network, model.schedule, model.latent_scale, model.config, count_reference=before
    )
    query = _adata(_thin(counts, 0.6, seed=2), labels)
    a = dice.tl.denoise(query, model, settings=SETTINGS, seed=0, progress=False, copy=True)
    b = dice.tl.denoise(query, old, settings=SETTINGS, seed=0, progress=False, copy=True)
    scale = np.sqrt(np.median(a.obs["dice_noise_sd"] ** 2))
    assert np.median(np.linalg.norm(a.obsm["X_dice"] - b.obsm["X_dice"], axis=1)) < 0.05 * scale
    start = {"count.start": torch.as_tensor(ref.start)}
    depths = {**floats, "start_log_depth": list(ref.start_log_depth)}
    loaded = _load_count_reference({"count_reference": depths}, {**tensors, **start}, names, N_GENES, 5, "c")
    np.testing.assert_array_equal(loaded.start, ref.start)
    with pytest.raises(DiceModelError, match="count reference"):
        _load_count_reference({"count_reference": floats}, {**tensors, **start}, names, N_GENES, 5, "c")
    short = {"count.start": torch.as_tensor(ref.start[:-1])}
    with pytest.raises(DiceModelError, match="count reference"):
        _load_count_reference({"count_reference": depths}, {**tensors, **short}, names, N_GENES, 5, "c")


def test_count_dispersion_setting_reaches_the_model(data, model, tmp_path):
    """TrainSettings.count_dispersion="pooled" fits one dispersion for every gene, records the choice in the
    model's config and survives save / load; the default measures one per gene around each cell's neighbours,
    "gene" one per gene around the decoder."""
    ref, _, _ = data
    pooled = dice.tl.train_prior(
        ref, n_comps=5, settings=TRAINING.replace(count_dispersion="pooled"), seed=0, progress=False
    )
    values = pooled.count_reference.dispersion
    assert np.all(values == values[0]) and values[0] >= 0
    assert np.ptp(model.count_reference.dispersion) > 0
    assert (pooled.config["count_dispersion"], model.config["count_dispersion"]) == ("pooled", "local")
    loaded = dice.models.DicePrior.load(pooled.save(tmp_path / "pooled"), device="cpu")
    np.testing.assert_array_equal(loaded.count_reference.dispersion, values)
    assert loaded.config["count_dispersion"] == "pooled"
    with pytest.raises(DiceInputError, match="count_dispersion"):
        TrainSettings(count_dispersion="per_cell")
    gene = dice.tl.train_prior(
        ref, n_comps=5, settings=TRAINING.replace(count_dispersion="gene"), seed=0, progress=False
    )
    assert gene.config["count_dispersion"] == "gene" and np.ptp(gene.count_reference.dispersion) > 0
    assert not np.allclose(gene.count_reference.dispersion, model.count_reference.dispersion)


def test_transfer_falls_back_when_reference_lacks_counts(data, model):
    ref, counts, labels = data
    ref = ref.copy()
    del ref.layers["counts"]
    out = _transfer(_adata(counts, labels), ref, model)
    assert out.uns["dice"]["likelihood"] == "gene_weighted"  # both sides measured alike
    with pytest.raises(DiceInputError, match="reference has no layers"):
        _transfer(_adata(counts, labels), ref, model, SETTINGS.replace(likelihood="counts"))


def test_load_refuses_partial_count_reference(model, tmp_path):
    import json

    from dice._validation import DiceModelError

    path = model.save(tmp_path / "m")
    config = json.loads((path / "config.json").read_text())
    assert config["count_reference"]["floor"] == model.count_reference.floor
    config["count_reference"] = {"floor": 0.05}  # min_rate lost
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(DiceModelError):
        dice.models.DicePrior.load(path, device="cpu")


def test_count_reference_check_names_the_problem(model):
    import torch

    from dice._validation import DiceModelError
    from dice.models._prior import COUNT_ARRAYS, _load_count_reference

    names = {f"count.{n}" for n in COUNT_ARRAYS}
    ref = model.count_reference
    tensors = {f"count.{n}": torch.as_tensor(getattr(ref, n)) for n in COUNT_ARRAYS}
    config = {"count_reference": {"floor": ref.floor, "min_rate": ref.min_rate}}
    assert _load_count_reference(config, tensors, names, N_GENES, 5, "c") is not None
    assert _load_count_reference({}, {}, names, N_GENES, 5, "c") is None
    with pytest.raises(DiceModelError, match="count reference"):
        _load_count_reference({}, tensors, names, N_GENES, 5, "c")  # tensors without their config
    with pytest.raises(DiceModelError, match="count reference"):
        _load_count_reference(config, tensors, names, N_GENES + 1, 5, "c")  # another gene list


def test_counts_refused_before_training(data):
    _, counts, labels = data
    with pytest.raises(DiceInputError, match="has no layers"):  # model=None: refused before any training
        dice.tl.denoise(
            _adata(counts, labels, with_counts=False),
            settings=SETTINGS.replace(likelihood="counts"),
            n_comps=3,
            training=TrainSettings(n_updates=10_000),
            progress=False,
        )


def test_integer_x_is_read_as_counts(data, model):
    """Raw counts in X (no layer): log-normalised internally, the count likelihood runs, same result."""
    _, counts, labels = data
    thinned = _thin(counts, 0.6, seed=7)
    usual = _adata(thinned, labels)
    raw = ad.AnnData(sp.csr_matrix(thinned.astype(np.float32)), obs=usual.obs.copy(), var=usual.var.copy())
    before = raw.X.copy()
    dice.tl.denoise(usual, model, settings=SETTINGS, seed=0, progress=False)
    dice.tl.denoise(raw, model, settings=SETTINGS, seed=0, progress=False)
    assert raw.uns["dice"]["likelihood"] == "counts"
    assert raw.uns["dice"]["counts_layer"] == "X"
    np.testing.assert_allclose(raw.obsm["X_dice"], usual.obsm["X_dice"], atol=1e-4)
    np.testing.assert_allclose(raw.obsm["X_dice_pca"], usual.obsm["X_dice_pca"], atol=1e-4)
    assert (raw.X != before).nnz == 0  # X itself is not normalised in place


def test_training_on_integer_x_equals_training_on_the_usual_layout(data):
    ref = data[0]
    raw = ad.AnnData(ref.layers["counts"].copy(), obs=ref.obs.copy(), var=ref.var.copy())
    fit = {}
    for width in (None, TrainSettings().count_loadings_width):  # PCA's V, then V refitted to the counts
        settings = TrainSettings(n_updates=20, count_loadings_width=width)
        for name, adata in (("usual", ref), ("raw", raw)):
            fit[name] = dice.tl.train_prior(adata, n_comps=5, settings=settings, seed=0, progress=False)
        assert fit["raw"].config["prior_latents"] == "counts_posterior_draw"
        np.testing.assert_allclose(fit["raw"].embedding.mean, fit["usual"].embedding.mean, atol=1e-5)
        # the refit's 300 Adam steps carry the float32 rounding of the two layouts' PCA (1e-6) to ~1e-3
        np.testing.assert_allclose(
            np.abs(fit["raw"].embedding.loadings),
            np.abs(fit["usual"].embedding.loadings),
            atol=1e-4 if width is None else 5e-3,
        )


def test_counts_are_told_from_log_normalised_data(data):
    from dice.tl._latent import count_matrix, x_holds_counts

    ref = data[0]
    assert x_holds_counts(ref.layers["counts"])
    assert not x_holds_counts(ref.X)  # log-normalised: fractional values
    assert not x_holds_counts(sp.csr_matrix(ref.shape, dtype=np.float32))  # all zero
    shifted = ref.layers["counts"].copy()
    shifted.data[-1] = 0.5  # one fractional value in the last row
    assert not x_holds_counts(shifted)
    negative = ref.layers["counts"].copy()
    negative.data[0] = -1.0
    assert not x_holds_counts(negative)
    raw = ad.AnnData(ref.layers["counts"].copy())
    assert count_matrix(raw)[1] == "X"
    assert count_matrix(raw, "some_layer")[0] is None  # a named layer is never read as counts from X


def test_a_cell_without_counts_gets_the_prior_not_an_error(data, model):
    _, counts, labels = data
    counts = counts.copy()
    counts[3] = 0.0  # e.g. a deeply thinned cell
    query = _adata(counts, labels)
    with pytest.warns(UserWarning, match="1 cells have no counts"):
        dice.tl.denoise(query, model, settings=SETTINGS, seed=0, progress=False)
    noise = query.obs["dice_noise_sd"].to_numpy()
    assert np.all(np.isfinite(query.obsm["X_dice"])) and np.all(np.isfinite(noise))
    assert noise[3] > 5 * np.median(noise)  # no information: far wider than any measured cell
    assert query.obs["dice_uncertainty"].to_numpy()[3] > np.percentile(query.obs["dice_uncertainty"], 99)


def test_count_evidence_is_stacked_and_can_be_switched_off(data, model):
    ref, counts, labels = data
    shallow = _adata(_thin(counts, 0.05, seed=4), labels)
    out = {}
    for evidence in (True, False):
        with pytest.warns(DepthWarning), _outside_allowed():
            out[evidence] = _transfer(shallow, ref, model, count_evidence=evidence)
    on, off = (out[e].uns["dice_label_transfer"] for e in (True, False))
    assert on["count_evidence"] is True and off["count_evidence"] is False
    assert on["count_weight"] >= 0.0 and off["count_weight"] == 0.0
    accuracy = {e: np.mean(o.obs["dice_label"].astype(str).to_numpy() == labels) for e, o in out.items()}
    assert accuracy[True] >= accuracy[False] - 0.03, accuracy
    p = out[True].obsm["dice_label_probabilities"].to_numpy()
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_array_equal(shallow.layers["counts"].toarray(), _thin(counts, 0.05, seed=4))  # untouched


def test_count_profiles_calibration_cells_unseen_query_sees_every_cell(data, model, monkeypatch):
    # the stacking weights are fitted on calibration cells scored by profiles that never saw them; the query is
    # scored by profiles of every labelled reference cell, as its latent classifier indexes every one of them
    import dice.tl._transfer as transfer_module

    built, scored = [], []
    real_profiles, real_loglik = transfer_module.CountProfiles, transfer_module.query_loglik
    real_split = real_profiles.split

    def spy_split(counts, alignment, present, rows, codes, n_classes, groups, owner, first):
        built.append((np.asarray(rows), np.asarray(first), groups, owner))
        return real_split(counts, alignment, present, rows, codes, n_classes, groups, owner, first=first)

    def spy_loglik(model_, var_names, counts, profiles):
        scored.append(profiles)
        return real_loglik(model_, var_names, counts, profiles)

    monkeypatch.setattr(real_profiles, "split", spy_split)
    monkeypatch.setattr(transfer_module, "query_loglik", spy_loglik)
    ref, counts, labels = data
    with pytest.warns(DepthWarning), _outside_allowed():
        _transfer(_adata(_thin(counts, 0.05, seed=4), labels), ref, model)
    assert len(built) == 1 and len(scored) == 1
    ((everyone, first, groups, owner),) = built
    assert 0 < len(first) < ref.n_obs  # the calibration cells are left out of the first set
    np.testing.assert_array_equal(np.sort(everyone), np.arange(ref.n_obs))  # every reference cell is labelled here
    query_profiles = scored[0]
    assert query_profiles.n_classes == 2
    assert len(owner) > 2  # the default count_profiles splits the labels into sub-profiles
    expected = real_profiles(
        ref.layers["counts"], *_alignment_and_present(ref, model), everyone, _codes(ref)[everyone], 2, groups, owner
    )
    np.testing.assert_allclose(query_profiles.log_profiles, expected.log_profiles)


def _alignment_and_present(ref, model):
    from dice.pp._align import align_genes

    alignment = align_genes(ref.var_names, model.embedding.genes, min_shared=0.0)
    return alignment, alignment.present


def _codes(ref):
    return np.unique(ref.obs["label"].astype(str).to_numpy(), return_inverse=True)[1]


def test_posterior_draws_train_the_prior_on_the_latent_spread():
    """On a shallow reference the count measurements are wider than the latent states (noise on top); one
    posterior draw per cell has about the states' own spread, which the deep measurement of the same cells shows."""
    from dice.pp._linear import LinearEmbedding
    from dice.tl._train import _count_latents

    counts, labels = _simulate(600, seed=4, depth=3000.0)
    deep = _adata(counts, labels)
    embedding = LinearEmbedding.fit(deep.X, deep.var_names, n_comps=3, max_value=10.0)
    shallow = sp.csr_matrix(_thin(counts, 0.003, seed=5))  # ~9 counts per cell

    def spread(values, draw, seed=0):
        _, latents, _ = _count_latents(embedding, values, None, draw=draw, seed=seed)
        return latents, float(np.sum(np.var(latents, axis=0)))

    _, truth = spread(sp.csr_matrix(counts), "measurement")
    _, measured = spread(shallow, "measurement")
    draws, drawn = spread(shallow, "posterior_draw")
    assert measured > 1.3 * truth  # the noise widens the measurements
    assert abs(drawn - truth) < 0.5 * abs(measured - truth)
    np.testing.assert_array_equal(draws, spread(shallow, "posterior_draw")[0])  # seeded
    assert not np.array_equal(draws, spread(shallow, "posterior_draw", seed=1)[0])
    with pytest.raises(DiceInputError, match="count_latents"):
        TrainSettings(count_latents="modes")
