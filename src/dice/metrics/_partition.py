"""Agreement between a predicted partition (clusters) and the true labels: ARI, NMI, V-measure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from sklearn import metrics as _skm

from ._validation import (
    check_same_length,
    encode_labels,
    label_length,
    missing_mask,
    require_classes,
    take_labels,
    warn_dropped,
)

__all__ = ["ari", "nmi", "v_measure"]

LabelLike = Sequence | np.ndarray | pd.Series

AverageMethod = Literal["arithmetic", "geometric", "min", "max"]


def paired_codes(labels_true: LabelLike, labels_pred: LabelLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate two label arrays for the same cells and return their integer codes.

    Cells whose true *or* predicted label is missing are dropped with a ``UserWarning``. ``labels_true``
    must keep at least two classes; ``labels_pred`` may consist of a single cluster.
    """
    n_true, n_pred = label_length(labels_true), label_length(labels_pred)
    check_same_length(n_true, n_pred, "labels_pred", against="labels_true")
    missing = missing_mask(labels_true, "labels_true") | missing_mask(labels_pred, "labels_pred")
    warn_dropped(int(missing.sum()), n_true)
    keep = ~missing
    if not keep.any():
        raise ValueError("All cells are unlabeled; nothing to evaluate.")
    true = encode_labels(take_labels(labels_true, keep), "labels_true")
    pred = encode_labels(take_labels(labels_pred, keep), "labels_pred")
    require_classes(true, "labels_true")
    return true, pred


def ari(labels_true: LabelLike, labels_pred: LabelLike) -> float:
    """Adjusted Rand index (Hubert & Arabie, 1985) between true labels and predicted clusters.

    ``ARI = (RI - E[RI]) / (max(RI) - E[RI])`` where RI is the Rand index over all pairs of cells and the
    expectation is under random partitions with the observed cluster sizes (permutation model). It is 1
    for identical partitions (up to relabelling), has expectation 0 for independent ones and can be
    negative. Symmetric in its arguments.

    Parameters
    ----------
    labels_true
        True class per cell (any hashable values; categorical allowed).
    labels_pred
        Predicted cluster per cell, same length.

    Returns
    -------
    The ARI as a float.

    Raises
    ------
    ValueError
        If lengths differ or ``labels_true`` has fewer than two classes after dropping missing labels.

    Notes
    -----
    Cells with a missing true or predicted label are dropped with a ``UserWarning``.
    """
    true, pred = paired_codes(labels_true, labels_pred)
    return float(_skm.adjusted_rand_score(true, pred))


def nmi(labels_true: LabelLike, labels_pred: LabelLike, *, average_method: AverageMethod = "arithmetic") -> float:
    """Normalised mutual information between true labels ``T`` and predicted clusters ``C``.

    ``NMI = I(C; T) / mean(H(C), H(T))`` with natural-log entropies, where the mean is chosen by
    ``average_method``: ``"arithmetic"`` (default) ``(H(C) + H(T)) / 2``, ``"geometric"``
    ``sqrt(H(C) H(T))``, ``"min"`` or ``"max"``. Not adjusted for chance.

    With the default arithmetic normalisation this is the paper's formula ``2 I(C;T) / (H(C) + H(T))``
    (Strehl & Ghosh, 2002) and it is *identical* to the V-measure with ``beta = 1``
    (:func:`v_measure`): the harmonic mean of homogeneity ``I/H(T)`` and completeness ``I/H(C)`` is
    ``2 I / (H(T) + H(C))``.

    Parameters
    ----------
    labels_true
        True class per cell.
    labels_pred
        Predicted cluster per cell, same length.
    average_method
        How the two entropies are averaged in the denominator.

    Returns
    -------
    NMI in ``[0, 1]``; 1 for identical partitions.

    Notes
    -----
    Cells with a missing true or predicted label are dropped with a ``UserWarning``.
    """
    true, pred = paired_codes(labels_true, labels_pred)
    return float(_skm.normalized_mutual_info_score(true, pred, average_method=average_method))


def v_measure(labels_true: LabelLike, labels_pred: LabelLike, *, beta: float = 1.0) -> float:
    """V-measure (Rosenberg & Hirschberg, 2007) of predicted clusters ``C`` against true labels ``K``.

    Homogeneity ``h = 1 - H(K|C) / H(K)`` (each cluster contains one class), completeness
    ``c = 1 - H(C|K) / H(C)`` (each class lies in one cluster), and
    ``V = (1 + beta) h c / (beta h + c)``. For ``beta = 1`` this equals arithmetic :func:`nmi`.

    Parameters
    ----------
    labels_true
        True class per cell.
    labels_pred
        Predicted cluster per cell, same length.
    beta
        Weight of homogeneity relative to completeness (``beta > 1`` favours completeness).

    Returns
    -------
    V-measure in ``[0, 1]``.

    Notes
    -----
    Cells with a missing true or predicted label are dropped with a ``UserWarning``.
    """
    true, pred = paired_codes(labels_true, labels_pred)
    return float(_skm.v_measure_score(true, pred, beta=beta))


def partition_scores(true_codes: np.ndarray, pred_codes: np.ndarray) -> dict[str, float]:
    """ARI, arithmetic NMI and V-measure on already-validated integer codes (internal fast path)."""
    return {
        "ari": float(_skm.adjusted_rand_score(true_codes, pred_codes)),
        "nmi": float(_skm.normalized_mutual_info_score(true_codes, pred_codes, average_method="arithmetic")),
        "v_measure": float(_skm.v_measure_score(true_codes, pred_codes)),
    }
