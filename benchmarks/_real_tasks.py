"""Reference → query tasks of the real-data benchmark (``benchmarks/real.py``): load, split, preprocess.

Every task yields a :class:`RealTask`: a reference and a query AnnData with the *same genes in the same
order*, ``X`` log-normalised (``normalize_total(1e4)`` + ``log1p`` over the selected genes), raw counts in
``layers["counts"]``, and the evaluation labels of the query (``NaN`` for cells that are excluded from
evaluation but kept everywhere else).

Preprocessing (the paper's appendix H recipe, applied so that the query never informs the reference):

1. Cell QC on each side separately (:func:`dice.pp.recipe_paper`): fewer than ``min_genes`` detected genes,
   more than 15 % mitochondrial counts (only where genes are named ``MT-*``).
2. Genes: detected in at least 3 reference cells; the top ``n_top_genes`` highly variable genes of the
   **reference** (Seurat v3 on its counts); the query is restricted to exactly those genes.
3. Both sides: library-size normalisation to 1e4 over those genes and ``log1p`` (the order of
   :func:`dice.pp.recipe_paper`: HVG selection before normalisation). Scaling to unit variance (cap 10) is
   done later with the reference statistics (by DICE and by :func:`build_peer_splits`).

Tasks
-----
``cbmc``
    CBMC CITE-seq (Stoeckius 2017; 8,617 cells x 500 genes, so all genes pass the HVG step), stratified
    90 / 10 split by label (the split changes with the seed). ``"Unknown"`` (171 cells) is not a cell type:
    those cells stay in both sides but are dropped from evaluation. ``"Mouse"`` spike-in cells are a real,
    distinct population and are kept. k = 25 (the paper's choice for CITE-seq).
``pbmc3k_to_4k``
    PBMC3k (10x v1, hg19) → PBMC4k (10x v2, GRCh38) on ``coarse_label``; genes matched by symbol (only
    symbols present in both). Cells without a coarse label (62 Seurat-QC-filtered PBMC3k cells, 20 ``"?"``
    PBMC4k cells) are kept for training / embedding and dropped from evaluation. No split: the seed changes
    only training and sampling. k: elbow of the reference spectrum.
``cellbench``
    CellBench 3 cell lines, CEL-seq2 (274 cells, reference) → Drop-seq (225 cells, query), label
    ``cell_line_demuxlet`` (genotype); demuxlet doublets (``demuxlet_cls == "DBL"``) are dropped from
    evaluation. No mitochondrial filter (genes are Ensembl ids). No split. k: elbow.
``worm``
    C. elegans neurons (sci-RNA-seq, Cao 2017), stratified 90 / 10. **Deviation**: ``min_genes=100``
    instead of 200, because sci-RNA-seq is shallow (median 151 detected genes; 200 would discard 68 % of
    the cells, 100 keeps 81 %). k: elbow.
"""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["TASKS", "RealTask", "TaskSpec", "build_peer_splits", "prepare_task", "reference_query", "run_seeds"]


@dataclass(frozen=True)
class TaskSpec:
    """How to build one reference → query task.

    Attributes
    ----------
    name
        Short task name used on the command line and in the results.
    title
        One-line description for the report.
    dataset
        ``dice.datasets.load`` name of the (reference) dataset.
    label_key
        Column of ``obs`` with the evaluation labels.
    split
        ``"stratified"`` (random stratified split, ``query_fraction`` of the cells as query, seeded),
        ``"column"`` (reference / query given by ``split_column`` values) or ``"datasets"`` (reference =
        ``dataset``, query = ``query_dataset``).
    exclude_labels
        Label values treated as missing in evaluation (cells kept otherwise).
    exclude_column
        ``(column, value)``: cells with that value are dropped from evaluation (e.g. doublets).
    n_comps
        Latent dimension k (``None``: elbow of the reference's singular values, as DICE does).
    min_genes
        Cell QC threshold on detected genes.
    batch
        Whether a batch (technology) separates reference and query, so Harmony applies.
    """

    name: str
    title: str
    dataset: str
    label_key: str
    split: str = "stratified"
    query_fraction: float = 0.1
    split_column: str | None = None
    ref_value: str | None = None
    query_value: str | None = None
    query_dataset: str | None = None
    match_symbols: bool = False
    exclude_labels: tuple[str, ...] = ()
    exclude_column: tuple[str, str] | None = None
    n_comps: int | None = None
    min_genes: int = 200
    n_top_genes: int = 3000
    batch: bool = False
    max_query_cells: int | None = None


TASKS: dict[str, TaskSpec] = {
    "cbmc": TaskSpec(
        name="cbmc",
        title="CBMC CITE-seq, stratified 90/10 split (label, 13 classes; 'Unknown' not evaluated)",
        dataset="cbmc_citeseq",
        label_key="label",
        exclude_labels=("Unknown",),
        n_comps=25,
    ),
    "pbmc3k_to_4k": TaskSpec(
        name="pbmc3k_to_4k",
        title="PBMC3k (10x v1) → PBMC4k (10x v2), coarse_label (5 shared classes); genes matched by symbol",
        dataset="pbmc3k",
        label_key="coarse_label",
        split="datasets",
        query_dataset="pbmc4k_soupx",
        match_symbols=True,
        exclude_labels=("?",),
        batch=True,
        max_query_cells=1000,
    ),
    "cellbench": TaskSpec(
        name="cellbench",
        title="CellBench 3 cell lines, CEL-seq2 → Drop-seq (cell_line_demuxlet; doublets not evaluated)",
        dataset="cellbench_3cl_celseq2_dropseq",
        label_key="cell_line_demuxlet",
        split="column",
        split_column="technology",
        ref_value="CEL-seq2",
        query_value="Drop-seq",
        exclude_column=("demuxlet_cls", "DBL"),
        batch=True,
    ),
    "worm": TaskSpec(
        name="worm",
        title="C. elegans neurons (sci-RNA-seq), stratified 90/10 split (label, 10 classes); min_genes=100",
        dataset="worm_neuron",
        label_key="label",
        min_genes=100,
    ),
}


@dataclass
class RealTask:
    """A prepared reference → query pair (same genes, same order; ``X`` log-normalised)."""

    spec: TaskSpec
    seed: int
    ref: ad.AnnData
    query: ad.AnnData
    ref_labels: np.ndarray  # object array, NaN where unlabeled
    query_labels: np.ndarray  # evaluation labels, NaN where excluded from evaluation
    notes: dict = field(default_factory=dict)

    @property
    def n_eval(self) -> int:
        return int((~pd.isna(self.query_labels)).sum())


@functools.lru_cache(maxsize=8)
def _load(name: str) -> ad.AnnData:
    import dice

    adata = dice.datasets.load(name)
    adata.var_names_make_unique()
    return adata


def _dense(matrix) -> np.ndarray:
    return matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)


def _stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of (reference, query); each label gives ``round(fraction * n)`` (>= 1) cells to the query."""
    rng = np.random.default_rng(seed)
    lab = pd.Series(labels).astype(str).to_numpy()
    query: list[np.ndarray] = []
    for value in np.unique(lab):
        idx = np.flatnonzero(lab == value)
        n_q = max(1, round(fraction * idx.size)) if idx.size > 1 else 0
        query.append(rng.choice(idx, size=n_q, replace=False))
    q = np.sort(np.concatenate(query))
    r = np.setdiff1d(np.arange(lab.size), q)
    return r, q


def _qc_cells(raw: ad.AnnData, min_genes: int) -> ad.AnnData:
    """Cell QC of the recipe (detected genes, mitochondrial fraction); all genes kept, X = raw counts."""
    import dice

    qc = dice.pp.recipe_paper(raw, min_genes=min_genes, min_cells=0, n_top_genes=None, copy=True)
    out = raw[qc.obs_names].copy()
    return out


def _lognormalised(counts_adata: ad.AnnData) -> ad.AnnData:
    import scanpy as sc

    out = counts_adata.copy()
    out.layers["counts"] = out.X.copy()
    sc.pp.normalize_total(out, target_sum=1e4)
    sc.pp.log1p(out)
    return out


def reference_query(
    ref_raw: ad.AnnData, query_raw: ad.AnnData, *, n_top_genes: int = 3000, min_genes: int = 200
) -> tuple[ad.AnnData, ad.AnnData]:
    """Preprocess a reference and a query (raw counts, same gene names); the query never informs the ref.

    Parameters
    ----------
    ref_raw, query_raw
        Raw counts; genes matched by ``var_names``.
    n_top_genes
        Highly variable genes picked on the reference (Seurat v3 on its counts).
    min_genes
        Cell QC threshold (detected genes), applied on each side.

    Returns
    -------
    ``(ref, query)``: same genes in the same order, ``X`` log-normalised over those genes,
    ``layers["counts"]`` the raw counts, ``obs`` kept.
    """
    import dice

    ref = dice.pp.recipe_paper(ref_raw, n_top_genes=n_top_genes, min_genes=min_genes, copy=True)
    query_qc = _qc_cells(query_raw, min_genes)
    genes = ref.var_names
    missing = genes.difference(query_qc.var_names)
    if len(missing):
        raise ValueError(f"{len(missing)} reference genes are absent from the query")
    query = _lognormalised(query_qc[:, genes].copy())
    return ref, query


def _labels(adata: ad.AnnData, spec: TaskSpec) -> np.ndarray:
    lab = adata.obs[spec.label_key].astype(object).to_numpy().copy()
    bad = pd.isna(lab)
    for value in spec.exclude_labels:
        bad |= lab == value
    if spec.exclude_column is not None:
        col, value = spec.exclude_column
        bad |= adata.obs[col].astype(str).to_numpy() == value
    lab[bad] = np.nan
    return lab


def prepare_task(
    name: str, seed: int, *, max_ref_cells: int | None = None, max_query_cells: int | None = None
) -> RealTask:
    """Build task ``name`` for ``seed`` (the seed sets the split where there is one).

    Parameters
    ----------
    name
        Key of :data:`TASKS`.
    seed
        Split seed (stratified tasks); recorded for the others.
    max_ref_cells
        Subsample the reference (after the split) to at most this many cells -- for smoke tests only.
    max_query_cells
        Subsample the query (after QC) to at most this many cells; default the task's own cap.
    """
    spec = TASKS[name]
    raw = _load(spec.dataset)
    notes: dict = {}
    if spec.split == "stratified":
        r, q = _stratified_split(raw.obs[spec.label_key].to_numpy(), spec.query_fraction, seed)
        ref_raw, query_raw = raw[r].copy(), raw[q].copy()
    elif spec.split == "column":
        col = raw.obs[spec.split_column].astype(str).to_numpy()
        ref_raw, query_raw = raw[col == spec.ref_value].copy(), raw[col == spec.query_value].copy()
    elif spec.split == "datasets":
        other = _load(spec.query_dataset)
        shared = raw.var_names.intersection(other.var_names)
        notes["shared_genes"] = len(shared)
        ref_raw, query_raw = raw[:, shared].copy(), other[:, shared].copy()
    else:  # pragma: no cover - specs are fixed above
        raise ValueError(spec.split)
    if max_ref_cells is not None and ref_raw.n_obs > max_ref_cells:
        keep = np.sort(np.random.default_rng(seed).choice(ref_raw.n_obs, max_ref_cells, replace=False))
        ref_raw = ref_raw[keep].copy()
    ref, query = reference_query(ref_raw, query_raw, n_top_genes=spec.n_top_genes, min_genes=spec.min_genes)
    notes["n_query_qc"] = int(query.n_obs)
    cap = spec.max_query_cells if max_query_cells is None else max_query_cells
    if cap is not None and query.n_obs > cap:
        keep = np.sort(np.random.default_rng(seed + 7919).choice(query.n_obs, cap, replace=False))
        query = query[keep].copy()
    notes.update(
        n_ref_raw=int(ref_raw.n_obs),
        n_query_raw=int(query_raw.n_obs),
        n_ref=int(ref.n_obs),
        n_query=int(query.n_obs),
        n_genes=int(ref.n_vars),
    )
    task = RealTask(spec, seed, ref, query, _labels(ref, spec), _labels(query, spec), notes)
    notes["n_eval"] = task.n_eval
    return task


def run_seeds(name: str, seeds: Sequence[int], measure: Callable[[RealTask, int], dict]) -> list[dict]:
    """``measure(task, seed)`` on task ``name`` prepared for each seed, one JSON line printed per seed.

    Warnings are silenced inside ``measure`` (depth and outside-the-prior warnings are not what these
    per-seed screens measure). Returns the rows in seed order.
    """
    rows = []
    for seed in seeds:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows.append(measure(prepare_task(name, seed), seed))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def build_peer_splits(task: RealTask, embedding):
    """:class:`peers.PeerSplit` pair sharing DICE's standardisation and loadings exactly.

    ``embedding`` is a fitted ``dice.pp._linear.LinearEmbedding`` (PCA of the reference, as ``train_prior`` fits
    it before refitting the loadings to the counts), so the ``pca`` peer equals ``V^T x`` of a model trained
    with ``TrainSettings(count_loadings_width=None)`` (``obsm["X_dice_pca"]``) bit for bit.
    """
    import peers

    def side(adata: ad.AnnData, labels: np.ndarray, is_ref: bool):
        lognorm = _dense(adata.X).astype(np.float32)
        return peers.PeerSplit(
            X=embedding.standardize(lognorm),
            lognorm=lognorm,
            counts=adata.layers["counts"],
            genes=np.asarray(adata.var_names),
            labels=labels,
            batch=None,
            loadings=np.asarray(embedding.loadings, dtype=np.float32) if is_ref else None,
            mean=np.asarray(embedding.mean) if is_ref else None,
            std=np.asarray(embedding.std) if is_ref else None,
            max_value=embedding.max_value,
        )

    return side(task.ref, task.ref_labels, True), side(task.query, task.query_labels, False)


def reference_scores(adata: ad.AnnData, embedding) -> np.ndarray:
    """``V^T x_std`` of a prepared side of a task (its genes are the reference's, in the same order)."""
    if list(adata.var_names) != list(embedding.genes):
        raise ValueError("the data's genes are not the embedding's (in the same order)")
    return embedding.project(embedding.standardize(_dense(adata.X).astype(np.float32)))
