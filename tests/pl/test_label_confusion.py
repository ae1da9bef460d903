"""dice.pl.label_confusion draws the held-out confusion of transfer_labels, row-normalised."""

from __future__ import annotations

import anndata as ad
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

import dice
from dice._validation import DiceInputError


def _transferred(confusion) -> ad.AnnData:
    """An AnnData with the uns entries transfer_labels writes (the numbers made up)."""
    a = ad.AnnData(np.zeros((4, 2), dtype=np.float32))
    confusion = np.asarray(confusion)
    a.uns["dice_label_transfer"] = {
        "classes": ["B", "CD4 T", "CD8 T"],
        "held_out": {"confusion": confusion, "n_cells": confusion.sum(axis=1)},
        "reference_cells_depth": {"median_before": 1400.0, "median_after": 70.0},
    }
    return a


def test_rows_are_shares_of_each_label_and_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = _transferred([[40, 2, 0], [0, 300, 3], [0, 30, 0]])
    ax = dice.pl.label_confusion(a)
    assert isinstance(ax, plt.Axes)
    shown = ax.images[0].get_array()
    np.testing.assert_allclose(shown, [[40 / 42, 2 / 42, 0], [0, 300 / 303, 3 / 303], [0, 1, 0]])
    texts = {t.get_text() for t in ax.texts}
    assert "100%" in texts and "0%" not in texts  # shares below min_share are left unwritten
    assert [t.get_text() for t in ax.get_yticklabels()] == ["B (42)", "CD4 T (303)", "CD8 T (30)"]
    assert "70 counts" in ax.get_title()
    assert list(tmp_path.iterdir()) == []
    plt.close("all")


def test_save_writes_the_file_and_missing_report_says_what_to_run(tmp_path):
    a = _transferred([[5, 0, 0], [0, 5, 0], [0, 0, 0]])  # a label without held-out cells: an empty row
    dice.pl.label_confusion(a, save=tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000
    with pytest.raises(DiceInputError, match="transfer_labels"):
        dice.pl.label_confusion(ad.AnnData(np.zeros((2, 2), dtype=np.float32)))
    plt.close("all")


def test_truth_draws_the_query_cells_own_labels():
    a = _transferred([[5, 0, 0], [0, 5, 0], [0, 0, 5]])
    a = ad.AnnData(np.zeros((6, 2), dtype=np.float32), uns=a.uns)
    a.obs["annotation"] = ["B", "T_CD8", "T_CD8", "T_CD8", "other", None]
    a.obs["dice_label"] = ["B", "CD4 T", "CD4 T", "CD8 T", "B", "B"]
    ax = dice.pl.label_confusion(a, truth="annotation")
    rows = [t.get_text() for t in ax.get_yticklabels()]
    assert rows == ["B (1)", "T_CD8 (3)", "other (1)"]  # the unlabelled cell is left out
    np.testing.assert_allclose(ax.images[0].get_array(), [[1, 0, 0], [0, 2 / 3, 1 / 3], [1, 0, 0]])
    assert "obs['annotation']" in ax.get_ylabel()
    with pytest.raises(DiceInputError, match="not a column"):
        dice.pl.label_confusion(a, truth="cell_type")
    plt.close("all")
