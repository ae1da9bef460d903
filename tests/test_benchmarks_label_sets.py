"""The label-set benchmark's pieces (benchmarks/label_sets.py): set metrics, recall rows, records and report."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
label_sets = pytest.importorskip("label_sets")


def test_set_metrics_by_hand(monkeypatch):
    monkeypatch.setattr(label_sets, "MIN_CELLS", 2)
    probabilities = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.8, 0.2], [0.5, 0.5]])
    codes = np.array([0, 0, 1, 1, -1])  # the last cell's label is not in the reference
    wrong = np.array([False, False, False, True, False])
    out = label_sets.set_metrics(probabilities, np.array([0.5, 0.3]), codes, wrong)
    # sets: {0}, {0, 1}, {1}, {0}, {0, 1}
    assert out["coverage"] == pytest.approx(3 / 4)
    assert out["worst_label_coverage"] == pytest.approx(1 / 2) and out["mean_label_coverage"] == pytest.approx(3 / 4)
    assert out["set_size"] == pytest.approx(7 / 5) and out["singletons"] == pytest.approx(3 / 5)
    assert out["confident_wrong"] == pytest.approx(1 / 5) and out["confident_wrong_covered"] == 0.0


def test_recall_rows_skip_small_labels():
    truth = np.array(["a"] * 12 + ["b"] * 5)
    predicted = np.array(["a"] * 9 + ["b"] * 3 + ["b"] * 5)
    held_out = {"n_cells": np.array([20, 20]), "recall": np.array([0.8, 0.9])}
    rows = label_sets.recall_rows(held_out, ["a", "b"], truth, predicted)
    assert rows == [{"label": "a", "n_query": 12, "n_held_out": 20, "held_out_recall": 0.8, "query_recall": 0.75}]


def test_records_replace_reruns_and_report(tmp_path):
    path = tmp_path / "sets.csv"
    sets = {"kind": "sets", "coverage": 0.9, "worst_label_coverage": 0.5, "mean_label_coverage": 0.8}
    sets |= {"set_size": 1.1, "singletons": 0.9, "confident_wrong": 0.05, "confident_wrong_covered": 0.2}
    held = {"kind": "held_out", "label": "CD8 T", "n_query": 50, "n_held_out": 30}
    rows = [
        {"task": "cbmc", "seed": s, "f": 0.05, "sets": m, **sets} for s in (0, 1) for m in ("pooled", "class_conformal")
    ]
    rows += [
        {"task": "cbmc", "seed": s, "f": 0.05, **held, "held_out_recall": 0.1, "query_recall": 0.2} for s in (0, 1)
    ]
    label_sets.save(rows, path)
    label_sets.save([{**rows[0], "coverage": 0.7}], path)  # a rerun of seed 0 replaces all its rows
    text = label_sets.report(path, tmp_path / "sets.md")
    assert "| cbmc | 0.05 | 2 | pooled | 0.800 ± 0.141" in text  # seed 0's new row beside seed 1's
    assert "| cbmc | 0.05 | 1 | class_conformal | 0.900 ± 0.000" in text  # seed 0's was dropped with its rerun
    assert "| cbmc | 0.05 | 1 | 0.100 | nan | 1 (CD8 T) | 1 | 0 () |" in text
