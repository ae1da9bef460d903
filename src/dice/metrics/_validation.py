"""Input checks shared by the metric functions.

Policy for unlabeled cells
--------------------------
A label is *missing* when :func:`pandas.isna` is true for it (``NaN``, ``None``, ``pd.NA``, ``NaT``).
Every public metric **drops** cells with a missing label (in any of the label arrays it is given) and
emits a :class:`UserWarning` saying how many were dropped. It raises :class:`ValueError` when nothing is
left, when lengths disagree, or when fewer than two true classes remain.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "as_embedding",
    "check_n_neighbors",
    "check_same_length",
    "embedding_and_labels",
    "encode_labels",
    "label_length",
    "missing_mask",
    "require_classes",
    "take_labels",
    "warn_dropped",
]


def missing_mask(labels: Sequence | np.ndarray | pd.Series, name: str = "labels") -> np.ndarray:
    """Boolean mask of missing entries (``pandas.isna``) in a one-dimensional label array."""
    arr = labels.to_numpy() if isinstance(labels, pd.Series | pd.Index) else labels
    if isinstance(arr, pd.Categorical):
        return np.asarray(pd.isna(arr), dtype=bool)
    arr = np.asarray(arr, dtype=object) if not isinstance(arr, np.ndarray) else arr
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be one-dimensional, got shape {arr.shape}.")
    return np.asarray(pd.isna(arr), dtype=bool)


def _values(labels: Sequence | np.ndarray | pd.Series) -> np.ndarray | pd.Categorical:
    if isinstance(labels, pd.Series | pd.Index):
        return labels.array if isinstance(labels.dtype, pd.CategoricalDtype) else labels.to_numpy()
    if isinstance(labels, pd.Categorical):
        return labels
    return np.asarray(labels)


def take_labels(labels: Sequence | np.ndarray | pd.Series, keep: np.ndarray) -> np.ndarray | pd.Categorical:
    """Subset a label array with a boolean mask, keeping categorical dtype."""
    return _values(labels)[keep]


def label_length(labels: Sequence | np.ndarray | pd.Series) -> int:
    """Number of entries in a label array."""
    return len(_values(labels))


def encode_labels(labels: Sequence | np.ndarray | pd.Series, name: str = "labels") -> np.ndarray:
    """Integer codes ``0..C-1`` for labels that are known to have no missing entries.

    Codes follow order of first appearance; only the equality structure matters to every metric.
    """
    values = _values(labels)
    if getattr(values, "ndim", 1) != 1:
        raise ValueError(f"`{name}` must be one-dimensional, got shape {np.shape(values)}.")
    codes, _ = pd.factorize(pd.Series(values), use_na_sentinel=True)
    if np.any(codes < 0):  # pragma: no cover - callers drop missing labels first
        raise ValueError(f"`{name}` contains missing values.")
    return codes.astype(np.int64)


def warn_dropped(n_dropped: int, n_total: int, what: str = "cells", *, stacklevel: int = 4) -> None:
    """Warn that ``n_dropped`` of ``n_total`` items were removed for a missing label.

    The default ``stacklevel`` points at the caller of a public metric that validates through one helper.
    """
    if n_dropped:
        warnings.warn(
            f"Dropping {n_dropped} of {n_total} {what} with a missing (NaN/None) label before computing the metric.",
            UserWarning,
            stacklevel=stacklevel,
        )


def require_classes(codes: np.ndarray, name: str = "labels", minimum: int = 2) -> int:
    """Return the number of distinct classes, raising ``ValueError`` below ``minimum``."""
    n_classes = int(np.unique(codes).size)
    if n_classes < minimum:
        raise ValueError(
            f"`{name}` must contain at least {minimum} distinct classes after dropping unlabeled cells, "
            f"got {n_classes}."
        )
    return n_classes


def as_embedding(embedding: np.ndarray, name: str = "embedding") -> np.ndarray:
    """Validate and return a finite, two-dimensional float64 array (cells x dimensions)."""
    if hasattr(embedding, "toarray"):
        embedding = embedding.toarray()
    arr = np.asarray(embedding, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"`{name}` must be a 2-D array (cells x dimensions), got shape {arr.shape}.")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"`{name}` must be non-empty, got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    return arr


def check_same_length(n_expected: int, n_got: int, what: str, against: str = "embedding") -> None:
    """Raise ``ValueError`` when two arrays that describe the same cells differ in length."""
    if n_expected != n_got:
        raise ValueError(f"`{what}` has {n_got} entries but `{against}` has {n_expected} cells.")


def check_n_neighbors(n_neighbors: int, n_cells: int) -> int:
    """Require ``1 <= n_neighbors < n_cells`` (the cell itself is never one of its neighbours)."""
    if int(n_neighbors) != n_neighbors or n_neighbors < 1:
        raise ValueError(f"`n_neighbors` must be a positive integer, got {n_neighbors!r}.")
    if n_neighbors >= n_cells:
        raise ValueError(f"`n_neighbors`={n_neighbors} must be smaller than the number of labelled cells ({n_cells}).")
    return int(n_neighbors)


def embedding_and_labels(
    embedding: np.ndarray, labels: Sequence | np.ndarray | pd.Series, *, min_classes: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Validate an (embedding, labels) pair and drop unlabeled cells.

    Returns
    -------
    The embedding restricted to labelled cells and the integer label codes for those cells.
    """
    emb = as_embedding(embedding)
    check_same_length(emb.shape[0], label_length(labels), "labels")
    missing = missing_mask(labels)
    warn_dropped(int(missing.sum()), emb.shape[0])
    keep = ~missing
    if not keep.any():
        raise ValueError("All cells are unlabeled; nothing to evaluate.")
    codes = encode_labels(take_labels(labels, keep))
    require_classes(codes, minimum=min_classes)
    return emb[keep], codes
