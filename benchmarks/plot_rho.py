"""Figure: what the coupling strength rho does (paper appendix E), from ``benchmarks/uncertainty_rho.py``'s records.

python benchmarks/plot_rho.py   # writes docs/figures/rho_sweep.png

Three panels against the relative rho (units of the noise sd sigma, log axis): E.1, the spread of 500 draws
on a fixed noiseless input over the exact posterior's spread, per sampler and input; E.2, the share of
cells from an unseen cluster whose posterior mean lands inside a training cluster (and of seen cells inside
their own); E.2 with a single training cluster as the query, the share that stays in it or moves to another.
The default preset (direct sampler, rho 0) and PCA without denoising are drawn as horizontal lines.

The numbers are read from ``results/synthetic_uncertainty_{spread,e2}.csv``, the records of
``uncertainty_rho.py --seed 0 --parts spread,e2`` (the run ``results/synthetic_uncertainty.md`` renders).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, NullFormatter

HERE = Path(__file__).parent
SPREAD = HERE / "results" / "synthetic_uncertainty_spread.csv"
E2 = HERE / "results" / "synthetic_uncertainty_e2.csv"
OUT = HERE.parent / "docs" / "figures" / "rho_sweep.png"
INPUTS = {"cluster 2 centre": "o", "midpoint of centres": "s"}
SAMPLERS = {"direct": ("direct sampler", "tab:red", "-"), "gibbs": ("split Gibbs chain", "tab:blue", "--")}


def read_records(spread: Path = SPREAD, e2: Path = E2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The E.1 spread records and the E.2 records (``experiment`` column: ``e2_novel`` / ``e2_single``)."""
    return pd.read_csv(spread), pd.read_csv(e2)


def _reference_lines(ax, rows: pd.DataFrame, column: str, color: str) -> None:
    """Horizontal lines for the runs without a rho: PCA (no denoising) and the default preset (one line if equal)."""
    names = {"PCA": "PCA", "default": "default preset (rho 0)"}
    values = {}
    for prefix, name in names.items():
        hit = rows[rows["run"].astype(str).str.startswith(prefix)]
        if len(hit) and np.isfinite(hit[column].iloc[0]):
            values[name] = float(hit[column].iloc[0])
    if len(values) == 2 and round(values[names["PCA"]], 3) == round(values[names["default"]], 3):
        values = {"PCA and default preset (rho 0)": values[names["PCA"]]}
    for (name, value), ls in zip(values.items(), (":", "-.")):
        ax.axhline(value, color=color, ls=ls, lw=1.0, alpha=0.6, label=f"{name}: {value:.3f}")


#: The two E.2 panels: experiment, plotted columns (column, label, colour, marker), reference line, title.
E2_PANELS = (
    (
        "e2_novel",
        (
            ("novel_mean_in_training", "unseen cells: mean in a training cluster", "tab:red", "o"),
            ("novel_sample_in_training", "unseen cells: draw in a training cluster", "tab:red", "x"),
            ("known_mean_in_own_cluster", "seen cells: mean in own cluster", "tab:green", "o"),
        ),
        ("novel_mean_in_training", "tab:red"),
        "E.2 half the query from an unseen cluster\n(Gibbs chain, constant rho)",
    ),
    (
        "e2_single",
        (
            ("mean_in_source", "mean in its own training cluster", "tab:green", "o"),
            ("mean_in_other", "mean in another training cluster", "tab:red", "o"),
            ("mean_outside", "mean outside every cluster", "0.45", "o"),
        ),
        ("mean_in_source", "tab:green"),
        "E.2 query = one training cluster\n(Gibbs chain, constant rho)",
    ),
)


def _e2_panel(ax, rows: pd.DataFrame, series, reference: tuple[str, str], title: str) -> None:
    """One E.2 experiment against rho (the Gibbs runs), with PCA and the default preset as lines."""
    swept = rows[rows["rho"].notna() & rows["run"].astype(str).str.startswith("Gibbs")].sort_values("rho")
    for column, label, color, marker in series:
        if column in swept:
            ax.plot(swept["rho"], swept[column], color=color, marker=marker, ms=4, label=label)
    _reference_lines(ax, rows, *reference)
    ax.set_ylabel("share of query cells", fontsize=8)
    ax.set_title(title, fontsize=9)


def plot(spread: pd.DataFrame, e2: pd.DataFrame, out: Path = OUT) -> Path:
    fig, axes = plt.subplots(1, 3, figsize=(11.5, 4.8), layout="constrained", sharex=True)
    ax = axes[0]
    for sampler, (name, color, ls) in SAMPLERS.items():
        for source, marker in INPUTS.items():
            g = spread[(spread["sampler"] == sampler) & (spread["input"] == source)].sort_values("rho")
            if len(g):
                ax.plot(g["rho"], g["sd_ratio"], color=color, ls=ls, marker=marker, ms=4, label=f"{name}, {source}")
    ax.axhline(1.0, color="0.5", lw=0.8)
    ax.set_ylabel("spread of 500 draws / exact posterior spread", fontsize=8)
    ax.set_title("E.1 posterior spread on a fixed input\n(Setup 1, 500 draws)", fontsize=9)

    for ax, (experiment, series, reference, title) in zip(axes[1:], E2_PANELS, strict=True):
        _e2_panel(ax, e2[e2["experiment"] == experiment], series, reference, title)

    for ax in axes:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("relative rho (units of the noise sd σ)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    for ax in axes[1:]:
        ax.set_ylim(-0.03, 1.03)
    ratios = spread["sd_ratio"].to_numpy(np.float64)
    axes[0].set_ylim(min(0.7, np.nanmin(ratios) - 0.05), max(1.15, np.nanmax(ratios) + 0.05))
    fig.suptitle("Coupling strength rho on Setup 1 and the five-cluster E.2 data (seed 0)", fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out


def main(out: Path = OUT, spread_csv: Path = SPREAD, e2_csv: Path = E2) -> Path:
    """Write the figure from the spread and E.2 records."""
    return plot(*read_records(spread_csv, e2_csv), out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spread", type=Path, default=SPREAD, help="a synthetic_uncertainty_spread CSV")
    parser.add_argument("--e2", type=Path, default=E2, help="a synthetic_uncertainty_e2 CSV")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    print(main(out=args.out, spread_csv=args.spread, e2_csv=args.e2))
