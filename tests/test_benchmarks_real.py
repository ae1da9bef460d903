"""Smoke test of the real-data benchmark (benchmarks/real.py, benchmarks/_real_tasks.py).

Runs on a tiny subset of the embedded CBMC data (no DICE_DATA_DIR needed): 300 reference and 80 query cells,
a 60-step prior and a 2-iteration paper sampler. Peers whose package is not installed in the running
environment are skipped by the benchmark itself (and reported as skipped).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
tasks_mod = pytest.importorskip("_real_tasks")
real = pytest.importorskip("real")


@pytest.fixture(scope="module")
def tiny_task():
    spec = dataclasses.replace(tasks_mod.TASKS["cbmc"], dataset="cbmc_embedded")
    original = tasks_mod.TASKS["cbmc"]
    tasks_mod.TASKS["cbmc"] = spec
    try:
        yield tasks_mod.prepare_task("cbmc", 0, max_ref_cells=300, max_query_cells=80)
    finally:
        tasks_mod.TASKS["cbmc"] = original


def test_stratified_split_is_disjoint_and_keeps_every_label():
    labels = np.array(["a"] * 50 + ["b"] * 20 + ["c"] * 3)
    ref, query = tasks_mod._stratified_split(labels, 0.1, seed=1)
    assert np.intersect1d(ref, query).size == 0
    assert np.union1d(ref, query).size == labels.size
    assert set(labels[query]) == {"a", "b", "c"}
    ref2, _ = tasks_mod._stratified_split(labels, 0.1, seed=2)
    assert not np.array_equal(ref, ref2)


def test_prepared_task_shares_genes_and_masks_excluded_labels(tiny_task):
    task = tiny_task
    assert list(task.ref.var_names) == list(task.query.var_names)
    assert task.ref.n_obs <= 300 and task.query.n_obs <= 80
    assert "counts" in task.ref.layers and "counts" in task.query.layers
    raw_q = task.query.obs["label"].astype(str).to_numpy()
    assert pd.isna(task.query_labels[raw_q == "Unknown"]).all()
    assert not pd.isna(task.query_labels[raw_q != "Unknown"]).any()
    # log-normalised over the selected genes: each cell sums to 1e4 before log1p
    sums = np.expm1(np.asarray(task.query.X.todense() if hasattr(task.query.X, "todense") else task.query.X))
    np.testing.assert_allclose(sums.sum(axis=1), 1e4, rtol=1e-3)


def test_run_task_seed_and_report(tiny_task, tmp_path):
    import dice
    from dice.pp._linear import LinearEmbedding

    methods = ["pca", "knn5", "magic", "dice_default", "dice_paper"]
    records = real.run_task_seed(tiny_task, methods, n_steps=60, paper_n_iter=2, log=lambda s: None)
    frame = pd.DataFrame(records)
    got = set(frame["method"])
    assert {"pca", "knn5", "dice_default", "dice_paper"} <= got
    assert ("magic" in got) == real.available("magic")
    assert "error" not in frame or frame["error"].isna().all()
    assert np.isfinite(frame["leiden_oracle_ari"]).all() and (frame["seconds"] >= 0).all()
    # the PCA peer is exactly DICE's starting point V^T x, PCA's loadings before their refit to the counts
    settings = dice.tl.TrainSettings(n_updates=2, count_loadings_width=None)
    model = dice.tl.train_prior(tiny_task.ref, n_comps=25, settings=settings, progress=False)
    embedding = LinearEmbedding.fit(tiny_task.ref.X, tiny_task.ref.var_names, n_comps=25)
    np.testing.assert_allclose(embedding.loadings, model.embedding.loadings, atol=1e-5)
    ref_split, query_split = tasks_mod.build_peer_splits(tiny_task, embedding)
    query = tiny_task.query.copy()
    dice.pp.project(query, model)
    np.testing.assert_allclose(query_split.X @ ref_split.loadings, query.obsm["X_dice_pca"], atol=1e-4)
    np.testing.assert_allclose(
        tasks_mod.reference_scores(tiny_task.query, embedding), query.obsm["X_dice_pca"], atol=1e-4
    )
    real.write_report(frame, tmp_path / "real.md", header="# test")
    text = (tmp_path / "real.md").read_text()
    assert "| DICE default |" in text and "ARI oracle" in text and "paired by seed" in text
