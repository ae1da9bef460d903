"""Plots: PCA vs DICE side by side, uncertainty, training loss. Functions return matplotlib objects."""

from ._confidence import confidence, posterior_samples, reliability_diagram
from ._embedding import embedding_comparison, uncertainty
from ._training import training_loss

__all__ = [
    "confidence",
    "embedding_comparison",
    "posterior_samples",
    "reliability_diagram",
    "training_loss",
    "uncertainty",
]
