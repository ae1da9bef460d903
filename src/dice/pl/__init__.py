"""Plots: PCA vs DICE side by side, uncertainty, label confidence and confusion, training loss.

Functions return matplotlib objects.
"""

from ._confidence import confidence, posterior_samples, reliability_diagram
from ._embedding import embedding_comparison, uncertainty
from ._labels import label_confusion
from ._training import training_loss

__all__ = [
    "confidence",
    "embedding_comparison",
    "label_confusion",
    "posterior_samples",
    "reliability_diagram",
    "training_loss",
    "uncertainty",
]
