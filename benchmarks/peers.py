"""Peer methods for the DICE real-data benchmark and for label transfer.

Every embedding peer has the same signature::

    embed_<method>(ref, query, *, n_comps, seed, **kw) -> np.ndarray   # (query cells x dims), float32

where ``ref`` / ``query`` are :class:`PeerSplit` objects (or dicts with the same keys) built by
:func:`prepare_split`. Both splits share the gene order; ``X`` is the log-normalised expression standardised
with the *reference* mean / std (clipped at ``max_value``), ``lognorm`` the non-negative log-normalised
expression, ``counts`` the raw counts, and the reference additionally carries ``loadings`` (genes x k, the
reference PCA, orthonormal columns), ``mean`` and ``std``. The reference PCA scores of a split are
``split.X @ ref.loadings``. Label-transfer peers take AnnData objects (``transfer_*``) and return a
:class:`TransferResult` (labels, and per-cell confidence / class probabilities where the tool gives them).

Install them with ``bash benchmarks/install_peers.sh`` (venv ``.venv-peers``). All are seeded: the same
``seed`` gives the same output (checked by ``tests/test_benchmark_peers.py`` where the tools are present).

What each peer computes, and the choices made
----------------------------------------------
pca
    ``query.X @ ref.loadings[:, :n_comps]`` -- the query projected on the reference loadings (DICE's own
    starting point, ``u = V^T x``). Deterministic; ``seed`` unused.
knn (k = 5, 10, 15)
    The reference-loading PCA of the query, each cell replaced by the mean of its k nearest neighbours in that
    space (Euclidean, exact search, **the cell itself counts as one of the k**), as in the paper's appendix I.
magic
    magic-impute on the query's reference-loading PCA scores (the paper: "computed PCA scores ... and supplied
    them directly to MAGIC"); ``n_pca=None`` because the input is already a PCA, MAGIC defaults otherwise
    (knn=5, decay=1, t=3). Output: the smoothed scores (n_comps dims).
alra
    halra (a port of ALRA) on the query's log-normalised expression (ALRA needs zero-preserving, non-negative
    input, so not the standardised matrix); rank chosen by ALRA's own singular-value-gap rule unless ``rank``
    is given. Embedding, ``projection=``:
    ``"own"`` (default, the paper: "50 PC scores of the denoised matrix") -- standardise the imputed matrix
    per gene (clip 10) and take its own top ``n_comps`` PCs; ``"reference"`` -- standardise with the
    reference statistics and project on the reference loadings.
nmf
    scikit-learn NMF on the non-negative log-normalised expression (NMF needs non-negative input, so not the
    standardised matrix), ``n_components = n_comps``, init ``nndsvda``. ``fit_on="reference"`` (default; the
    same train/test discipline as PCA: H fitted on the reference, the query's W by ``transform``) or
    ``"query"`` (fit on the query alone). W has an arbitrary per-component scale (W D, D^-1 H is the same
    fit), so W is rescaled by the row norms of H: ``W * ||H_k||`` (without this, ARI ~0.04).
scvi
    scvi-tools SCVI, 10-d latent, trained on the **reference raw counts only**, then
    ``get_latent_representation`` (posterior mean) on the query's raw counts with the same genes -- no
    query-specific training (no scArches surgery). Default ``max_epochs=60`` (~1 min for ~7,800 reference
    cells x 500 genes on one thread); ``seed`` sets ``scvi.settings.seed``.
harmony
    harmonypy on the concatenated reference+query reference-loading PCA, batch key = dataset of origin
    ("ref" / "query"; combined with the splits' own ``batch`` labels when both have them); the query rows of
    the corrected embedding are returned.

Label-transfer peers
--------------------
transfer_knn_pca
    kNN classifier (k=15, uniform weights) on the reference PCA; confidence = the winning vote fraction,
    probabilities = vote fractions.
transfer_ingest
    ``scanpy.tl.ingest`` (PCA of the reference with ``n_comps`` PCs, reference neighbour graph with 15
    neighbours, labels mapped by ingest's kNN majority); ingest exposes no per-cell confidence -> ``None``.
transfer_celltypist
    CellTypist ``train(use_SGD=True, feature_selection=False, check_expression=False, random_state=seed)`` on
    the reference's log-normalised expression (no pretrained model is downloaded), ``annotate`` on the query
    (``majority_voting=False``); confidence = the maximum class probability.

Where each tool breaks here (Python 3.11, torch 2.13.0 CPU, numpy 2.4, scikit-learn 1.9) and the workaround
-------------------------------------------------------------------------------------------------------------
* Any package with an open ``torch`` requirement (scvi-tools, lightning, dice) makes pip fetch a multi-GB CUDA
  build: install ``torch==2.13.0`` first and everything else with ``-c constraints.txt``.
* magic-impute 3.0.0 pulls scprep 1.1.0, which pins ``pandas<2.1``; that pandas does not import with numpy 2.
  Reinstall ``pandas==2.3.3`` afterwards (pip then reports the scprep pin as a conflict; MAGIC works).
* ALRA: ``pyALRA`` / ``alra`` are not on PyPI; ``halra`` 0.1.0 is used, installed with ``--no-deps``. halra
  silently drops all-zero genes and cells (common in a small query): :func:`embed_alra` re-inserts them as
  zeros so the gene order is kept. Its automatic rank needs >= 101 cells and genes (rank fixed otherwise).
* scanpy 1.11's ``harmony_integrate`` wrapper breaks on harmonypy 2.x (which returns cells x dims): harmonypy
  is called directly.
* ``scanpy.tl.ingest`` fails with pynndescent 0.7.0: ``pynndescent<0.7`` (0.6.0 resolved).
* CellTypist 1.7.1: its default trainer (LogisticRegression ``multi_class="ovr"``) breaks on scikit-learn
  >= 1.8, which removed that argument: ``use_SGD=True`` works. Its expression check expects cells
  log1p-normalised to 1e4 over *all* genes; with a gene subset it is switched off
  (``check_expression=False``).
* scvi-tools 1.4.2 is the newest for Python 3.11; works with torch 2.13 CPU without jax; needs raw counts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = [
    "EMBEDDERS",
    "PeerSplit",
    "TransferResult",
    "embed_alra",
    "embed_harmony",
    "embed_knn",
    "embed_magic",
    "embed_nmf",
    "embed_pca",
    "embed_scvi",
    "prepare_split",
    "set_single_thread",
    "transfer_celltypist",
    "transfer_ingest",
    "transfer_knn_pca",
]


def set_single_thread() -> None:
    """Pin OpenMP / BLAS / numba / torch to one thread (call before the heavy imports)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass


# ----------------------------------------------------------------------------------------------------------
# data containers
# ----------------------------------------------------------------------------------------------------------
@dataclass
class PeerSplit:
    """One side (reference or query) of a benchmark split, genes in the same order on both sides."""

    X: np.ndarray  # standardised with reference statistics, float32, cells x genes
    lognorm: np.ndarray  # non-negative log-normalised expression, float32, cells x genes
    counts: np.ndarray | sp.spmatrix | None = None  # raw counts (scVI)
    genes: np.ndarray | None = None
    labels: np.ndarray | None = None
    batch: np.ndarray | None = None
    loadings: np.ndarray | None = None  # reference only: genes x k, orthonormal columns
    mean: np.ndarray | None = None  # reference only: per-gene mean of lognorm
    std: np.ndarray | None = None  # reference only: per-gene std of lognorm
    max_value: float | None = 10.0
    extra: dict = field(default_factory=dict)

    @property
    def n_obs(self) -> int:
        return int(self.X.shape[0])


def _as_split(obj: PeerSplit | Mapping[str, Any]) -> PeerSplit:
    if isinstance(obj, PeerSplit):
        return obj
    if isinstance(obj, Mapping):
        known = set(PeerSplit.__dataclass_fields__)
        kw = {k: v for k, v in obj.items() if k in known}
        kw["extra"] = {k: v for k, v in obj.items() if k not in known}
        return PeerSplit(**kw)
    raise TypeError(f"expected PeerSplit or mapping, got {type(obj).__name__}")


def _dense(a) -> np.ndarray:
    return np.asarray(a.toarray() if sp.issparse(a) else a)


def _lognormalise(counts, target_sum: float = 1e4) -> np.ndarray:
    c = _dense(counts).astype(np.float64)
    lib = c.sum(axis=1, keepdims=True)
    lib[lib == 0] = 1.0
    return np.log1p(c / lib * target_sum).astype(np.float32)


def _standardise(lognorm: np.ndarray, mean: np.ndarray, std: np.ndarray, max_value: float | None) -> np.ndarray:
    z = (lognorm - mean) / std
    if max_value is not None:
        z = np.clip(z, -max_value, max_value)
    return z.astype(np.float32)


def prepare_split(
    ref_counts,
    query_counts,
    *,
    n_comps: int = 50,
    genes=None,
    ref_labels=None,
    query_labels=None,
    ref_batch=None,
    query_batch=None,
    target_sum: float = 1e4,
    max_value: float | None = 10.0,
) -> tuple[PeerSplit, PeerSplit]:
    """Build the reference and query :class:`PeerSplit` from raw counts (cells x genes, same genes).

    normalize_total(``target_sum``) + log1p per cell, per-gene mean / std of the reference (std of a constant
    gene set to 1), both sides standardised with them and clipped at ``max_value``; the loadings are the top
    ``n_comps`` right singular vectors of the standardised reference (deterministic full SVD, sign fixed so
    the largest-magnitude entry of each column is positive).
    """
    ref_ln = _lognormalise(ref_counts, target_sum)
    q_ln = _lognormalise(query_counts, target_sum)
    mean = ref_ln.mean(axis=0)
    std = ref_ln.std(axis=0)
    std[std == 0] = 1.0
    Xr = _standardise(ref_ln, mean, std, max_value)
    Xq = _standardise(q_ln, mean, std, max_value)
    Xc = Xr - Xr.mean(axis=0)
    _, _, vt = np.linalg.svd(Xc.astype(np.float64), full_matrices=False)
    V = vt[:n_comps].T
    signs = np.sign(V[np.abs(V).argmax(axis=0), np.arange(V.shape[1])])
    V = (V * signs).astype(np.float32)
    g = None if genes is None else np.asarray(genes)
    ref = PeerSplit(
        X=Xr,
        lognorm=ref_ln,
        counts=ref_counts,
        genes=g,
        labels=None if ref_labels is None else np.asarray(ref_labels),
        batch=None if ref_batch is None else np.asarray(ref_batch),
        loadings=V,
        mean=mean,
        std=std,
        max_value=max_value,
    )
    query = PeerSplit(
        X=Xq,
        lognorm=q_ln,
        counts=query_counts,
        genes=g,
        labels=None if query_labels is None else np.asarray(query_labels),
        batch=None if query_batch is None else np.asarray(query_batch),
        max_value=max_value,
    )
    return ref, query


def _loadings(ref: PeerSplit, n_comps: int) -> np.ndarray:
    if ref.loadings is None:
        raise ValueError("the reference split needs `loadings` (genes x k)")
    if n_comps > ref.loadings.shape[1]:
        raise ValueError(f"n_comps={n_comps} > {ref.loadings.shape[1]} reference loadings")
    return np.asarray(ref.loadings[:, :n_comps], dtype=np.float32)


def _pca_scores(split: PeerSplit, ref: PeerSplit, n_comps: int) -> np.ndarray:
    return (np.asarray(split.X, dtype=np.float32) @ _loadings(ref, n_comps)).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------
# embedding peers
# ----------------------------------------------------------------------------------------------------------
def embed_pca(ref, query, *, n_comps: int, seed: int = 0, **kw) -> np.ndarray:
    """Query projected on the reference PCA loadings (``seed`` unused: deterministic)."""
    ref, query = _as_split(ref), _as_split(query)
    return _pca_scores(query, ref, n_comps)


def embed_knn(ref, query, *, n_comps: int, seed: int = 0, k: int = 10, **kw) -> np.ndarray:
    """kNN smoothing: mean of each query cell's k nearest neighbours (itself included) in query PCA space."""
    from sklearn.neighbors import NearestNeighbors

    ref, query = _as_split(ref), _as_split(query)
    U = _pca_scores(query, ref, n_comps)
    k = min(int(k), U.shape[0])
    nn = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(U)
    _, idx = nn.kneighbors(U)  # the query point itself is returned (distance 0) among the k
    return U[idx].mean(axis=1).astype(np.float32)


def embed_magic(
    ref, query, *, n_comps: int, seed: int = 0, knn: int = 5, t: int | str = 3, decay: float = 1, **kw
) -> np.ndarray:
    """MAGIC diffusion of the query's reference-loading PCA scores (the paper's use)."""
    import magic

    ref, query = _as_split(ref), _as_split(query)
    U = _pca_scores(query, ref, n_comps).astype(np.float64)
    op = magic.MAGIC(
        knn=knn, t=t, decay=decay, n_pca=None, solver="exact", n_jobs=1, random_state=seed, verbose=0, **kw
    )
    out = op.fit_transform(U)
    return np.asarray(out, dtype=np.float32)


def embed_alra(
    ref,
    query,
    *,
    n_comps: int,
    seed: int = 0,
    projection: str = "own",
    rank: int | None = None,
    n_iter: int = 12,
    quantile_prob: float = 0.001,
    **kw,
) -> np.ndarray:
    """ALRA (halra) imputation of the query's log-normalised expression, then PCA (see module docstring)."""
    from halra import halra

    ref, query = _as_split(ref), _as_split(query)
    L = _dense(query.lognorm).astype(np.float64)
    n, g = L.shape
    if rank is None and min(n, g) <= 100:
        rank = max(1, min(n_comps, min(n, g) - 1))  # halra's rank rule needs > 100 cells and genes
    cells = np.array([f"c{i}" for i in range(n)])
    genes = np.array([f"g{j}" for j in range(g)])
    imp, kept_cells, kept_genes = halra(
        sp.csr_matrix(L),
        cells,
        genes,
        normalize=False,
        n_iter=n_iter,
        quantile_prob=quantile_prob,
        matrix_rank=rank,
        seed=seed,
        verbose=False,
    )
    full = np.zeros((n, g), dtype=np.float64)
    ri = np.array([int(c[1:]) for c in np.asarray(kept_cells)])
    ci = np.array([int(c[1:]) for c in np.asarray(kept_genes)])
    full[np.ix_(ri, ci)] = _dense(imp)
    if projection == "reference":
        Z = _standardise(full.astype(np.float32), ref.mean, ref.std, ref.max_value)
        return (Z @ _loadings(ref, n_comps)).astype(np.float32)
    if projection != "own":
        raise ValueError("projection must be 'own' or 'reference'")
    mu = full.mean(axis=0)
    sd = full.std(axis=0)
    sd[sd == 0] = 1.0
    Z = np.clip((full - mu) / sd, -10, 10)
    Z -= Z.mean(axis=0)
    _, _, vt = np.linalg.svd(Z, full_matrices=False)
    V = vt[:n_comps].T
    V *= np.sign(V[np.abs(V).argmax(axis=0), np.arange(V.shape[1])])
    return (Z @ V).astype(np.float32)


def embed_nmf(
    ref,
    query,
    *,
    n_comps: int,
    seed: int = 0,
    fit_on: str = "reference",
    max_iter: int = 400,
    init: str = "nndsvda",
    **kw,
) -> np.ndarray:
    """NMF on non-negative log-normalised expression, W rescaled by the row norms of H."""
    from sklearn.decomposition import NMF

    ref, query = _as_split(ref), _as_split(query)
    Lq = _dense(query.lognorm).astype(np.float32)
    model = NMF(n_components=n_comps, init=init, random_state=seed, max_iter=max_iter, **kw)
    if fit_on == "reference":
        model.fit(_dense(ref.lognorm).astype(np.float32))
        W = model.transform(Lq)
    elif fit_on == "query":
        W = model.fit_transform(Lq)
    else:
        raise ValueError("fit_on must be 'reference' or 'query'")
    H = model.components_
    return (W * np.linalg.norm(H, axis=1)[None, :]).astype(np.float32)


def embed_scvi(
    ref,
    query,
    *,
    n_comps: int = 10,
    seed: int = 0,
    n_latent: int | None = None,
    max_epochs: int = 60,
    batch_size: int = 128,
    **kw,
) -> np.ndarray:
    """scVI trained on the reference raw counts; latent posterior mean of the query (same genes).

    ``n_latent`` defaults to 10 (the paper's choice) whatever ``n_comps`` is; pass ``n_latent=n_comps`` to
    match.
    """
    import anndata as ad
    import scvi
    import torch

    ref, query = _as_split(ref), _as_split(query)
    if ref.counts is None or query.counts is None:
        raise ValueError("scVI needs raw counts on both splits")
    torch.set_num_threads(1)
    scvi.settings.seed = seed
    scvi.settings.dl_num_workers = 0
    scvi.settings.verbosity = 30  # warnings only
    n_latent = 10 if n_latent is None else int(n_latent)

    def _adata(counts):
        c = sp.csr_matrix(_dense(counts).astype(np.float32)) if not sp.issparse(counts) else counts.astype(np.float32)
        a = ad.AnnData(X=c)
        a.var_names = [f"g{j}" for j in range(c.shape[1])]
        a.obs_names = [f"c{i}" for i in range(c.shape[0])]
        return a

    a_ref, a_q = _adata(ref.counts), _adata(query.counts)
    scvi.model.SCVI.setup_anndata(a_ref)
    model = scvi.model.SCVI(a_ref, n_latent=n_latent, **kw)
    model.train(
        max_epochs=max_epochs,
        batch_size=batch_size,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        early_stopping=False,
    )
    scvi.model.SCVI.setup_anndata(a_q)
    z = model.get_latent_representation(adata=a_q, give_mean=True)
    return np.asarray(z, dtype=np.float32)


def embed_harmony(ref, query, *, n_comps: int, seed: int = 0, theta: float | None = None, **kw) -> np.ndarray:
    """Harmony on concatenated ref+query PCA (batch = dataset of origin); the query rows."""
    import harmonypy

    ref, query = _as_split(ref), _as_split(query)
    Ur, Uq = _pca_scores(ref, ref, n_comps), _pca_scores(query, ref, n_comps)
    origin = np.array(["ref"] * Ur.shape[0] + ["query"] * Uq.shape[0])
    meta = pd.DataFrame({"origin": origin})
    vars_use = ["origin"]
    if ref.batch is not None and query.batch is not None:
        meta["batch"] = np.concatenate([np.asarray(ref.batch).astype(str), np.asarray(query.batch).astype(str)])
        vars_use = ["origin", "batch"]
    data = np.vstack([Ur, Uq]).astype(np.float64)
    ho = harmonypy.run_harmony(data, meta, vars_use, theta=theta, random_state=seed, verbose=False, **kw)
    Z = np.asarray(ho.Z_corr)
    if Z.shape[0] != data.shape[0]:  # older harmonypy returns dims x cells
        Z = Z.T
    return Z[Ur.shape[0] :].astype(np.float32)


EMBEDDERS: dict[str, Callable[..., np.ndarray]] = {
    "pca": embed_pca,
    "knn5": lambda r, q, **kw: embed_knn(r, q, k=5, **kw),
    "knn10": lambda r, q, **kw: embed_knn(r, q, k=10, **kw),
    "knn15": lambda r, q, **kw: embed_knn(r, q, k=15, **kw),
    "magic": embed_magic,
    "alra": embed_alra,
    "alra_refproj": lambda r, q, **kw: embed_alra(r, q, projection="reference", **kw),
    "nmf": embed_nmf,
    "nmf_query": lambda r, q, **kw: embed_nmf(r, q, fit_on="query", **kw),
    "scvi": embed_scvi,
    "harmony": embed_harmony,
}


# ----------------------------------------------------------------------------------------------------------
# label-transfer peers
# ----------------------------------------------------------------------------------------------------------
@dataclass
class TransferResult:
    labels: np.ndarray  # predicted label per query cell
    confidence: np.ndarray | None = None  # per-cell confidence in [0, 1], None if the tool has none
    probabilities: pd.DataFrame | None = None  # query cells x classes
    seconds: float = 0.0


def _check_same_genes(ref_adata, query_adata) -> None:
    if list(ref_adata.var_names) != list(query_adata.var_names):
        raise ValueError("reference and query must have the same genes in the same order")


def _std_pca(ref_adata, query_adata, n_comps: int, max_value: float | None = 10.0):
    """Reference-statistics standardisation and reference PCA of ``.X`` (log-normalised) of both."""
    Lr = _dense(ref_adata.X).astype(np.float32)
    Lq = _dense(query_adata.X).astype(np.float32)
    mean, std = Lr.mean(axis=0), Lr.std(axis=0)
    std[std == 0] = 1.0
    Xr, Xq = _standardise(Lr, mean, std, max_value), _standardise(Lq, mean, std, max_value)
    Xc = Xr - Xr.mean(axis=0)
    _, _, vt = np.linalg.svd(Xc.astype(np.float64), full_matrices=False)
    V = vt[:n_comps].T.astype(np.float32)
    return Xr @ V, Xq @ V


def transfer_knn_pca(
    ref_adata,
    query_adata,
    label_key: str,
    *,
    n_comps: int = 50,
    k: int = 15,
    use_rep: str | None = None,
    seed: int = 0,
) -> TransferResult:
    """kNN vote on the reference PCA. ``.X`` must be log-normalised; or give ``use_rep`` (an ``obsm`` key
    present on both) to vote in an existing embedding (e.g. DICE's)."""
    from sklearn.neighbors import KNeighborsClassifier

    t0 = time.perf_counter()
    if use_rep is None:
        _check_same_genes(ref_adata, query_adata)
        Ur, Uq = _std_pca(ref_adata, query_adata, n_comps)
    else:
        Ur, Uq = np.asarray(ref_adata.obsm[use_rep]), np.asarray(query_adata.obsm[use_rep])
    y = np.asarray(ref_adata.obs[label_key]).astype(str)
    clf = KNeighborsClassifier(n_neighbors=k, algorithm="brute").fit(Ur, y)
    P = clf.predict_proba(Uq)
    lab = clf.classes_[P.argmax(axis=1)]
    probs = pd.DataFrame(P, index=query_adata.obs_names, columns=clf.classes_)
    return TransferResult(np.asarray(lab), P.max(axis=1), probs, time.perf_counter() - t0)


def transfer_ingest(
    ref_adata, query_adata, label_key: str, *, n_comps: int = 50, n_neighbors: int = 15, seed: int = 0
) -> TransferResult:
    """``scanpy.tl.ingest`` label transfer (``.X`` log-normalised; standardised here with reference stats)."""
    import anndata as ad
    import scanpy as sc

    t0 = time.perf_counter()
    _check_same_genes(ref_adata, query_adata)
    Lr = _dense(ref_adata.X).astype(np.float32)
    Lq = _dense(query_adata.X).astype(np.float32)
    mean, std = Lr.mean(axis=0), Lr.std(axis=0)
    std[std == 0] = 1.0
    r = ad.AnnData(_standardise(Lr, mean, std, 10.0), obs=ref_adata.obs[[label_key]].copy())
    q = ad.AnnData(_standardise(Lq, mean, std, 10.0), obs=pd.DataFrame(index=query_adata.obs_names.copy()))
    r.var_names = q.var_names = list(ref_adata.var_names)
    r.obs[label_key] = r.obs[label_key].astype(str).astype("category")
    sc.pp.pca(r, n_comps=n_comps, svd_solver="arpack", random_state=seed)
    sc.pp.neighbors(r, n_neighbors=n_neighbors, random_state=seed)
    sc.tl.ingest(q, r, obs=label_key, embedding_method="pca")
    lab = np.asarray(q.obs[label_key]).astype(str)
    return TransferResult(lab, None, None, time.perf_counter() - t0)


def transfer_celltypist(
    ref_adata,
    query_adata,
    label_key: str,
    *,
    seed: int = 0,
    alpha: float = 1e-4,
    max_iter: int | None = None,
    **kw,
) -> TransferResult:
    """CellTypist trained on the reference (SGD logistic regression), no pretrained download.

    ``.X`` must be log-normalised (normalize_total 1e4 + log1p); CellTypist scales genes itself.
    """
    import anndata as ad
    import celltypist

    t0 = time.perf_counter()
    _check_same_genes(ref_adata, query_adata)
    r = ad.AnnData(_dense(ref_adata.X).astype(np.float32), obs=ref_adata.obs[[label_key]].copy())
    q = ad.AnnData(_dense(query_adata.X).astype(np.float32), obs=pd.DataFrame(index=query_adata.obs_names.copy()))
    r.var_names = q.var_names = list(ref_adata.var_names)
    r.obs[label_key] = r.obs[label_key].astype(str)
    # celltypist's optional cell subsampling draws from numpy's global generator
    np.random.seed(seed)  # noqa: NPY002
    model = celltypist.train(
        r,
        labels=label_key,
        use_SGD=True,
        feature_selection=False,
        check_expression=False,
        alpha=alpha,
        max_iter=max_iter,
        n_jobs=1,
        random_state=seed,
        **kw,
    )
    pred = celltypist.annotate(q, model=model, majority_voting=False)
    lab = np.asarray(pred.predicted_labels["predicted_labels"]).astype(str)
    P = pred.probability_matrix
    return TransferResult(lab, P.max(axis=1).to_numpy(), P, time.perf_counter() - t0)


TRANSFERS: dict[str, Callable[..., TransferResult]] = {
    "knn_pca": transfer_knn_pca,
    "ingest": transfer_ingest,
    "celltypist": transfer_celltypist,
}
