"""Shared fixtures: small synthetic data and a quickly trained prior (reused across tests)."""

from __future__ import annotations

import os

import anndata as ad
import pytest

from helpers import make_clusters

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def torch_threads():
    import torch

    torch.set_num_threads(int(os.environ.get("DICE_TEST_THREADS", "2")))
    return torch


@pytest.fixture(scope="session")
def reference() -> ad.AnnData:
    return make_clusters(600, seed=1)


@pytest.fixture()
def query() -> ad.AnnData:
    return make_clusters(120, seed=2)


@pytest.fixture(scope="session")
def trained_model(reference, torch_threads):
    import dice

    return dice.tl.train_prior(
        reference, n_comps=4, settings=dice.tl.TrainSettings(n_updates=400, batch_size=256), seed=0, progress=False
    )
