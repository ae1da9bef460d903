"""Label classifiers in DICE's latent space: ``probabilities(samples, means)`` -> cells x classes.

``KnnVotes`` averages ``P(label | u)`` over a cell's posterior draws (a posterior predictive, with kNN on
the reference scores as ``P(label | u)``). ``LogisticLatent`` is fitted on the reference cells' posterior
means and applied to the query cells' posterior means: the same statistic on both sides.
"""

from __future__ import annotations

import numpy as np

from ._confidence import knn_votes

__all__ = ["CLASSIFIERS", "KnnVotes", "LogisticLatent"]

CLASSIFIERS = ("logistic", "knn")


class KnnVotes:
    """Label fractions among a point's ``n_neighbors`` nearest reference cells (reference ``V^T x``)."""

    def __init__(self, index: np.ndarray, codes: np.ndarray, n_classes: int, n_neighbors: int):
        self.index, self.codes, self.n_classes, self.n_neighbors = index, codes, n_classes, n_neighbors

    def probabilities(self, samples: np.ndarray, means: np.ndarray | None = None) -> np.ndarray:
        """``samples``: cells x draws x k (``means`` unused); returns cells x classes."""
        n_cells, n_draws, k = samples.shape
        votes, _ = knn_votes(samples.reshape(-1, k), self.index, self.codes, self.n_classes, self.n_neighbors)
        return votes.reshape(n_cells, n_draws, self.n_classes).mean(axis=1)


class LogisticLatent:
    """Multinomial logistic regression on posterior means (``X_dice``): reference means in, query means out.

    Fitted and applied to the same statistic, the posterior mean, so that reference and query are seen
    alike; applying it to single draws instead (noisier than the means it was fitted on) lost accuracy on
    CBMC (BENCHMARKS.md, section 5). Features are divided by one global scale (the geometry is kept); L2
    penalty ``C = 1``; lbfgs is deterministic.
    """

    def __init__(self, latents: np.ndarray, codes: np.ndarray, n_classes: int):
        from sklearn.linear_model import LogisticRegression

        latents = np.asarray(latents, dtype=np.float64)
        self.scale = float(latents.std()) or 1.0
        self.n_classes = n_classes
        self.model = LogisticRegression(C=1.0, max_iter=5000).fit(latents / self.scale, codes)

    def probabilities(self, samples: np.ndarray | None, means: np.ndarray) -> np.ndarray:
        """``means``: cells x k (``samples`` unused); returns cells x classes (absent classes get 0)."""
        out = np.zeros((len(means), self.n_classes))
        out[:, self.model.classes_] = self.model.predict_proba(np.asarray(means, dtype=np.float64) / self.scale)
        return out
