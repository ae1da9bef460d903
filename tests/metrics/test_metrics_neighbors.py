from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dice.metrics import clisi, clisi_per_cell, knn_accuracy, knn_transfer_accuracy, silhouette
from dice.metrics._neighbors import neighbors_excluding_self


def test_clisi_is_one_for_separated_clusters(blobs):
    x, labels, _ = blobs
    assert clisi(x, labels, n_neighbors=30) == pytest.approx(1.0)
    per_cell = clisi_per_cell(x, labels, n_neighbors=30)
    assert per_cell.shape == (300,)
    assert np.allclose(per_cell, 1.0)


def test_clisi_approaches_class_count_when_mixed():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 5))
    labels = rng.integers(0, 4, 2000)
    small_k = clisi(x, labels, n_neighbors=30)
    large_k = clisi(x, labels, n_neighbors=200)
    # E[sum p^2] = 1/4 + (3/4)/k  ->  about 3.64 for k=30, 3.94 for k=200
    assert 3.4 < small_k < 3.85
    assert 3.85 < large_k <= 4.0
    assert clisi_per_cell(x, labels, n_neighbors=200).max() <= 4.0 + 1e-12


def test_clisi_excludes_the_cell_itself():
    x = np.array([[0.0], [1.0], [1.1], [50.0], [50.1]])
    labels = ["a", "b", "b", "c", "c"]
    # cell 0's two nearest other cells are both "b": 1.0 (would be 2.0 if it counted itself)
    assert clisi_per_cell(x, labels, n_neighbors=2)[0] == pytest.approx(1.0)


def test_neighbors_exclude_self_even_with_duplicates():
    x = np.vstack([np.zeros((20, 2)), np.ones((5, 2))])
    idx = neighbors_excluding_self(x, 3)
    assert idx.shape == (25, 3)
    assert not np.any(idx == np.arange(25)[:, None])


def test_silhouette_higher_for_separated_blobs(make_blobs):
    x_sep, y_sep, _ = make_blobs(spread=1.0)
    x_mix, y_mix, _ = make_blobs(spread=15.0)
    sep, mix = silhouette(x_sep, y_sep), silhouette(x_mix, y_mix)
    assert sep > 0.8
    assert sep > mix + 0.3
    assert -1.0 <= mix <= 1.0
    sub = silhouette(x_sep, y_sep, sample_size=150, seed=1)
    assert sub == pytest.approx(sep, abs=0.05)
    assert silhouette(x_sep, y_sep, metric="euclidean") > 0.5


def test_knn_accuracy_separated_and_random(blobs):
    x, labels, _ = blobs
    assert knn_accuracy(x, labels, n_neighbors=15) == 1.0
    rng = np.random.default_rng(1)
    x_rand, y_rand = rng.normal(size=(1500, 3)), rng.integers(0, 3, 1500)
    assert abs(knn_accuracy(x_rand, y_rand, n_neighbors=15) - 1 / 3) < 0.06


def test_knn_accuracy_leaves_one_out_and_breaks_ties_by_nearest():
    # cell 0 ("a") sits next to one "b" (nearest) and one "a": tie -> nearest label "b" -> wrong
    x = np.array([[0.0], [0.5], [-1.0], [10.0], [10.2]])
    labels = ["a", "b", "a", "b", "b"]
    # predictions: 0 -> b (neighbours 1:b, 2:a tie; nearest is b), 1 -> a (neighbours 0:a, 2:a),
    # 2 -> a (neighbours 0:a, 1:b tie; nearest is a), 3 -> b, 4 -> b: three of five correct
    assert knn_accuracy(x, labels, n_neighbors=2) == pytest.approx(3 / 5)


def test_knn_transfer_accuracy(make_blobs):
    x_ref, y_ref, _ = make_blobs(seed=0)
    x_query, y_query, _ = make_blobs(n_per_class=50, seed=5)
    names = np.array(["x", "y", "z"])
    ref_labels = pd.Categorical(names[y_ref])
    assert knn_transfer_accuracy(x_ref, ref_labels, x_query, list(names[y_query])) == 1.0
    # a query class the reference never saw can only be wrong
    query_labels = names[y_query].astype(object)
    query_labels[y_query == 2] = "unseen"
    assert knn_transfer_accuracy(x_ref, names[y_ref], x_query, query_labels) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="dimension"):
        knn_transfer_accuracy(x_ref, y_ref, x_query[:, :5], y_query)


def test_neighbor_metric_errors(blobs):
    x, labels, _ = blobs
    with pytest.raises(ValueError, match="entries"):
        clisi(x, labels[:-1])
    with pytest.raises(ValueError, match="smaller than"):
        knn_accuracy(x[::30], labels[::30], n_neighbors=10)
    with pytest.raises(ValueError, match="at least 2"):
        silhouette(x, np.zeros(len(x)))
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        knn_accuracy(bad, labels)


def test_unlabeled_cells_are_dropped(blobs):
    x, labels, _ = blobs
    partial = labels.astype(object)
    partial[:7] = None
    with pytest.warns(UserWarning, match="Dropping 7 of 300"):
        per_cell = clisi_per_cell(x, partial, n_neighbors=10)
    assert per_cell.shape == (293,)
