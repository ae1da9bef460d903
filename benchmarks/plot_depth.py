"""Figure: label-transfer accuracy against sequencing depth, from ``results/depth_counts.csv``.

python benchmarks/plot_depth.py   # writes docs/figures/depth_robustness.png
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

HERE = Path(__file__).parent
SERIES = {
    "counts/matched": ("DICE, count likelihood", "tab:red"),
    "lognorm": ("DICE, log-normalised (v0.1 pipeline)", "tab:blue"),
    "naive_bayes": ("naive Bayes on counts", "0.4"),
}


def main(out: Path = HERE.parent / "docs" / "figures" / "depth_robustness.png") -> Path:
    records = pd.read_csv(HERE / "results" / "depth_counts.csv")
    fig, ax = plt.subplots(figsize=(5.6, 3.8), layout="constrained")
    for method, (label, color) in SERIES.items():
        rows = records[records["method"] == method]
        stats = rows.groupby("f")["logistic"].agg(["mean", "std"]).sort_index()
        umis = rows.groupby("f")["umis"].mean().sort_index()
        ax.errorbar(umis, stats["mean"], yerr=stats["std"].fillna(0), marker="o", color=color, label=label, capsize=3)
    ax.set_xscale("log")
    ax.set_xlabel("median UMIs per query cell (CBMC, binomially thinned)")
    ax.set_ylabel("label-transfer accuracy")
    ax.set_ylim(0, 1)
    n_seeds = records["seed"].nunique()
    ax.set_title(f"Deep reference, shallow query ({n_seeds} seeds, mean ± sd)", fontsize=10)
    ax.legend(frameon=False, fontsize=8, loc="lower right")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    return out


if __name__ == "__main__":
    print(main())
