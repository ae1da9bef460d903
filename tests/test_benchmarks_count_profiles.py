"""The count sub-profile screen's pieces (benchmarks/count_profiles.py): held-out NLLs and the choice report."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
screen = pytest.importorskip("count_profiles")


def test_held_out_nll_is_the_true_labels_mean_negative_log_probability():
    log_latent = np.log(np.array([[0.8, 0.2], [0.5, 0.5]]))
    loglik = np.log(np.array([[0.25, 0.75], [0.9, 0.1]]))
    truth = np.array([0, 1])
    out = screen.held_out_nll(log_latent, loglik, truth, (1.0, 0.0))  # latent only
    assert out["nll"] == pytest.approx(-np.mean(np.log([0.8, 0.5])))
    assert out["count_nll"] == pytest.approx(-np.mean(np.log([0.25, 0.1])))


def test_report_picks_the_lowest_nll_per_seed_and_depth():
    rows = []
    for seed in (0, 1):
        for c, accuracy, nll in ((1, 0.70, 0.9), (2, 0.72, 0.8), (4, 0.75, 0.7 if seed == 0 else 0.85)):
            rows.append(
                {"task": "t", "seed": seed, "f": 0.05, "c": c, "accuracy": accuracy, "confident_wrong": 0.1}
                | {"ece": 0.01, "nll": nll, "count_nll": nll}
            )
    text = screen.report(pd.DataFrame(rows))
    # seed 0 chooses 4 (+0.03 over 2), seed 1 keeps 2 (+0.00): +0.015 on average
    assert "chosen by nll, f = 0.05: [4, 2]; accuracy +0.0150" in text
