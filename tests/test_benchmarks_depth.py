"""The shallow-query benchmark's pieces (benchmarks/depth.py): thinning, the naive-Bayes floor, metrics, records.

The full protocol needs the peer environment and real data (``benchmarks/depth.py --help``); these tests check
the parts whose mistakes would silently change the numbers.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

pytestmark = pytest.mark.benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
depth = pytest.importorskip("depth")


def test_thinning_keeps_the_expected_fraction_and_is_seeded():
    counts = sp.csr_matrix(np.random.default_rng(0).poisson(20.0, size=(200, 50)).astype(np.float64))
    thinned = depth.thin(counts, 0.2, seed=[1, 2])
    assert thinned.sum() / counts.sum() == pytest.approx(0.2, rel=0.02)
    assert (thinned <= counts).toarray().all()  # thinning never adds a count
    again = depth.thin(counts, 0.2, seed=[1, 2])
    assert (thinned != again).nnz == 0
    assert (depth.thin(counts, 0.2, seed=[1, 3]) != thinned).nnz > 0
    assert (depth.thin(counts, 1.0, seed=0) != counts).nnz == 0


def test_naive_bayes_recovers_distinct_profiles():
    rng = np.random.default_rng(0)
    profiles = rng.dirichlet(np.full(40, 0.3), size=3)
    labels = np.repeat(np.array(["a", "b", "c"]), 100)
    counts = np.vstack([rng.multinomial(200, profiles[i]) for i in np.repeat(np.arange(3), 100)])
    predicted, confidence = depth.naive_bayes(counts, labels, counts[::7])
    assert np.mean(predicted == labels[::7]) > 0.95
    assert np.all((confidence > 0) & (confidence <= 1))


def test_fidelity_is_scale_free_and_zero_for_the_truth():
    full = np.random.default_rng(0).normal(size=(100, 5))
    noisy = full + 0.1 * np.random.default_rng(1).normal(size=full.shape)
    assert depth.fidelity(full, full) == 0.0
    assert depth.fidelity(10 * noisy, 10 * full) == pytest.approx(depth.fidelity(noisy, full))


def test_label_metrics_count_confident_errors():
    truth = np.array(["a", "a", "b", "b"])
    out = depth.label_metrics(truth, np.array(["a", "b", "b", "a"]), np.array([0.9, 0.8, 0.6, 0.4]))
    assert out["accuracy"] == 0.5
    assert out["confident_wrong"] == 0.25  # one wrong label above 0.5, one below
    # calibrated confidences 0.9, 0.8 and 0.6 would be wrong 0.1 + 0.2 + 0.4 times; 0.4 is not confident
    assert out["confident_wrong_implied"] == pytest.approx(0.7 / 4)


def test_records_replace_reruns_and_report(tmp_path):
    row = {"task": "cbmc", "seed": 0, "f": 0.05, "umis": 80.0, "method": "dice", "accuracy": 0.5, "ari": 0.4}
    path = tmp_path / "depth.csv"
    depth.save([row], path)
    depth.save([{**row, "accuracy": 0.9}, {**row, "seed": 1, "accuracy": 0.7}], path)
    records = pd.read_csv(path)
    assert len(records) == 2
    assert sorted(records["accuracy"]) == [0.7, 0.9]  # the rerun of seed 0 replaced the first record
    text = depth.report(path, tmp_path / "depth.md")
    assert "| 0.05 | 80 | dice | 2 | 0.800 ± 0.141 |" in text
    assert "**0.80**" in depth.readme_table(path)


def test_targets_follow_the_issue_rules():
    """Each verdict of the targets table on records built to pass or fail it."""
    targets = pytest.importorskip("depth_targets")
    rows = []
    for seed, jitter in enumerate((-0.01, 0.01)):
        for f, acc, ari in ((1.0, 0.95, 0.84), (0.2, 0.94, 0.84), (0.05, 0.90, 0.80)):
            rows += [
                {
                    "task": "cbmc",
                    "seed": seed,
                    "f": f,
                    "method": "dice",
                    "accuracy": acc + jitter,
                    "ece": 0.02,
                    "confident_wrong": 0.08,
                    "confident_wrong_implied": 0.07,
                    "ari": ari + jitter,
                    "fidelity": 0.1 if f < 1 else np.nan,
                },
                {"task": "cbmc", "seed": seed, "f": f, "method": "naive_bayes", "accuracy": 0.89},
                {
                    "task": "cbmc",
                    "seed": seed,
                    "f": f,
                    "method": "pca",
                    "accuracy": 0.5,
                    "ari": 0.83 if f == 0.2 else 0.6,
                    "fidelity": 2.0 if f < 1 else np.nan,
                },
                {
                    "task": "cbmc",
                    "seed": seed,
                    "f": f,
                    "method": "knn_smooth",
                    "ari": 0.5,
                    "fidelity": 0.05 if f == 0.05 else 3.0,
                },
            ]
    lines = "\n".join(targets.target_lines(pd.DataFrame(rows)))
    assert (
        "| accuracy at f = 0.2 within 0.02 of full depth | cbmc | 0.940 ± 0.014 vs 0.950 ± 0.014 (-0.010): met |"
        in lines
    )
    assert "| accuracy at f = 0.05 ≥ naive Bayes and scArches | cbmc | 0.900 ± 0.014 vs 0.890 / nan: met |" in lines
    assert "largest 0.020: met" in lines
    assert "0.080 ± 0.000 (its confidences imply 0.070 ± 0.000): not met" in lines
    # ARI 0.84 ± 0.014 against PCA's 0.83 at f = 0.2 is within the spread; 0.80 against 0.60 at 5 % is above
    assert "f = 0.2: 0.840 ± 0.014 vs pca 0.830 ± 0.000 (not above); f = 0.05: 0.800 ± 0.014 vs pca 0.600" in lines
    assert "not met at f = 0.05 |" in lines  # kNN smoothing's 0.05 beats DICE's 0.1 at 5 % only


def test_train_settings_take_the_command_line_options():
    from types import SimpleNamespace

    import dice

    def options(**given):
        return SimpleNamespace(
            **{"ambient_fraction": None, "count_loadings_width": None, "count_dispersion": None} | given
        )

    default = depth.train_settings(options())
    assert default.ambient_fraction == 0.0 and default.count_loadings_width == 1.5
    assert default.count_dispersion == dice.tl.TrainSettings().count_dispersion  # no option: the package's
    soupy = depth.train_settings(options(ambient_fraction=0.1, count_loadings_width="none"))
    assert soupy.ambient_fraction == 0.1 and soupy.count_loadings_width is None
    assert depth.train_settings(options(count_dispersion="pooled")).count_dispersion == "pooled"


def test_transfer_settings_take_the_command_line_options():
    from types import SimpleNamespace

    import dice

    assert depth.transfer_settings(SimpleNamespace(count_profiles=None)) == dice.tl.TransferSettings()
    assert depth.transfer_settings(SimpleNamespace(count_profiles=1)).count_profiles == 1
