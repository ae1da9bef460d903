"""The calibration benchmark's merged-label scoring (benchmarks/calibration.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
calibration = pytest.importorskip("calibration")


def test_merged_metrics_sum_the_merged_probabilities():
    probabilities = pd.DataFrame(
        {"B": [0.9, 0.1, 0.0], "T_CD4": [0.1, 0.5, 0.3], "T_CD8": [0.0, 0.4, 0.3], "unassigned": [0, 0, 0.4]}
    )
    truth = np.array(["B", "T_CD8", "T_CD4"], dtype=object)
    merge = {"T_CD4": "T/NK", "T_CD8": "T/NK"}
    sets = np.array(["B", "T_CD4|T_CD8", "unassigned"], dtype=object)
    out = calibration._merged_metrics(truth, probabilities, {"B", "T_CD4", "T_CD8"}, merge, sets)
    # unmerged, cell 2 would be wrong (T_CD4 predicted for T_CD8); merged, all three are right
    assert out["merged_accuracy"] == 1.0
    # merged confidences 0.9, 0.9, 0.6 against correctness 1, 1, 1
    np.testing.assert_allclose(out["merged_ece"], (0.1 + 0.1 + 0.4) / 3)
    assert out["merged_coverage"] == pytest.approx(2 / 3)  # the empty ("unassigned") set misses
    assert out["merged_set_size"] == pytest.approx(2 / 3)  # {B}, {T/NK}, {}
