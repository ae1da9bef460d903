"""Shared synthetic data for the metric tests."""

from __future__ import annotations

import numpy as np
import pytest


def _make_blobs(n_per_class: int = 100, n_classes: int = 3, dim: int = 10, spread: float = 1.0, seed: int = 0):
    """Gaussian blobs around centres 20 apart on the coordinate axes; returns (X, labels, centres)."""
    rng = np.random.default_rng(seed)
    centres = np.zeros((n_classes, dim))
    centres[np.arange(n_classes), np.arange(n_classes) % dim] = 20.0
    labels = np.repeat(np.arange(n_classes), n_per_class)
    x = centres[labels] + spread * rng.normal(size=(labels.size, dim))
    return x, labels, centres


@pytest.fixture(scope="session")
def make_blobs():
    """The blob generator ``(n_per_class=100, n_classes=3, dim=10, spread=1.0, seed=0)``."""
    return _make_blobs


@pytest.fixture(scope="session")
def blobs():
    """300 cells in 3 well separated blobs (10-D), labels as strings, and each cell's clean centre."""
    x, labels, centres = _make_blobs()
    names = np.array(["B cell", "T cell", "NK"])[labels]
    return x, names, centres[labels]
