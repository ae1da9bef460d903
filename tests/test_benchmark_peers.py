"""Tests of the benchmark peer wrappers (benchmarks/peers.py).

PCA, kNN smoothing, NMF and the kNN label transfer need only the core dependencies and always run; the
wrappers around optional peer packages (magic-impute, halra, scvi-tools, harmonypy, celltypist, scanpy's
ingest) are skipped when those packages are absent (CI installs only the core package; see
benchmarks/install_peers.sh).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
peers = pytest.importorskip("peers")


def _has(mod: str) -> bool:
    return importlib.util.find_spec(mod) is not None


def _needs(mod: str):
    return pytest.mark.skipif(not _has(mod), reason=f"peer package {mod!r} not installed")


@pytest.fixture(scope="module")
def toy():
    """Three well-separated Poisson cell types, 150 genes; the query has a gene that is zero everywhere."""
    rng = np.random.default_rng(0)
    n_types, n_genes = 3, 150
    base = rng.gamma(2.0, 1.0, size=(n_types, n_genes))
    for t in range(n_types):
        base[t, t * 20 : (t + 1) * 20] *= 8.0

    def draw(n):
        y = np.arange(n) % n_types
        lib = rng.uniform(0.7, 1.3, size=(n, 1))
        return rng.poisson(base[y] * lib).astype(np.float32), y.astype(str)

    cr, yr = draw(330)
    cq, yq = draw(120)
    cq[:, -1] = 0.0
    ref, query = peers.prepare_split(cr, cq, n_comps=10, ref_labels=yr, query_labels=yq)
    return ref, query, yr, yq


def _ari(E, y):
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    return adjusted_rand_score(y, KMeans(3, n_init=5, random_state=0).fit_predict(E))


def test_prepare_split_uses_reference_statistics(toy):
    ref, query, _, _ = toy
    assert ref.X.dtype == np.float32 and ref.X.shape == (330, 150) and query.X.shape == (120, 150)
    np.testing.assert_allclose(ref.X.mean(axis=0), 0, atol=1e-4)
    V = ref.loadings
    np.testing.assert_allclose(V.T @ V, np.eye(V.shape[1]), atol=1e-4)
    np.testing.assert_allclose(query.X, np.clip((query.lognorm - ref.mean) / ref.std, -10, 10), atol=1e-5)


def test_pca_is_projection_on_reference_loadings(toy):
    ref, query, _, yq = toy
    E = peers.embed_pca(ref, query, n_comps=5, seed=0)
    np.testing.assert_allclose(E, query.X @ ref.loadings[:, :5], rtol=1e-5, atol=1e-5)
    assert _ari(E, yq) > 0.9


def test_dict_input_is_accepted(toy):
    ref, query, _, _ = toy
    as_dict = lambda s: {k: getattr(s, k) for k in ("X", "lognorm", "counts", "loadings", "mean", "std")}  # noqa: E731
    np.testing.assert_array_equal(
        peers.embed_pca(as_dict(ref), as_dict(query), n_comps=4), peers.embed_pca(ref, query, n_comps=4)
    )


def test_knn_smoothing_includes_the_cell_itself(toy):
    ref, query, _, _ = toy
    U = peers.embed_pca(ref, query, n_comps=6)
    np.testing.assert_allclose(peers.embed_knn(ref, query, n_comps=6, k=1), U, atol=1e-6)
    E = peers.embed_knn(ref, query, n_comps=6, k=5)
    assert E.shape == U.shape and not np.allclose(E, U)
    # k = all cells: every cell becomes the query mean
    E_all = peers.embed_knn(ref, query, n_comps=6, k=U.shape[0])
    np.testing.assert_allclose(E_all, np.broadcast_to(U.mean(axis=0), U.shape), atol=1e-4)


def test_nmf_is_seeded_and_rescaled(toy):
    ref, query, _, _ = toy
    a = peers.embed_nmf(ref, query, n_comps=4, seed=1, max_iter=1000)
    b = peers.embed_nmf(ref, query, n_comps=4, seed=1, max_iter=1000)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (120, 4) and (a >= 0).all()
    q = peers.embed_nmf(ref, query, n_comps=4, seed=1, fit_on="query", max_iter=1000)
    assert q.shape == (120, 4)


def test_transfer_knn_pca(toy):
    import anndata as ad

    ref, query, yr, yq = toy
    ra = ad.AnnData(ref.lognorm, obs={"label": yr})
    qa = ad.AnnData(query.lognorm, obs={"label": yq})
    res = peers.transfer_knn_pca(ra, qa, "label", n_comps=5, k=5)
    assert np.mean(res.labels == yq) > 0.95
    assert res.confidence.shape == (120,) and np.all((res.confidence > 0) & (res.confidence <= 1))
    np.testing.assert_allclose(res.probabilities.sum(axis=1), 1.0)


@_needs("magic")
def test_magic_seeded(toy):
    ref, query, _, _ = toy
    a = peers.embed_magic(ref, query, n_comps=6, seed=3)
    b = peers.embed_magic(ref, query, n_comps=6, seed=3)
    assert a.shape == (120, 6)
    np.testing.assert_allclose(a, b)


@_needs("halra")
def test_alra_keeps_genes_and_is_seeded(toy):
    ref, query, _, _ = toy
    for proj in ("own", "reference"):
        a = peers.embed_alra(ref, query, n_comps=5, seed=2, projection=proj)
        b = peers.embed_alra(ref, query, n_comps=5, seed=2, projection=proj)
        assert a.shape == (120, 5) and np.isfinite(a).all()
        np.testing.assert_allclose(a, b)


@_needs("harmonypy")
def test_harmony_returns_query_rows(toy):
    ref, query, _, _ = toy
    a = peers.embed_harmony(ref, query, n_comps=6, seed=0)
    b = peers.embed_harmony(ref, query, n_comps=6, seed=0)
    assert a.shape == (120, 6)
    np.testing.assert_allclose(a, b)


@pytest.mark.slow
@_needs("scvi")
def test_scvi_seeded(toy):
    ref, query, _, _ = toy
    a = peers.embed_scvi(ref, query, n_comps=10, seed=0, max_epochs=2)
    b = peers.embed_scvi(ref, query, n_comps=10, seed=0, max_epochs=2)
    assert a.shape == (120, 10)
    np.testing.assert_allclose(a, b, atol=1e-5)


@_needs("celltypist")
def test_transfer_celltypist(toy):
    import anndata as ad

    ref, query, yr, yq = toy
    ra = ad.AnnData(ref.lognorm, obs={"label": yr})
    qa = ad.AnnData(query.lognorm, obs={"label": yq})
    ra.var_names = qa.var_names = [f"g{i}" for i in range(ra.n_vars)]
    res = peers.transfer_celltypist(ra, qa, "label", seed=0)
    assert np.mean(res.labels == yq) > 0.95
    assert res.probabilities.shape == (120, 3)


def _ingest_works() -> bool:
    """scanpy.tl.ingest breaks with pynndescent >= 0.7 (benchmarks/install_peers.sh pins <0.7)."""
    if not (_has("pynndescent") and _has("scanpy")):
        return False
    from importlib.metadata import version

    major, minor = (int(x) for x in version("pynndescent").split(".")[:2])
    return (major, minor) < (0, 7)


@pytest.mark.slow
@pytest.mark.skipif(not _ingest_works(), reason="scanpy ingest needs pynndescent<0.7 (peer venv)")
def test_transfer_ingest(toy):
    import anndata as ad

    ref, query, yr, yq = toy
    ra = ad.AnnData(ref.lognorm, obs={"label": yr})
    qa = ad.AnnData(query.lognorm, obs={"label": yq})
    ra.var_names = qa.var_names = [f"g{i}" for i in range(ra.n_vars)]
    res = peers.transfer_ingest(ra, qa, "label", n_comps=5)
    assert np.mean(res.labels == yq) > 0.95 and res.confidence is None
