"""How each label is called on held-out reference cells: the confusion matrix of ``transfer_labels``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from anndata import AnnData

from .._validation import DiceInputError
from ._confidence import _axes, _save

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["label_confusion"]


def label_confusion(
    adata: AnnData,
    *,
    key: str = "dice",
    min_share: float = 0.01,
    cmap: str = "Blues",
    ax=None,
    save: str | None = None,
) -> Axes:
    """Which label the held-out reference cells of each label get, measured as the query is.

    One row per reference label: the share of its held-out cells (thinned to the query's depth when both
    sides keep counts) given each label, so the diagonal is each label's recall, what to expect of the
    query's cells of that label, and a dark cell off it names the label they are taken for. Row names give
    the number of held-out cells; ``uns[f"{key}_label_transfer"]["held_out"]`` holds the numbers.

    Parameters
    ----------
    adata
        Output of :func:`dice.tl.transfer_labels` (not modified).
    key
        Its ``key_added``.
    min_share
        Shares below this are left unwritten (their colour still shows).
    cmap, ax, save
        Colour map, axes to draw into, file to save to.

    Returns
    -------
    The matplotlib Axes (with a colour bar).
    """
    info = adata.uns.get(f"{key}_label_transfer", {})
    if "held_out" not in info:
        raise DiceInputError(
            f"adata.uns[{f'{key}_label_transfer'!r}] has no 'held_out' report; run dice.tl.transfer_labels "
            f"(key_added={key!r}) with this version of dice first."
        )
    classes = [str(c) for c in info["classes"]]
    confusion = np.asarray(info["held_out"]["confusion"], dtype=np.float64)
    n_cells = confusion.sum(axis=1)
    share = confusion / np.maximum(n_cells, 1)[:, None]
    size = max(3.5, 0.45 * len(classes) + 1.5)
    fig, ax = _axes(ax, figsize=(size + 1.0, size))
    image = ax.imshow(share, cmap=cmap, vmin=0.0, vmax=1.0)
    ax.grid(False)  # a style's grid (e.g. scanpy's) would cross the cells
    fig.colorbar(image, ax=ax, label="share of the label's held-out cells", shrink=0.8)
    for i, j in zip(*np.nonzero(share >= min_share), strict=True):
        ax.text(
            j,
            i,
            f"{share[i, j]:.0%}",
            ha="center",
            va="center",
            fontsize=7,
            color="white" if share[i, j] > 0.6 else "black",
        )
    ax.set_xticks(range(len(classes)), classes, rotation=90)
    ax.set_yticks(range(len(classes)), [f"{c} ({int(n)})" for c, n in zip(classes, n_cells, strict=True)])
    ax.set_xlabel("label given")
    ax.set_ylabel("reference label (held-out cells)")
    depth = info.get("reference_cells_depth")
    at = f", thinned to a median {depth['median_after']:.0f} counts" if depth else ""
    ax.set_title(f"Held-out reference cells{at}: recall on the diagonal", fontsize=9)
    _save(fig, save)
    return ax
