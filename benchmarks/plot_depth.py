"""Figure: label accuracy and Leiden ARI against query depth, dice beside its peers (``results/depth.csv``).

python benchmarks/plot_depth.py   # writes docs/figures/depth_robustness.png (from benchmarks/depth.py's records)
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import NullFormatter, ScalarFormatter

HERE = Path(__file__).parent
SERIES = {
    "dice": ("DICE (count likelihood)", "tab:red"),
    "scarches": ("scVI + scArches mapping", "tab:purple"),
    "celltypist": ("CellTypist", "tab:green"),
    "naive_bayes": ("naive Bayes on counts", "0.45"),
    "pca": ("PCA on reference loadings (+ 15-NN)", "tab:blue"),
    "magic": ("MAGIC", "tab:orange"),
    "knn_smooth": ("kNN smoothing", "tab:cyan"),
}
PANELS = (("accuracy", "label-transfer accuracy"), ("ari", "Leiden ARI (best resolution)"))
TITLES = {
    "cbmc": "CBMC 80/20",
    "pbmc3k_to_4k": "PBMC3k → PBMC4k",
    "cellbench": "CellBench CEL-seq2 → Drop-seq",
    "worm": "C. elegans neurons 80/20",
}


def main(
    records: Path = HERE / "results" / "depth.csv",
    out: Path = HERE.parent / "docs" / "figures" / "depth_robustness.png",
) -> Path:
    data = pd.read_csv(records)
    tasks = [t for t in TITLES if t in set(data["task"])]
    fig, axes = plt.subplots(
        len(PANELS), len(tasks), figsize=(3.3 * len(tasks), 5.6), layout="constrained", squeeze=False
    )
    for j, task in enumerate(tasks):
        rows = data[data["task"] == task]
        for i, (metric, label) in enumerate(PANELS):
            ax = axes[i, j]
            for method, (name, color) in SERIES.items():
                g = rows[(rows["method"] == method) & rows[metric].notna()]
                if g.empty:
                    continue
                stats = g.groupby("f")[metric].agg(["mean", "std"]).sort_index()
                umis = g.groupby("f")["umis"].mean().sort_index()
                ax.errorbar(
                    umis,
                    stats["mean"],
                    yerr=stats["std"].fillna(0),
                    marker="o",
                    ms=3,
                    color=color,
                    label=name,
                    capsize=2,
                )
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_ylim(0, 1.02)
            if i == 0:
                counts = rows.groupby("method")["seed"].nunique()  # seeds differ by method (costly peers got fewer)
                low, high = int(counts.min()), int(counts.max())
                seeds = f"{high} seeds" if low == high else f"{low}–{high} seeds"
                ax.set_title(f"{TITLES[task]} ({seeds})", fontsize=9)
            if i == len(PANELS) - 1:
                ax.set_xlabel("median UMIs per query cell", fontsize=8)
            if j == 0:
                ax.set_ylabel(label, fontsize=8)
            ax.tick_params(labelsize=7)
    handles = {}
    for ax in axes.ravel():
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=4, frameon=False, fontsize=8)
    fig.suptitle(
        "Deep reference, query binomially thinned to 100 % … 5 % of its depth (mean ± sd over each method's seeds)",
        fontsize=10,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    return out


if __name__ == "__main__":
    print(main())
