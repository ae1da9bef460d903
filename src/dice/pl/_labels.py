"""How each label is called: the held-out confusion of ``transfer_labels``, or the query's own."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData

from .._validation import DiceInputError
from ._confidence import _axes, _save

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["label_confusion"]


def _query_confusion(adata: AnnData, truth: str, key: str, classes: list[str]):
    """Rows: the query's own labels in ``obs[truth]`` (cells without one left out); columns: ``classes``."""
    if truth not in adata.obs:
        raise DiceInputError(f"truth={truth!r} is not a column of adata.obs (columns: {list(adata.obs)}).")
    given = adata.obs[truth]
    known = given.notna().to_numpy()
    rows = sorted(set(given[known].astype(str)))
    table = pd.crosstab(
        pd.Categorical(given[known].astype(str), categories=rows),
        pd.Categorical(adata.obs[f"{key}_label"].astype(str)[known], categories=classes),
        dropna=False,
    )
    return rows, table.to_numpy(dtype=np.float64)


def label_confusion(
    adata: AnnData,
    *,
    key: str = "dice",
    truth: str | None = None,
    min_share: float = 0.01,
    cmap: str = "Blues",
    ax=None,
    save: str | None = None,
) -> Axes:
    """Which label the cells of each label get: held-out reference cells, or the query's own labelled cells.

    By default one row per reference label: the share of its held-out cells (measured as the query is,
    thinned to its depth when both sides keep counts) given each label. The diagonal is each label's recall,
    what to expect of the query's cells of that label, and a dark cell off it names the label they are taken
    for; ``uns[f"{key}_label_transfer"]["held_out"]`` holds the numbers. With ``truth``, the rows are the
    query's own labels (``obs[truth]``, e.g. an annotation made independently) instead. Side by side the two
    tell a failure of the model (both off the diagonal) from a disagreement between annotations (the
    held-out cells right, the query's not).

    Parameters
    ----------
    adata
        Output of :func:`dice.tl.transfer_labels` (not modified).
    key
        Its ``key_added``.
    truth
        Column of ``adata.obs`` with the query's own labels; ``None`` draws the held-out reference cells.
    min_share
        Shares below this are left unwritten (their colour still shows).
    cmap, ax, save
        Colour map, axes to draw into, file to save to.

    Returns
    -------
    The matplotlib Axes (with a colour bar). Row names give each row's number of cells.
    """
    info = adata.uns.get(f"{key}_label_transfer", {})
    if "held_out" not in info:
        raise DiceInputError(
            f"adata.uns[{f'{key}_label_transfer'!r}] has no 'held_out' report; run dice.tl.transfer_labels "
            f"(key_added={key!r}) with this version of dice first."
        )
    classes = [str(c) for c in info["classes"]]
    if truth is None:
        rows, confusion = classes, np.asarray(info["held_out"]["confusion"], dtype=np.float64)
        depth = info.get("reference_cells_depth")
        at = f", thinned to a median {depth['median_after']:.0f} counts" if depth else ""
        title, ylabel = f"Held-out reference cells{at}: recall on the diagonal", "reference label (held-out cells)"
    else:
        rows, confusion = _query_confusion(adata, truth, key, classes)
        title, ylabel = "Query cells: their own label against dice's", f"query label (obs[{truth!r}])"
    n_cells = confusion.sum(axis=1)
    share = confusion / np.maximum(n_cells, 1)[:, None]
    fig, ax = _axes(ax, figsize=(max(3.5, 0.45 * len(classes) + 1.5) + 1.0, max(3.5, 0.45 * len(rows) + 1.5)))
    image = ax.imshow(share, cmap=cmap, vmin=0.0, vmax=1.0)
    ax.grid(False)  # a style's grid (e.g. scanpy's) would cross the cells
    fig.colorbar(image, ax=ax, label="share of the row's cells", shrink=0.8)
    for i, j in zip(*np.nonzero(share >= min_share), strict=True):
        color = "white" if share[i, j] > 0.6 else "black"
        ax.text(j, i, f"{share[i, j]:.0%}", ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(range(len(classes)), classes, rotation=90)
    ax.set_yticks(range(len(rows)), [f"{c} ({int(n)})" for c, n in zip(rows, n_cells, strict=True)])
    ax.set_xlabel("label given by dice")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    _save(fig, save)
    return ax
