"""The prior's training loss."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .._validation import DiceInputError
from ._utils import finish

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["training_loss"]


def training_loss(model, *, ax=None, save: str | Path | None = None) -> Figure:
    """Diffusion training loss (mean of each logging window) and learning rate against the step.

    The held-out diffusion loss is a poor stopping signal for downstream quality (it rose while clustering
    stayed flat in our measurements); this plot is for spotting divergence or a run that has not converged.
    Returns the Figure.
    """
    import matplotlib.pyplot as plt

    history = getattr(model, "history", None) or {}
    if not history.get("loss"):
        raise DiceInputError("The model has no training history to plot.")
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    else:
        fig = ax.figure
    ax.plot(history["step"], history["loss"], color="C0", label="training loss")
    ax.set_xlabel("gradient step")
    ax.set_ylabel("noise-prediction MSE")
    ax.set_yscale("log")
    lr_ax = ax.twinx()
    lr_ax.plot(history["step"], history["lr"], color="C1", alpha=0.6, label="learning rate")
    lr_ax.set_ylabel("learning rate")
    ax.set_title(f"prior training ({history.get('seconds', float('nan')):.0f} s)")
    return finish(fig, save)
