"""Paired comparison of two sets of ``depth.py`` records: one method, the same tasks, seeds and depths.

Each metric's difference (after - before) is taken seed by seed on the same split and thinning (``depth.py``
seeds both), then averaged: mean ± sd over seeds per task and depth. A change to DICE is judged this way
before it becomes the default; the records before a change are in git, so for example::

    git show df696c7:benchmarks/results/depth.csv > /tmp/depth_before.csv
    python benchmarks/depth_compare.py /tmp/depth_before.csv benchmarks/results/depth.csv \\
        --out benchmarks/results/depth_count_loadings.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

KEYS = ["task", "seed", "f"]
METRICS = {
    "accuracy": "accuracy",
    "ece": "ECE",
    "confident_wrong": "wrong & conf>0.5",
    "ari": "ARI",
    "ari_stable": "ARI (label-free)",
    "fidelity": "fidelity err.",
}


def paired(before: pd.DataFrame, after: pd.DataFrame, method: str = "dice") -> pd.DataFrame:
    """One row per task and depth: each metric's mean before, after and the paired difference's mean and sd."""
    both = before[before["method"] == method].merge(
        after[after["method"] == method], on=KEYS, suffixes=("_before", "_after")
    )
    if both.empty:
        raise ValueError(f"no {method!r} rows share a task, seed and f in the two record sets")
    rows = []
    for (task, f), group in both.groupby(["task", "f"], sort=True):
        row = {"task": task, "f": f, "seeds": len(group)}
        for metric in METRICS:
            diff = group[f"{metric}_after"] - group[f"{metric}_before"]
            row[f"{metric}_before"] = group[f"{metric}_before"].mean()
            row[f"{metric}_after"] = group[f"{metric}_after"].mean()
            row[f"{metric}_diff"] = diff.mean()
            row[f"{metric}_sd"] = diff.std(ddof=1) if len(group) > 1 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["task", "f"], ascending=[True, False])


def markdown(table: pd.DataFrame, title: str) -> str:
    """Before → after (paired Δ ± sd) per metric; fidelity is empty at full depth (its own reference)."""
    lines = [
        f"# {title}",
        "",
        "Means over seeds, before → after, and the paired difference (mean ± sd over seeds).",
        "",
        "| task | f | seeds | " + " | ".join(METRICS.values()) + " |",
        "|---|---|---|" + "---|" * len(METRICS),
    ]
    for _, row in table.iterrows():
        cells = []
        for metric in METRICS:
            if pd.isna(row[f"{metric}_before"]) or (metric == "fidelity" and row["f"] == 1.0):
                cells.append("")
                continue
            cells.append(
                f"{row[f'{metric}_before']:.3f} → {row[f'{metric}_after']:.3f} "
                f"({row[f'{metric}_diff']:+.3f} ± {row[f'{metric}_sd']:.3f})"
            )
        lines.append(f"| {row['task']} | {row['f']:g} | {row['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--method", default="dice")
    parser.add_argument("--title", default="DICE before and after a change, paired by seed (benchmarks/depth.py)")
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    text = markdown(paired(pd.read_csv(args.before), pd.read_csv(args.after), args.method), args.title)
    if args.out is not None:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
