"""Figures: reliability diagram and PCA-vs-DICE UMAPs on the CBMC shallow query (``results/figures_cbmc.csv``).

Two steps. ``--record`` redoes one seed of ``benchmarks/depth.py``'s CBMC task for DICE and its PCA peer and
keeps every query cell: the same preparation and 80/20 stratified split (``_real_tasks.prepare_task``, seed 0),
one :func:`dice.tl.train_prior` on the reference (k = 25), the query binomially thinned to ``f`` = 1 and 0.05
(``depth.shallow_query``, same seeds as depth.py), then for each ``f``

* DICE: :func:`dice.tl.transfer_labels` (default settings) -- label, confidence, embedding ``X_dice``;
* PCA: the query projected on the reference loadings (``V^T x``, DICE's own standardisation) with labels by
  15-NN among the reference's projections (``depth.knn_labels``);
* a 2-D UMAP of each embedding (``sc.pp.neighbors(use_rep=...)`` + ``sc.tl.umap(random_state=0)``, over all
  query cells of that depth).

One row per evaluated query cell (``"Unknown"`` cells are embedded but not stored) and depth::

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 DICE_DATA_DIR=../shared/data \\
        .venv/bin/python benchmarks/figures_cbmc.py --record

The default step only plots, from the CSV::

    .venv/bin/python benchmarks/figures_cbmc.py   # docs/figures/reliability.png, docs/figures/pca_vs_dice.png
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

RECORDS = HERE / "results" / "figures_cbmc.csv"
FIGURES = HERE.parent / "docs" / "figures"
FRACTIONS = (1.0, 0.05)
N_BINS = 10
#: method -> (name in the figures, colour); ``pca`` is the query on the reference loadings, labels by 15-NN
METHODS = {"pca": ("PCA + 15-NN", "tab:blue"), "dice": ("DICE", "tab:red")}


def _umap(embedding: np.ndarray, seed: int) -> np.ndarray:
    import anndata as ad
    import scanpy as sc

    a = ad.AnnData(np.zeros((len(embedding), 1), dtype=np.float32))
    a.obsm["X_rep"] = np.asarray(embedding, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.pp.neighbors(a, use_rep="X_rep", random_state=seed)
        sc.tl.umap(a, random_state=seed)
    return a.obsm["X_umap"]


def record(out: Path = RECORDS, seed: int = 0, fractions=FRACTIONS) -> pd.DataFrame:
    """Train once on the CBMC reference, map the query at each depth, write one row per evaluated cell."""
    import torch

    import _real_tasks as rt
    import depth
    import dice
    from dice.pp._linear import LinearEmbedding

    torch.set_num_threads(1)
    spec = rt.TASKS["cbmc"]
    rt.TASKS["cbmc"] = dataclasses.replace(spec, query_fraction=0.2)  # depth.py's 80/20 split
    try:
        task = rt.prepare_task("cbmc", seed)
    finally:
        rt.TASKS["cbmc"] = spec
    ref, query = task.ref, task.query
    ref.obs[depth.LABEL] = pd.Categorical(task.ref_labels)
    labelled = ~pd.isna(task.ref_labels)
    evaluated = ~pd.isna(task.query_labels)
    truth = task.query_labels[evaluated].astype(str)
    started = time.perf_counter()
    model = dice.tl.train_prior(ref, n_comps=spec.n_comps, seed=seed, progress=False)
    print(f"train_prior: {time.perf_counter() - started:.0f} s", flush=True)
    emb = LinearEmbedding.fit(ref.X, ref.var_names, n_comps=spec.n_comps)  # PCA's V (DICE's is count-fitted)
    ref_pca = emb.project(emb.standardize(rt._dense(ref.X).astype(np.float32)))
    frames = []
    for fraction in fractions:
        q = depth.shallow_query(query, fraction, seed=[seed, round(fraction * 1e4)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dice.tl.transfer_labels(q, ref, model, labels_key=depth.LABEL, seed=seed, progress=False)
        q_pca = emb.project(emb.standardize(rt._dense(q.X).astype(np.float32)))
        pca_label, pca_conf = depth.knn_labels(ref_pca[labelled], task.ref_labels[labelled].astype(str), q_pca)
        umis = np.asarray(q.layers["counts"].sum(axis=1)).ravel()
        dice_umap, pca_umap = _umap(q.obsm["X_dice"], seed), _umap(q_pca, seed)
        frame = pd.DataFrame(
            {
                "f": fraction,
                "cell": np.asarray(q.obs_names)[evaluated],
                "umis": umis[evaluated].round().astype(int),
                "truth": truth,
                "dice_label": q.obs["dice_label"].astype(str).to_numpy()[evaluated],
                "dice_confidence": q.obs["dice_label_confidence"].to_numpy(np.float64)[evaluated].round(4),
                "pca_label": np.asarray(pca_label).astype(str)[evaluated],
                "pca_confidence": np.asarray(pca_conf, np.float64)[evaluated].round(4),
                "dice_umap1": dice_umap[evaluated, 0].round(3),
                "dice_umap2": dice_umap[evaluated, 1].round(3),
                "pca_umap1": pca_umap[evaluated, 0].round(3),
                "pca_umap2": pca_umap[evaluated, 1].round(3),
            }
        )
        frames.append(frame)
        acc = {m: float(np.mean(frame[f"{m}_label"] == frame["truth"])) for m in METHODS}
        print(f"f={fraction:g}: {len(frame)} cells, accuracy DICE {acc['dice']:.3f}, PCA {acc['pca']:.3f}", flush=True)
    records = pd.concat(frames, ignore_index=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    records.to_csv(out, index=False)
    return records


def reliability(confidence, correct, n_bins: int = N_BINS) -> pd.DataFrame:
    """Equal-width confidence bins of [0, 1] (the last includes 1): count, mean confidence, accuracy.

    The bins of :func:`dice.metrics.reliability_table`, so :func:`ece` equals
    :func:`dice.metrics.expected_calibration_error`.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1]), 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore"):
        conf = np.bincount(index, confidence, n_bins) / count
        acc = np.bincount(index, correct, n_bins) / count
    return pd.DataFrame({"lower": edges[:-1], "upper": edges[1:], "count": count, "confidence": conf, "accuracy": acc})


def ece(table: pd.DataFrame) -> float:
    """Expected calibration error of a :func:`reliability` table (bin-count-weighted mean |accuracy - confidence|)."""
    filled = table[table["count"] > 0]
    return float(np.sum(filled["count"] * (filled["accuracy"] - filled["confidence"]).abs()) / filled["count"].sum())


def _depth_title(rows: pd.DataFrame, f: float) -> str:
    return f"query at {f:.0%} depth ({rows['umis'].median():,.0f} UMIs / cell)"


def plot_reliability(records: pd.DataFrame, out: Path) -> Path:
    fractions = sorted(records["f"].unique(), reverse=True)
    fig, axes = plt.subplots(
        2,
        len(fractions),
        figsize=(3.6 * len(fractions), 4.8),
        layout="constrained",
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": [3, 1]},
    )
    width = 1.0 / N_BINS
    for j, f in enumerate(fractions):
        rows = records[records["f"] == f]
        top, bottom = axes[0, j], axes[1, j]
        top.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--", label="perfect calibration")
        for k, (method, (name, color)) in enumerate(METHODS.items()):
            correct = rows[f"{method}_label"].to_numpy() == rows["truth"].to_numpy()
            table = reliability(rows[f"{method}_confidence"], correct)
            filled = table[table["count"] > 0]
            top.plot(
                filled["confidence"],
                filled["accuracy"],
                marker="o",
                ms=3.5,
                color=color,
                label=f"{name}: accuracy {correct.mean():.2f}, ECE {ece(table):.3f}",
            )
            offset = (k - 0.5) * 0.4 * width
            bottom.bar(table["lower"] + width / 2 + offset, table["count"], width=0.4 * width, color=color)
        top.set_xlim(0, 1)
        top.set_ylim(0, 1.3)  # headroom for the legend above the diagram
        top.set_yticks(np.linspace(0, 1, 6))
        top.set_title(_depth_title(rows, f), fontsize=9)
        top.legend(fontsize=7, loc="upper center", frameon=False)
        bottom.set_yscale("log")
        bottom.set_xlabel("confidence (10 equal-width bins)", fontsize=8)
        if j == 0:
            top.set_ylabel("accuracy in the bin", fontsize=8)
            bottom.set_ylabel("cells", fontsize=8)
        for ax in (top, bottom):
            ax.tick_params(labelsize=7)
    fig.suptitle(f"CBMC 80/20 label transfer, {rows['truth'].size:,} query cells per depth (seed 0)", fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out


def plot_umaps(records: pd.DataFrame, out: Path) -> Path:
    fractions = sorted(records["f"].unique(), reverse=True)
    types = sorted(records["truth"].unique())
    by_size = records["truth"].value_counts().index  # the largest types get the strong half of tab20
    palette = [plt.get_cmap("tab20")(i) for i in (*range(0, 20, 2), *range(1, 20, 2))]
    colors = {t: palette[i % 20] for i, t in enumerate(by_size)}
    fig, axes = plt.subplots(
        len(fractions), len(METHODS), figsize=(3.4 * len(METHODS) + 1.6, 3.3 * len(fractions)), layout="constrained"
    )
    axes = np.atleast_2d(axes)
    for i, f in enumerate(fractions):
        rows = records[records["f"] == f]
        c = rows["truth"].map(colors).tolist()
        for j, (method, (name, _)) in enumerate(METHODS.items()):
            ax = axes[i, j]
            ax.scatter(rows[f"{method}_umap1"], rows[f"{method}_umap2"], c=c, s=2, linewidths=0, rasterized=True)
            acc = float(np.mean(rows[f"{method}_label"] == rows["truth"]))
            depth = f"{f:.0%} depth ({rows['umis'].median():,.0f} UMIs)"
            ax.set_title(f"{name}, {depth}: accuracy {acc:.2f}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel("UMAP 2", fontsize=7)
            if i == len(fractions) - 1:
                ax.set_xlabel("UMAP 1", fontsize=7)
    handles = [plt.Line2D([], [], marker="o", ls="", ms=4, color=colors[t], label=t) for t in types]
    fig.legend(handles=handles, loc="outside right center", fontsize=7, frameon=False, title="true label")
    fig.suptitle("CBMC query: UMAP of the PCA (reference loadings) and DICE embeddings", fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out


def main(records: Path = RECORDS, out_dir: Path = FIGURES) -> tuple[Path, Path]:
    """Both figures from the recorded CSV: ``reliability.png`` and ``pca_vs_dice.png`` in ``out_dir``."""
    data = pd.read_csv(records)
    return plot_reliability(data, out_dir / "reliability.png"), plot_umaps(data, out_dir / "pca_vs_dice.png")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--record", action="store_true", help="recompute results/figures_cbmc.csv (minutes)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.record:
        record(seed=args.seed)
    print(*main(), sep="\n")
