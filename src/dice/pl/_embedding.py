"""PCA-vs-DICE side by side, and the embedding coloured by uncertainty."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from anndata import AnnData

from .._validation import DiceInputError
from ._utils import finish, two_d

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["embedding_comparison", "uncertainty"]


def _scatter(ax, coords, values, title, *, cmap="viridis", point_size=None):
    import pandas as pd

    size = point_size or max(2.0, 12000 / max(len(coords), 1) ** 1.1)
    if values is None:
        ax.scatter(coords[:, 0], coords[:, 1], s=size, c="0.4", linewidths=0)
    elif isinstance(values.dtype, pd.CategoricalDtype) or values.dtype == object:
        categories = pd.Categorical(values)
        colors = _palette(len(categories.categories))
        for code, name in enumerate(categories.categories):
            mask = categories.codes == code
            ax.scatter(coords[mask, 0], coords[mask, 1], s=size, color=colors[code], label=str(name), linewidths=0)
    else:
        points = ax.scatter(
            coords[:, 0], coords[:, 1], s=size, c=np.asarray(values, dtype=float), cmap=cmap, linewidths=0
        )
        ax.figure.colorbar(points, ax=ax, shrink=0.8)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])


def _palette(n: int):
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab20" if n > 10 else "tab10")
    return [cmap(i % cmap.N) for i in range(n)]


def embedding_comparison(
    adata: AnnData,
    color: str | None = None,
    *,
    key: str = "dice",
    basis: str = "umap",
    seed: int = 0,
    save: str | Path | None = None,
) -> Figure:
    """Undenoised projection (``X_{key}_pca``) and DICE embedding (``X_{key}``) side by side.

    Parameters
    ----------
    adata
        Output of :func:`dice.tl.denoise` (not modified).
    color
        Column of ``adata.obs`` to colour by (categorical or numeric).
    key
        ``key_added`` of :func:`dice.tl.denoise`.
    basis
        ``"umap"`` (computed on a throwaway object) or ``"pca"`` (first two latent components).
    save
        Path to write the figure to; nothing is written otherwise.

    Returns
    -------
    The matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    if color is not None and color not in adata.obs:
        raise DiceInputError(f"color {color!r} is not a column of adata.obs ({list(adata.obs)}).")
    values = adata.obs[color] if color is not None else None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), layout="constrained")
    for ax, rep, title in zip(axes, (f"X_{key}_pca", f"X_{key}"), ("undenoised projection", "DICE (posterior mean)")):
        _scatter(ax, two_d(adata, rep, method=basis, seed=seed), values, title)
    if values is not None and not np.issubdtype(np.asarray(values).dtype, np.number):
        handles, labels = axes[1].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right center", markerscale=3, frameon=False, title=color)
    return finish(fig, save)


def uncertainty(
    adata: AnnData,
    *,
    key: str = "dice",
    basis: str = "umap",
    seed: int = 0,
    save: str | Path | None = None,
) -> Figure:
    """DICE embedding coloured by the per-cell posterior spread ``obs[f"{key}_uncertainty"]``, beside its
    distribution (``key``: ``key_added`` of :func:`dice.tl.denoise`; ``basis``: ``"umap"`` or ``"pca"``).
    Returns the Figure."""
    import matplotlib.pyplot as plt

    column = f"{key}_uncertainty"
    if column not in adata.obs:
        raise DiceInputError(f"adata.obs has no {column!r}; run dice.tl.denoise(adata) first.")
    values = adata.obs[column].to_numpy(dtype=float)
    if not np.isfinite(values).any():
        raise DiceInputError(f"obs[{column!r}] is all NaN: denoise with n_samples >= 2 to measure spread.")
    fig, (ax_map, ax_hist) = plt.subplots(1, 2, figsize=(10, 4.2), width_ratios=[1.5, 1], layout="constrained")
    _scatter(ax_map, two_d(adata, f"X_{key}", method=basis, seed=seed), values, "posterior spread", cmap="magma")
    ax_hist.hist(values[np.isfinite(values)], bins=40, color="0.35")
    ax_hist.set_xlabel("posterior spread (latent units)")
    ax_hist.set_ylabel("cells")
    return finish(fig, save)
