"""Issue 11's targets checked against the shallow-query records (``results/depth.csv``), one row each.

Rules, as the issue states them: label accuracy at f = 0.2 within 0.02 of full depth (CBMC, PBMC); at
f = 0.05 at least naive Bayes's and scArches's (every task); ECE <= 0.05 at every f (CBMC, CellBench);
fewer than 5 % of cells wrong with confidence above 0.5 at f = 0.05; Leiden ARI at f = 0.2 and 0.05 above
every peer's by more than the seed spread (the larger of the two sds); fidelity error below PCA's and kNN
smoothing's at every f < 1. Means over each method's seeds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

EMBEDDING_PEERS = ("pca", "knn_smooth", "magic", "scarches")


def _values(records, task, f, method, metric) -> pd.Series:
    rows = records[(records["task"] == task) & np.isclose(records["f"], f) & (records["method"] == method)]
    return rows[metric].dropna() if metric in rows else pd.Series(dtype=float)


def _mean_sd(values: pd.Series) -> tuple[float, float]:
    if values.empty:
        return np.nan, np.nan
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _verdict(ok: bool) -> str:
    return "met" if ok else "not met"


def target_lines(records: pd.DataFrame) -> list[str]:
    """Markdown table rows: target, task, result."""
    tasks = list(records["task"].unique())
    lines = ["## Issue 11's targets", "", "| target | task | result |", "|---|---|---|"]
    for task in [t for t in ("cbmc", "pbmc3k_to_4k") if t in tasks]:
        full, shallow = (_mean_sd(_values(records, task, f, "dice", "accuracy")) for f in (1.0, 0.2))
        gap = shallow[0] - full[0]
        lines.append(
            f"| accuracy at f = 0.2 within 0.02 of full depth | {task} | {shallow[0]:.3f} ± {shallow[1]:.3f} vs "
            f"{full[0]:.3f} ± {full[1]:.3f} ({gap:+.3f}): {_verdict(gap >= -0.02)} |"
        )
    for task in tasks:
        dice = _mean_sd(_values(records, task, 0.05, "dice", "accuracy"))
        nb = _mean_sd(_values(records, task, 0.05, "naive_bayes", "accuracy"))[0]
        sc = _mean_sd(_values(records, task, 0.05, "scarches", "accuracy"))[0]
        ok = dice[0] >= nb and (np.isnan(sc) or dice[0] >= sc)
        lines.append(
            f"| accuracy at f = 0.05 ≥ naive Bayes and scArches | {task} | {dice[0]:.3f} ± {dice[1]:.3f} vs "
            f"{nb:.3f} / {sc:.3f}: {_verdict(ok)} |"
        )
    for task in [t for t in ("cbmc", "cellbench") if t in tasks and "ece" in records]:
        rows = records[(records["task"] == task) & (records["method"] == "dice")]
        worst = rows.groupby("f")["ece"].mean().max()
        lines.append(f"| ECE ≤ 0.05 at every f | {task} | largest {worst:.3f}: {_verdict(worst <= 0.05)} |")
    for task in tasks:
        wrong = _mean_sd(_values(records, task, 0.05, "dice", "confident_wrong"))
        implied = _mean_sd(_values(records, task, 0.05, "dice", "confident_wrong_implied"))
        note = "" if np.isnan(implied[0]) else f" (its confidences imply {implied[0]:.3f} ± {implied[1]:.3f})"
        lines.append(
            f"| wrong with confidence > 0.5 below 5 % at f = 0.05 | {task} | {wrong[0]:.3f} ± {wrong[1]:.3f}{note}: "
            f"{_verdict(wrong[0] < 0.05)} |"
        )
    for task in tasks:
        parts = []
        for f in (0.2, 0.05):
            dice = _mean_sd(_values(records, task, f, "dice", "ari"))
            peers = {m: _mean_sd(_values(records, task, f, m, "ari")) for m in EMBEDDING_PEERS}
            peers = {m: v for m, v in peers.items() if not np.isnan(v[0])}
            if not peers or np.isnan(dice[0]):
                continue
            name = max(peers, key=lambda m: peers[m][0])
            margin = dice[0] - peers[name][0]
            ok = margin > max(dice[1], peers[name][1])
            parts.append(
                f"f = {f:g}: {dice[0]:.3f} ± {dice[1]:.3f} vs {name} {peers[name][0]:.3f} ± {peers[name][1]:.3f} "
                f"({'above' if ok else 'not above'})"
            )
        if parts:
            lines.append(f"| Leiden ARI above every peer by more than the spread | {task} | {'; '.join(parts)} |")
    for task in tasks if "fidelity" in records else []:
        fractions = sorted(f for f in records[records["task"] == task]["f"].unique() if f < 1)
        failed = []
        for f in fractions:
            dice = _mean_sd(_values(records, task, f, "dice", "fidelity"))[0]
            floor = min(_mean_sd(_values(records, task, f, m, "fidelity"))[0] for m in ("pca", "knn_smooth"))
            if not dice < floor:
                failed.append(f"{f:g}")
        at5 = {m: _mean_sd(_values(records, task, 0.05, m, "fidelity"))[0] for m in ("dice", "pca", "knn_smooth")}
        result = f"at 5 %: DICE {at5['dice']:.3f}, PCA {at5['pca']:.3f}, kNN {at5['knn_smooth']:.3f}; "
        result += "met at every f" if not failed else f"not met at f = {', '.join(failed)}"
        lines.append(f"| fidelity error below PCA's and kNN smoothing's at every f < 1 | {task} | {result} |")
    return lines
