"""Label classifiers in the latent space, applied to a cell's posterior draws (posterior predictive).

Both estimate ``P(label | x) = E_{u ~ p(u | x)} P(label | u)`` by averaging ``P(label | u)`` over the cell's
posterior draws; they differ in how ``P(label | u)`` is learned from the reference.
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

    def probabilities(self, samples: np.ndarray) -> np.ndarray:
        """``samples``: cells x draws x k; returns cells x classes."""
        n_cells, n_draws, k = samples.shape
        votes, _ = knn_votes(samples.reshape(-1, k), self.index, self.codes, self.n_classes, self.n_neighbors)
        return votes.reshape(n_cells, n_draws, self.n_classes).mean(axis=1)


class LogisticLatent:
    """Multinomial logistic regression on the reference cells' posterior means (``X_dice`` of the reference).

    A linear model in the denoised latent space. On CBMC (5 seeds) it raised accuracy over kNN votes from
    0.930 to 0.940 and matched them on PBMC3k -> PBMC4k and CellBench (BENCHMARKS.md, section 5).
    Features are divided by one global scale (the geometry is kept); L2 penalty ``C = 1``; lbfgs is
    deterministic.
    """

    def __init__(self, latents: np.ndarray, codes: np.ndarray, n_classes: int):
        from sklearn.linear_model import LogisticRegression

        latents = np.asarray(latents, dtype=np.float64)
        self.scale = float(latents.std()) or 1.0
        self.n_classes = n_classes
        self.model = LogisticRegression(C=1.0, max_iter=5000).fit(latents / self.scale, codes)

    def probabilities(self, samples: np.ndarray) -> np.ndarray:
        """``samples``: cells x draws x k; returns cells x classes (classes absent in training get 0)."""
        n_cells, n_draws, k = samples.shape
        flat = np.asarray(samples, dtype=np.float64).reshape(-1, k) / self.scale
        out = np.zeros((len(flat), self.n_classes))
        out[:, self.model.classes_] = self.model.predict_proba(flat)
        return out.reshape(n_cells, n_draws, self.n_classes).mean(axis=1)
