"""Aggregate per-seed metric records into mean ± sd tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["format_mean_sd", "summarize"]


def summarize(
    records: Sequence[Mapping[str, object]] | pd.DataFrame,
    by: str | Sequence[str] | None = "method",
    *,
    metrics: Sequence[str] | None = None,
    ignore: Sequence[str] = ("seed",),
) -> pd.DataFrame:
    """Mean and standard deviation of each metric over repeated runs (seeds).

    Parameters
    ----------
    records
        One dict per run, e.g. ``{"method": "dice", "seed": 0, **evaluate(...)}``, or a DataFrame of them.
    by
        Column(s) identifying a configuration (e.g. ``"method"`` or ``["dataset", "method"]``); runs with
        equal values are aggregated. ``None`` aggregates all records together.
    metrics
        Columns to summarise; default every numeric column not in ``by`` or ``ignore``.
    ignore
        Numeric columns that are not metrics (default ``("seed",)``).

    Returns
    -------
    DataFrame indexed by ``by`` (in order of first appearance) with two-level columns: ``("n", "count")``
    the number of runs, then ``(metric, "mean")`` and ``(metric, "sd")`` for each metric. ``sd`` is the
    sample standard deviation (``ddof=1``; NaN for a single run). NaN values (metrics not computed in a
    run) are skipped; ``mean`` is NaN when a metric is missing in every run of a group.
    """
    frame = records.copy() if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))
    if frame.empty:
        raise ValueError("`records` is empty.")
    keys: list[str] = [] if by is None else ([by] if isinstance(by, str) else list(by))
    missing = [k for k in keys if k not in frame.columns]
    if missing:
        raise ValueError(f"Grouping column(s) {missing} not found in records.")
    if metrics is None:
        metrics = [
            c for c in frame.columns if c not in keys and c not in ignore and pd.api.types.is_numeric_dtype(frame[c])
        ]
    else:
        absent = [m for m in metrics if m not in frame.columns]
        if absent:
            raise ValueError(f"Metric column(s) {absent} not found in records.")
        metrics = list(metrics)
    if not keys:
        frame = frame.assign(_all="all")
        keys = ["_all"]
    grouped = frame.groupby(keys, sort=False, dropna=False)
    columns: dict[tuple[str, str], pd.Series] = {("n", "count"): grouped.size()}
    for metric in metrics:
        values = grouped[metric]
        columns[(metric, "mean")] = values.mean()
        columns[(metric, "sd")] = values.std(ddof=1)
    out = pd.DataFrame(columns)
    out.columns = pd.MultiIndex.from_tuples(out.columns, names=["metric", "stat"])
    if keys == ["_all"]:
        out.index = pd.Index(["all"], name=None)
    return out


def _cell(mean: float, sd: float, digits: int) -> str:
    if np.isnan(mean):
        return "–"
    if np.isnan(sd):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def format_mean_sd(
    summary: pd.DataFrame,
    *,
    digits: int = 3,
    metrics: Sequence[str] | None = None,
    index_name: str | None = None,
) -> str:
    """Markdown table with one ``mean ± sd`` cell per metric from a :func:`summarize` result.

    Parameters
    ----------
    summary
        Output of :func:`summarize`.
    digits
        Decimal places for mean and sd.
    metrics
        Metrics (first-level column names) to show, in order; default all in the summary. The run count
        column ``n`` is always shown first.
    index_name
        Header of the first column; default the index name(s) joined by ``/``.

    Returns
    -------
    A GitHub-flavoured markdown table (string, no trailing newline). A cell shows ``–`` when the mean is
    NaN and the bare mean when the sd is NaN (single run).
    """
    available = [m for m in summary.columns.get_level_values(0).unique() if m != "n"]
    metrics = available if metrics is None else list(metrics)
    absent = [m for m in metrics if m not in available]
    if absent:
        raise ValueError(f"Metric(s) {absent} not in the summary.")
    if index_name is None:
        names = [str(n) for n in summary.index.names if n is not None]
        index_name = "/".join(names) if names else ""
    header = [index_name, "n", *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    has_n = ("n", "count") in summary.columns
    for key, row in summary.iterrows():
        label = " / ".join(str(k) for k in key) if isinstance(key, tuple) else str(key)
        n = str(int(row[("n", "count")])) if has_n else ""
        cells = [_cell(float(row[(m, "mean")]), float(row[(m, "sd")]), digits) for m in metrics]
        lines.append("| " + " | ".join([label, n, *cells]) + " |")
    return "\n".join(lines)
