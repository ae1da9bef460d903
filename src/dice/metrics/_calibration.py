"""Calibration of probabilistic labels: reliability table and expected calibration error."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["expected_calibration_error", "reliability_table"]


def reliability_table(confidence, correct, n_bins: int = 10) -> pd.DataFrame:
    """Confidence vs accuracy in ``n_bins`` equal-width bins of [0, 1] (the last bin includes 1).

    Returns
    -------
    DataFrame with one row per bin: ``lower``, ``upper``, ``count``, ``confidence`` (mean), ``accuracy``
    (fraction correct); empty bins have NaN means.
    """
    confidence, correct = _check_pair(confidence, correct)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=False), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        in_bin = index == b
        count = int(in_bin.sum())
        rows.append(
            {
                "lower": edges[b],
                "upper": edges[b + 1],
                "count": count,
                "confidence": float(confidence[in_bin].mean()) if count else np.nan,
                "accuracy": float(correct[in_bin].mean()) if count else np.nan,
            }
        )
    return pd.DataFrame(rows)


def expected_calibration_error(confidence, correct, n_bins: int = 10) -> float:
    """ECE: bin-size-weighted mean of ``|accuracy - confidence|`` over equal-width confidence bins."""
    table = reliability_table(confidence, correct, n_bins)
    filled = table[table["count"] > 0]
    weights = filled["count"] / filled["count"].sum()
    return float((weights * (filled["accuracy"] - filled["confidence"]).abs()).sum())


def _check_pair(confidence, correct) -> tuple[np.ndarray, np.ndarray]:
    confidence = np.asarray(confidence, dtype=np.float64).ravel()
    correct = np.asarray(correct, dtype=np.float64).ravel()
    if confidence.shape != correct.shape or confidence.size == 0:
        raise ValueError(
            f"confidence and correct need the same non-zero length, got {confidence.size} and {correct.size}."
        )
    if np.any((confidence < 0) | (confidence > 1)) or not np.all(np.isfinite(confidence)):
        raise ValueError("confidence values must lie in [0, 1].")
    return confidence, correct
