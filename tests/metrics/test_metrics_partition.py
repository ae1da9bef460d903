from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dice.metrics import ari, nmi, v_measure


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-np.sum(p * np.log(p)))


def _paper_nmi(a: np.ndarray, b: np.ndarray) -> float:
    """2 I(C;T) / (H(C) + H(T)) from the contingency table."""
    table = pd.crosstab(a, b).to_numpy().astype(float)
    h_a, h_b, h_ab = _entropy(table.sum(1)), _entropy(table.sum(0)), _entropy(table.ravel())
    return 2 * (h_a + h_b - h_ab) / (h_a + h_b)


def _pair_ari(a: np.ndarray, b: np.ndarray) -> float:
    """ARI from its pair-counting definition (Hubert & Arabie)."""
    table = pd.crosstab(a, b).to_numpy()

    def comb2(x):
        return x * (x - 1) / 2

    index = comb2(table).sum()
    rows, cols = comb2(table.sum(1)).sum(), comb2(table.sum(0)).sum()
    expected = rows * cols / comb2(a.size)
    return float((index - expected) / ((rows + cols) / 2 - expected))


def test_perfect_clustering_up_to_relabelling():
    truth = np.repeat(["a", "b", "c"], 20)
    pred = np.repeat([7, 3, 5], 20)
    assert ari(truth, pred) == pytest.approx(1.0)
    assert nmi(truth, pred) == pytest.approx(1.0)
    assert v_measure(truth, pred) == pytest.approx(1.0)


def test_random_labels_ari_near_zero():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 5, 5000)
    pred = rng.integers(0, 5, 5000)
    assert abs(ari(truth, pred)) < 0.01
    assert nmi(truth, pred) < 0.01


def test_ari_matches_pair_counting_definition():
    rng = np.random.default_rng(2)
    truth, pred = rng.integers(0, 3, 200), rng.integers(0, 4, 200)
    pred[:100] = truth[:100]
    assert ari(truth, pred) == pytest.approx(_pair_ari(truth, pred))
    assert ari(truth, pred) == pytest.approx(ari(pred, truth))


def test_arithmetic_nmi_equals_v_measure_and_paper_formula():
    rng = np.random.default_rng(3)
    truth, pred = rng.integers(0, 4, 300), rng.integers(0, 6, 300)
    pred[:150] = truth[:150]
    value = nmi(truth, pred)
    assert value == pytest.approx(v_measure(truth, pred), abs=1e-12)
    assert value == pytest.approx(_paper_nmi(truth, pred), abs=1e-12)
    assert nmi(truth, pred, average_method="geometric") != pytest.approx(value, abs=1e-6)


def test_missing_labels_dropped_with_warning():
    truth = pd.Series(pd.Categorical(["a", "a", None, "b", "b"]))
    pred = np.array([0, 0, 1, 1, 1])
    with pytest.warns(UserWarning, match="Dropping 1 of 5"):
        assert ari(truth, pred) == pytest.approx(1.0)


def test_errors():
    with pytest.raises(ValueError, match="entries"):
        ari([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="at least 2 distinct classes"):
        nmi(["a", "a", "a"], [0, 1, 2])
    with pytest.raises(ValueError, match="unlabeled"), pytest.warns(UserWarning):
        v_measure([np.nan, np.nan], [0, 1])
