"""``dice demo``: a deep CBMC reference, a query at full, 20 % and 5 % of its sequencing depth, PCA vs DICE."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np

__all__ = ["DEMO_FRACTIONS", "run_demo", "stratified_split", "thin_counts"]

#: Query depths the demo shows, as fractions of the query's own depth.
DEMO_FRACTIONS = (1.0, 0.2, 0.05)


def stratified_split(labels, *, query_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (reference, query) keeping each label's proportion in the query."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    query = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n_query = max(1, round(query_fraction * len(members)))
        query[rng.choice(members, size=n_query, replace=False)] = True
    return ~query, query


def thin_counts(adata, fraction: float, *, seed: int = 0):
    """A copy of ``adata`` whose raw counts keep each count with probability ``fraction``, re-normalised.

    Binomial thinning is what a shallower sequencing run of the same cells gives. ``layers["counts"]``
    holds the thinned counts, ``X`` their ``normalize_total(1e4)`` + ``log1p``.
    """
    import anndata as ad
    import scanpy as sc
    import scipy.sparse as sp

    from .likelihood import thin_counts

    counts = sp.csr_matrix(adata.layers["counts"], dtype=np.float32)
    if fraction < 1.0:
        counts = thin_counts(counts, fraction, np.random.default_rng(seed)).astype(np.float32)
    out = ad.AnnData(counts.copy(), obs=adata.obs.copy(), var=adata.var[[]].copy())
    out.layers["counts"] = counts
    sc.pp.normalize_total(out, target_sum=1e4)
    sc.pp.log1p(out)
    return out


def _knn_labels(reference, query, labels_key: str, k: int = 15):
    """15-NN vote in the reference's PCA (``obsm["X_pca"]``): the undenoised baseline and its confidence."""
    from sklearn.neighbors import KNeighborsClassifier

    clf = KNeighborsClassifier(n_neighbors=k).fit(reference.obsm["X_pca"], reference.obs[labels_key].astype(str))
    proba = clf.predict_proba(query.obsm["X_pca"])
    return clf.classes_[proba.argmax(axis=1)], proba.max(axis=1)


def run_demo(*, out_dir: Path, seed: int = 0, n_steps: int = 4000, progress: bool = True) -> dict:
    """Train a prior on 80 % of CBMC; transfer labels to the other 20 % at full, 20 % and 5 % depth."""
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from . import datasets, metrics, pl, pp, tl
    from .pp._linear import LinearEmbedding
    from .tl._label_report import UnreliableLabelWarning, unreliable_labels
    from .tl._latent import DepthWarning, reference_latents

    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    print("dice demo: CBMC CITE-seq (Stoeckius et al. 2017), 8,617 cells x 500 genes, 13 labelled types")
    adata = pp.recipe_paper(datasets.cbmc(), copy=True)  # log-normalised X, raw counts in layers["counts"]
    adata = adata[adata.obs["label"].astype(str) != "Unknown"].copy()  # 'Unknown' is not a cell type
    ref_mask, query_mask = stratified_split(adata.obs["label"].to_numpy(), query_fraction=0.2, seed=seed)
    reference, query = adata[ref_mask].copy(), adata[query_mask].copy()
    print(f"reference {reference.n_obs} cells at full depth, query {query.n_obs} cells (stratified 80/20, seed {seed})")

    model = tl.train_prior(
        reference, n_comps=25, seed=seed, settings=tl.TrainSettings(n_updates=n_steps), progress=progress
    )
    print(f"trained {model} in {model.history['seconds']:.0f} s (count likelihood: raw counts in layers['counts'])")
    # the baseline: PCA of the reference (the model's own loadings are refitted to the counts)
    pca = LinearEmbedding.fit(reference.X, reference.var_names, n_comps=25)
    reference.obsm["X_pca"] = reference_latents(pca, reference.X)  # in row blocks

    rows, shallow = [], None
    for fraction in DEMO_FRACTIONS:
        q = thin_counts(query, fraction, seed=seed)
        depth = float(np.median(np.asarray(q.layers["counts"].sum(axis=1)).ravel()))
        print(f"\nquery at {fraction:.0%} depth (median {depth:,.0f} UMIs per cell): transferring labels ...")
        with warnings.catch_warnings(record=True) as caught:  # the shallow query is the point here: say it once
            warnings.simplefilter("always", DepthWarning)
            warnings.simplefilter("always", UnreliableLabelWarning)  # summed up below, in a line per label
            tl.transfer_labels(q, reference, model, labels_key="label", seed=seed, progress=progress)
        if any(issubclass(w.category, DepthWarning) for w in caught):
            print("  (dice warns that this query is far shallower than the reference, and calibrates at its depth)")
        for w in caught:
            if not issubclass(w.category, DepthWarning | UnreliableLabelWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        info = q.uns["dice_label_transfer"]
        for phrase in unreliable_labels(info["held_out"], info["classes"]):  # what the warning says, in brief
            print(f"  held-out reference cells at this depth mostly lose a label: {phrase}")
        truth = q.obs["label"].astype(str).to_numpy()
        q.obsm["X_pca"] = reference_latents(pca, q.X)
        knn, knn_conf = _knn_labels(reference, q, "label")
        for name, predicted, confidence, rep in (
            ("PCA + kNN", knn, knn_conf, "X_pca"),
            ("DICE", q.obs["dice_label"].astype(str).to_numpy(), q.obs["dice_label_confidence"].to_numpy(), "X_dice"),
        ):
            right = predicted == truth
            sweep = metrics.leiden_sweep(q.obsm[rep], truth, seed=seed, seed_check=False)
            rows.append(
                {
                    "depth": f"{fraction:.0%} ({depth:,.0f} UMIs)",
                    "method": name,
                    "label accuracy": right.mean(),
                    "mean confidence": confidence.mean(),
                    "wrong, confidence > 0.5": np.mean(~right & (confidence > 0.5)),
                    "Leiden ARI": sweep.ari[sweep.oracle_index],
                }
            )
        shallow = q
    table = pd.DataFrame(rows).set_index(["depth", "method"])
    print("\nlabel transfer and clustering of the query (Leiden ARI at the best resolution):")
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    print(
        "\nAs the query gets shallower, PCA + kNN loses its labels while staying confident; DICE's count likelihood "
        "keeps them, and its confidence (calibrated on reference cells thinned to the query's depth) follows its "
        f"accuracy. Mean dice_uncertainty at {DEMO_FRACTIONS[-1]:.0%} depth: "
        f"{np.nanmean(shallow.obs['dice_uncertainty']):.3f}."
    )

    h5ad_path, png_path = out_dir / "cbmc_shallow_query_dice.h5ad", out_dir / "cbmc_pca_vs_dice_shallow.png"
    confusion_path = out_dir / "cbmc_label_confusion_shallow.png"
    shallow.write_h5ad(h5ad_path)
    pl.embedding_comparison(shallow, color="label", seed=seed, save=png_path)
    pl.label_confusion(shallow, save=confusion_path)
    table.to_csv(out_dir / "metrics.csv")
    print(
        f"\nwrote {h5ad_path}, {png_path}, {confusion_path} and {out_dir / 'metrics.csv'} "
        f"({time.perf_counter() - started:.0f} s in all)"
    )
    return {"table": table, "query": shallow, "model": model}
