from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from dice.metrics import EVALUATE_KEYS, evaluate, format_mean_sd, summarize


def test_evaluate_on_blobs(blobs):
    x, labels, clean = blobs
    result = evaluate(x, labels, clean_latents=clean, seed=0)
    assert tuple(result) == EVALUATE_KEYS
    assert all(isinstance(v, float) for v in result.values())
    assert result["n_cells"] == 300 and result["n_classes"] == 3
    assert result["silhouette"] > 0.8
    assert result["clisi"] == pytest.approx(1.0)
    assert result["knn_accuracy"] == 1.0
    # noise is N(0, I_10): squared distance to the centre has expectation 10
    assert result["latent_error"] == pytest.approx(10.0, rel=0.1)
    assert result["latent_error_per_dim"] == pytest.approx(result["latent_error"] / 10)
    for rule in ("oracle", "count", "stable"):
        assert result[f"leiden_{rule}_ari"] == pytest.approx(1.0)
        assert result[f"leiden_{rule}_n_clusters"] == 3
    pd.DataFrame([result])  # a valid DataFrame row


def test_evaluate_without_latents_or_leiden(blobs):
    x, labels, _ = blobs
    result = evaluate(x, labels, leiden=False)
    assert tuple(result) == EVALUATE_KEYS
    assert np.isnan(result["latent_error"])
    assert all(np.isnan(v) for k, v in result.items() if k.startswith("leiden_"))
    assert result["knn_accuracy"] == 1.0


def test_evaluate_drops_unlabeled_cells_with_one_warning(blobs):
    x, labels, clean = blobs
    partial = pd.Series(pd.Categorical(labels))
    partial[:10] = np.nan
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = evaluate(x, partial, clean_latents=clean, leiden=False)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(messages) == 1 and "Dropping 10 of 300" in messages[0]
    assert result["n_cells"] == 290


def test_evaluate_errors(blobs):
    x, labels, clean = blobs
    with pytest.raises(ValueError, match="entries"):
        evaluate(x, labels[:-1], leiden=False)
    with pytest.raises(ValueError, match="at least 2"):
        evaluate(x, np.full(len(x), "one"), leiden=False)
    with pytest.raises(ValueError, match="clean_latents"):
        evaluate(x, labels, clean_latents=clean[:-1], leiden=False)


def _records():
    return [
        {"method": "dice", "seed": 0, "ari": 0.8, "clisi": 1.1, "latent_error": np.nan},
        {"method": "dice", "seed": 1, "ari": 0.9, "clisi": 1.3, "latent_error": np.nan},
        {"method": "dice", "seed": 2, "ari": 1.0, "clisi": 1.2, "latent_error": np.nan},
        {"method": "pca", "seed": 0, "ari": 0.5, "clisi": 2.0, "latent_error": 3.0},
        {"method": "pca", "seed": 1, "ari": 0.7, "clisi": 2.4, "latent_error": np.nan},
    ]


def test_summarize_mean_and_sd():
    summary = summarize(_records(), by="method")
    assert list(summary.index) == ["dice", "pca"]
    assert ("seed", "mean") not in summary.columns
    assert summary.loc["dice", ("n", "count")] == 3
    assert summary.loc["dice", ("ari", "mean")] == pytest.approx(0.9)
    assert summary.loc["dice", ("ari", "sd")] == pytest.approx(np.std([0.8, 0.9, 1.0], ddof=1))
    assert summary.loc["pca", ("clisi", "sd")] == pytest.approx(np.std([2.0, 2.4], ddof=1))
    assert np.isnan(summary.loc["dice", ("latent_error", "mean")])
    assert summary.loc["pca", ("latent_error", "mean")] == pytest.approx(3.0)
    assert np.isnan(summary.loc["pca", ("latent_error", "sd")])


def test_summarize_grouping_options():
    records = [dict(r, dataset="sim") for r in _records()]
    two = summarize(records, by=["dataset", "method"], metrics=["ari"])
    assert list(two.index) == [("sim", "dice"), ("sim", "pca")]
    assert set(two.columns.get_level_values(0)) == {"n", "ari"}
    pooled = summarize(pd.DataFrame(_records()), by=None, metrics=["ari"])
    assert pooled.loc["all", ("ari", "mean")] == pytest.approx(np.mean([0.8, 0.9, 1.0, 0.5, 0.7]))
    with pytest.raises(ValueError, match="not found"):
        summarize(_records(), by="model")
    with pytest.raises(ValueError, match="empty"):
        summarize([])


def test_format_mean_sd_markdown():
    table = format_mean_sd(summarize(_records(), by="method"), digits=2)
    lines = table.splitlines()
    assert lines[0] == "| method | n | ari | clisi | latent_error |"
    assert lines[1] == "|---|---:|---:|---:|---:|"
    assert lines[2] == "| dice | 3 | 0.90 ± 0.10 | 1.20 ± 0.10 | – |"
    assert lines[3] == "| pca | 2 | 0.60 ± 0.14 | 2.20 ± 0.28 | 3.00 |"
    only = format_mean_sd(summarize(_records(), by="method"), metrics=["clisi"], index_name="Method")
    assert only.splitlines()[0] == "| Method | n | clisi |"
