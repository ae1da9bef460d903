"""Plots of posterior samples, per-cell confidence and reliability. Nothing is written unless ``save=``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from anndata import AnnData

from .._validation import DiceInputError
from ._utils import two_d

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["confidence", "posterior_samples", "reliability_diagram"]


def _axes(ax, figsize=(4.5, 4.0)):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def _save(fig, save) -> None:
    if save is not None:
        fig.savefig(save, bbox_inches="tight", dpi=150)


def _cell_position(adata: AnnData, cell) -> int:
    if isinstance(cell, int | np.integer):
        if not -adata.n_obs <= cell < adata.n_obs:
            raise IndexError(f"cell {cell} out of range for {adata.n_obs} cells.")
        return int(cell) % adata.n_obs
    if cell not in adata.obs_names:
        raise KeyError(f"cell {cell!r} is not in obs_names.")
    return int(adata.obs_names.get_loc(cell))


def posterior_samples(
    adata: AnnData,
    cell: int | str,
    *,
    reference: AnnData | None = None,
    key: str = "dice",
    show_observed: bool = True,
    basis: str = "pca",
    color: str = "tab:blue",
    ax=None,
    save: str | None = None,
    seed: int = 0,
) -> Axes:
    """Posterior samples of one cell over the reference embedding (the paper's Figure 2).

    Parameters
    ----------
    adata
        Denoised with ``store_samples=True`` (draw many samples, e.g. ``n_samples=500``, for a few cells).
    cell
        Position or obs name of the cell.
    reference
        Cells drawn in grey (default ``adata`` itself), from their ``obsm[f"X_{key}_pca"]`` (the same latent
        coordinates as the samples).
    key
        ``key_added`` of :func:`dice.tl.denoise`: samples ``obsm[f"X_{key}_samples"]``.
    show_observed
        Draw the cell's undenoised projection ``obsm[f"X_{key}_pca"]`` as a red cross.
    basis
        ``"pca"``: the first two principal axes of the reference points; ``"umap"``: a UMAP fitted on the
        reference points (umap-learn), samples placed with its ``transform``.
    ax, save, seed
        Axes to draw into, file to save to, seed of the UMAP.

    Returns
    -------
    The matplotlib Axes.
    """
    reference = adata if reference is None else reference
    samples_key, reference_key = f"X_{key}_samples", f"X_{key}_pca"
    observed_key = reference_key if show_observed else None
    if samples_key not in adata.obsm:
        raise DiceInputError(f"obsm[{samples_key!r}] not found; run dice.tl.denoise(..., store_samples=True).")
    if reference_key not in reference.obsm:
        raise DiceInputError(f"reference.obsm[{reference_key!r}] not found; run dice.tl.denoise on it first.")
    i = _cell_position(adata, cell)
    points = np.asarray(reference.obsm[reference_key], dtype=np.float64)
    samples = np.asarray(adata.obsm[samples_key][i], dtype=np.float64)
    extra = [samples]
    if observed_key is not None:
        extra.append(np.asarray(adata.obsm[observed_key][i : i + 1], dtype=np.float64))
    if basis == "pca":
        centre = points.mean(axis=0)
        _, _, vt = np.linalg.svd(points - centre, full_matrices=False)
        project = lambda z: (z - centre) @ vt[:2].T  # noqa: E731
        labels = ("PC 1 (reference)", "PC 2 (reference)")
    elif basis == "umap":
        import umap

        reducer = umap.UMAP(random_state=seed, n_jobs=1).fit(points)
        project = reducer.transform
        labels = ("UMAP 1", "UMAP 2")
    else:
        raise DiceInputError(f"basis must be 'pca' or 'umap', got {basis!r}.")
    fig, ax = _axes(ax)
    grey = project(points) if basis == "pca" else reducer.embedding_
    ax.scatter(grey[:, 0], grey[:, 1], s=3, c="lightgrey", linewidths=0, label="reference")
    drawn = project(extra[0])
    ax.scatter(
        drawn[:, 0],
        drawn[:, 1],
        s=6,
        c=color,
        alpha=0.6,
        linewidths=0,
        label=f"{len(samples)} posterior samples",
    )
    if observed_key is not None:
        obs = project(extra[1])
        ax.scatter(obs[:, 0], obs[:, 1], marker="x", s=60, c="red", label="observed (V^T x)")
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(f"cell {adata.obs_names[i]}")
    ax.legend(loc="best", fontsize=7, markerscale=2)
    _save(fig, save)
    return ax


def confidence(
    adata: AnnData,
    color: str | None = None,
    *,
    key: str = "dice",
    basis: str = "umap",
    cmap: str = "viridis",
    seed: int = 0,
    ax=None,
    save: str | None = None,
) -> Axes:
    """Cells coloured by a confidence in [0, 1] (default ``obs[f"{key}_label_confidence"]``).

    Parameters
    ----------
    adata
        Output of :func:`dice.tl.transfer_labels` or :func:`dice.tl.cluster_confidence` (not modified).
    color
        Column of ``obs`` to colour by (default ``f"{key}_label_confidence"``).
    key
        ``key_added`` of the dice run: the coordinates come from ``obsm[f"X_{key}"]``.
    basis
        ``"umap"`` (of ``obsm[f"X_{key}"]``, on a throwaway object), ``"pca"`` (its first two dimensions) or an
        ``obsm`` key such as ``"X_umap"`` (used as it is).
    cmap, seed, ax, save
        Colour map, UMAP seed, axes to draw into, file to save to.

    Returns
    -------
    The matplotlib Axes (with a colour bar).
    """
    color = color or f"{key}_label_confidence"
    if color not in adata.obs:
        raise DiceInputError(f"obs[{color!r}] not found; run dice.tl.transfer_labels or dice.tl.cluster_confidence.")
    coords = two_d(adata, f"X_{key}", method=basis, seed=seed)
    values = adata.obs[color].to_numpy(dtype=float)
    order = np.argsort(-values)  # least confident drawn last, on top
    fig, ax = _axes(ax)
    points = ax.scatter(
        coords[order, 0], coords[order, 1], c=values[order], cmap=cmap, vmin=0, vmax=1, s=5, linewidths=0
    )
    fig.colorbar(points, ax=ax, label=color)
    ax.set_xlabel(f"{basis} 1")
    ax.set_ylabel(f"{basis} 2")
    _save(fig, save)
    return ax


def reliability_diagram(confidence, correct, n_bins: int = 10, *, ax=None, save: str | None = None) -> Axes:
    """Accuracy per equal-width confidence bin against the diagonal; the ECE in the title.

    Returns
    -------
    The matplotlib Axes.
    """
    from ..metrics._calibration import expected_calibration_error, reliability_table

    table = reliability_table(confidence, correct, n_bins)
    fig, ax = _axes(ax)
    width = 1.0 / n_bins
    filled = table[table["count"] > 0]
    ax.bar(
        filled["lower"],
        filled["accuracy"],
        width=width,
        align="edge",
        color="tab:blue",
        alpha=0.7,
        edgecolor="black",
        label="accuracy",
    )
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.scatter(filled["confidence"], filled["accuracy"], c="black", s=10, zorder=3)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"ECE = {expected_calibration_error(confidence, correct, n_bins):.3f}")
    ax.legend(loc="upper left", fontsize=7)
    _save(fig, save)
    return ax
