"""Per-label report of transfer_labels: held-out recall, the warning about labels that are mostly lost,
label-conditional conformal sets."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import dice
from dice.tl import PosteriorSettings, TrainSettings, TransferSettings
from dice.tl._confidence import class_thresholds, conformal_threshold
from dice.tl._label_report import MIN_CELLS, label_report, unreliable_labels, warn_unreliable_labels

FAST = {
    "training": TrainSettings(n_updates=200),
    "n_comps": 15,
    "settings": PosteriorSettings(n_samples=5),
    "progress": False,
}


def test_label_report_counts_by_hand():
    truth = np.array([0, 0, 0, 1, 1])
    probabilities = np.array([[0.9, 0.1, 0], [0.6, 0.4, 0], [0.3, 0.7, 0], [0.2, 0.8, 0], [0.7, 0.3, 0]])
    sets = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 1, 0], [1, 1, 0]], dtype=bool)
    out = label_report(truth, probabilities, sets, n_classes=3)
    np.testing.assert_array_equal(out["confusion"], [[2, 1, 0], [1, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(out["n_cells"], [3, 2, 0])
    np.testing.assert_allclose(out["recall"], [2 / 3, 1 / 2, np.nan])
    np.testing.assert_allclose(out["precision"], [2 / 3, 1 / 2, np.nan])  # label 2 is never called
    np.testing.assert_allclose(out["set_coverage"], [2 / 3, 1.0, np.nan])


def _report(recall_b: float, n_b: int) -> dict:
    """Label "b" with ``n_b`` held-out cells, a share ``recall_b`` of them right and the rest called "a"."""
    right = round(recall_b * n_b)
    confusion = np.array([[50, 0], [n_b - right, right]])
    truth = np.repeat([0, 0, 1, 1], [50, 0, n_b - right, right])
    called = np.repeat([0, 1, 0, 1], [50, 0, n_b - right, right])
    out = label_report(truth, np.eye(2)[called], np.eye(2, dtype=bool)[called], 2)
    np.testing.assert_array_equal(out["confusion"], confusion)
    return out


def test_only_labels_mostly_lost_with_enough_cells_are_named():
    phrases = unreliable_labels(_report(0.2, 20), ["a", "b"])
    assert len(phrases) == 1
    assert phrases[0].startswith("'b' (20% of 20 held-out cells right; 80% called 'a')")
    assert unreliable_labels(_report(0.6, 20), ["a", "b"]) == []
    assert unreliable_labels(_report(0.0, MIN_CELLS - 1), ["a", "b"]) == []  # too few cells to tell
    with pytest.warns(UserWarning, match=r"measured as this query is, .* 1 label\(s\): 'b' \(20% .*label_confusion"):
        warn_unreliable_labels(_report(0.2, 20), ["a", "b"], key="dice")
    with pytest.warns(UserWarning, match="cells, at the reference's depth, mostly"):
        warn_unreliable_labels(_report(0.2, 20), ["a", "b"], key="dice", matched=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_unreliable_labels(_report(0.9, 20), ["a", "b"], key="dice")


def test_class_thresholds_cover_each_label_and_fall_back_when_it_is_rare():
    rng = np.random.default_rng(0)
    codes = np.repeat([0, 1, 2], [400, 60, 5])
    true_p = np.concatenate([rng.uniform(0.6, 1.0, 400), rng.uniform(0.0, 0.3, 60), rng.uniform(0.0, 0.1, 5)])
    pooled = conformal_threshold(true_p, 0.1)
    out = class_thresholds(true_p, codes, 3, 0.1, pooled)
    assert out[2] == pooled  # 5 cells cannot set a threshold at alpha = 0.1
    for c in (0, 1):
        own = true_p[codes == c]
        assert out[c] == min(conformal_threshold(own, 0.1), pooled)  # never above the pooled threshold
        assert np.mean(own >= out[c]) >= 0.9
    assert out[1] < pooled < conformal_threshold(true_p[codes == 0], 0.1)  # label 0 keeps the pooled one
    assert np.mean(true_p[codes == 1] >= pooled) < 0.5  # the pooled threshold misses the confused label


@pytest.fixture(scope="module")
def confused():
    """Five clusters, split at random into reference and query; a third of cluster_1's cells carry another
    label, "0b", chosen at random: no classifier can tell it from cluster_1, so its cells mostly get that."""
    cells, _ = dice.datasets.synthetic("e2_single", n_reference=1000, n_query=10, n_genes=100, seed=0)
    rng = np.random.default_rng(1)
    labels = cells.obs["label"].astype(str).to_numpy().copy()
    labels[(labels == "cluster_1") & (rng.random(len(labels)) < 0.33)] = "0b"
    cells.obs["label"] = pd.Categorical(labels)
    query = rng.random(cells.n_obs) < 0.3
    return cells[~query].copy(), cells[query].copy()


def _transfer(confused, **transfer):
    """transfer_labels of the confused query (a copy), with ``TransferSettings(**transfer)``."""
    ref, query = confused
    return dice.tl.transfer_labels(
        query, ref, labels_key="label", seed=0, copy=True, transfer=TransferSettings(**transfer), **FAST
    )


def test_transfer_reports_and_warns_about_an_inseparable_label(confused):
    _, query = confused
    with pytest.warns(UserWarning, match="'0b'"):
        out = _transfer(confused, calibration_fraction=0.4, set_method="class_conformal")
    info = out.uns["dice_label_transfer"]
    classes = list(info["classes"])
    held = info["held_out"]
    b = classes.index("0b")
    assert held["n_cells"][b] >= MIN_CELLS and held["recall"][b] < 0.5
    others = [i for i in range(len(classes)) if classes[i] not in ("0b", "cluster_1")]
    assert np.all(held["recall"][others] > 0.9)
    np.testing.assert_array_equal(held["confusion"].sum(axis=1), held["n_cells"])
    assert held["n_cells"].sum() == info["n_calibration_cells"]
    # label-conditional sets: "0b" is in the set of most of its own query cells; the pooled threshold rarely
    truth = query.obs["label"].astype(str).to_numpy()
    in_set = np.array(["0b" in s.split("|") for s in out.obs["dice_label_set"].astype(str)])
    assert in_set[truth == "0b"].mean() >= 0.7
    p_b = out.obsm["dice_label_probabilities"]["0b"].to_numpy()
    assert info["conformal_thresholds"][b] < info["conformal_threshold"]
    assert np.mean(p_b[truth == "0b"] >= info["conformal_threshold"]) < in_set[truth == "0b"].mean()


def test_held_out_report_survives_h5ad(confused, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = _transfer(confused)
    path = tmp_path / "q.h5ad"
    out.write_h5ad(path)
    back = ad.read_h5ad(path)
    held, again = out.uns["dice_label_transfer"]["held_out"], back.uns["dice_label_transfer"]["held_out"]
    for key in ("n_cells", "recall", "precision", "set_coverage", "confusion"):
        np.testing.assert_array_equal(held[key], again[key])
    # the pooled sets: one threshold for every label
    info = out.uns["dice_label_transfer"]
    assert np.all(info["conformal_thresholds"] == info["conformal_threshold"])


def test_report_without_novelty_and_with_credible_sets(confused):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = _transfer(confused, novelty_alpha=None, set_method="credible")
    info = out.uns["dice_label_transfer"]
    n = len(info["classes"])
    assert list(out.obsm["dice_label_probabilities"].columns) == list(info["classes"])  # no "unassigned"
    held = info["held_out"]
    assert held["confusion"].shape == (n, n) and held["set_coverage"].shape == (n,)
    seen = held["n_cells"] > 0
    assert np.all(held["set_coverage"][seen] >= held["recall"][seen] - 1e-12)  # a credible set holds the top label
