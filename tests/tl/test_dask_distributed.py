"""Dask-backed AnnData on a ``distributed.LocalCluster``: the same numbers as in memory and on Dask's threads,
with the measurement and posterior of every chunk run on the workers and the model sent once to each."""

from __future__ import annotations

import numpy as np
import pytest

import dice
from dice.tl import PosteriorSettings, TrainSettings
from helpers import make_clusters

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

TRAINING = TrainSettings(n_updates=30, batch_size=128, hidden_dim=16, n_blocks=1)
SETTINGS = PosteriorSettings(n_samples=2)


def _lazy(adata, chunks):
    lazy = adata.copy()
    lazy.X = da.from_array(np.asarray(adata.X), chunks=chunks)
    return lazy


@pytest.fixture(scope="module")
def client():
    # two worker processes, one thread each; no dashboard (its optional dependencies are not installed)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def _count_model_loads():
    """Run on each worker: count the DicePrior objects unpickled there (the model arriving), from now on."""
    from dice.models import _prior

    def __setstate__(self, state):
        _prior._loads_for_test = getattr(_prior, "_loads_for_test", 0) + 1
        self.__dict__.update(state)

    _prior._loads_for_test = 0
    _prior.DicePrior.__setstate__ = __setstate__


def _model_loads():
    from dice.models import _prior

    return getattr(_prior, "_loads_for_test", 0)


def _dice_tasks(stream, prefix: str) -> list[dict]:
    return [task for task in stream.data if str(task["key"]).startswith(prefix)]


# Shutting the cluster down can warn about connections closed mid-flight; nothing the test checks.
# a worker connection torn down at shutdown can report an unclosed transport; nothing the test checks
@pytest.mark.filterwarnings("ignore:unclosed:ResourceWarning")
# another Dask cluster on this machine (a benchmark) may hold the scheduler's default HTTP port; ours moves
@pytest.mark.filterwarnings("ignore:Port 8787 is already in use:UserWarning")
def test_distributed_cluster_gives_the_in_memory_and_threaded_results(client, torch_threads, monkeypatch):
    reference, query = make_clusters(300, seed=11), make_clusters(2500, seed=12)
    in_memory = dice.tl.train_prior(reference, n_comps=3, settings=TRAINING, seed=0, progress=False, device="cpu")

    lazy_reference = _lazy(reference, chunks=(64, 60))
    workers = set(client.scheduler_info()["workers"])
    assert len(workers) == 2
    with distributed.get_task_stream(client) as fit_tasks:  # the reads of every block run on the workers
        on_cluster = dice.tl.train_prior(
            lazy_reference, n_comps=3, settings=TRAINING, seed=0, progress=False, device="cpu"
        )
    assert len(fit_tasks.data) > 0
    np.testing.assert_array_equal(on_cluster.embedding.loadings, in_memory.embedding.loadings)
    for name, tensor in in_memory.network.state_dict().items():
        assert torch_threads.equal(on_cluster.network.state_dict()[name], tensor), name

    # every posterior this process samples goes through here; the workers' own copies are not patched
    from dice.models import _prior

    sampled_here = []
    sample_posterior = _prior.sample_posterior
    monkeypatch.setattr(
        _prior, "sample_posterior", lambda *a, **k: sampled_here.append(len(a[2])) or sample_posterior(*a, **k)
    )
    dense = query.copy()
    dice.tl.denoise(dense, model=in_memory, settings=SETTINGS, seed=3, progress=False)
    assert sampled_here == [query.n_obs]

    client.run(_count_model_loads)
    distributed_result = _lazy(query, chunks=(600, 30))
    with distributed.get_task_stream(client) as denoise_tasks:
        dice.tl.denoise(distributed_result, model=on_cluster, settings=SETTINGS, seed=3, progress=False)
    assert sampled_here == [query.n_obs]  # no posterior sampled in the client process
    record = distributed_result.uns["dice"]["dask"]
    assert record["scheduler"] == "distributed"
    assert record["n_chunks"] == 3 and record["chunk_cells"] == 1024  # 600-row chunks rounded to 1,024 cells
    measure, posterior = _dice_tasks(denoise_tasks, "dice-measure"), _dice_tasks(denoise_tasks, "dice-posterior")
    assert len(measure) == len(posterior) == 3
    assert {task["worker"] for task in measure + posterior} <= workers  # all ran on the cluster's workers
    # the model was unpickled once on each worker (scattered, broadcast), not once per chunk
    assert client.run(_model_loads) == dict.fromkeys(workers, 1)

    threaded = _lazy(query, chunks=(40, 30))
    with distributed.get_task_stream(client) as none_there, dask.config.set(scheduler="threads"):
        dice.tl.denoise(threaded, model=in_memory, settings=SETTINGS, seed=3, progress=False)
    assert len(none_there.data) == 0  # Dask's local threads, not the cluster
    assert sorted(sampled_here[1:]) == [452, 1024, 1024]  # per chunk, in this process
    assert client.run(_model_loads) == dict.fromkeys(workers, 1)

    for result in (distributed_result, threaded):
        # the outputs are computed numpy arrays, not dask arrays
        assert isinstance(result.obsm["X_dice"], np.ndarray)
        np.testing.assert_array_equal(result.obsm["X_dice"], dense.obsm["X_dice"])
        np.testing.assert_array_equal(result.obsm["X_dice_pca"], dense.obsm["X_dice_pca"])
        np.testing.assert_array_equal(result.obs["dice_uncertainty"], dense.obs["dice_uncertainty"])
        np.testing.assert_array_equal(result.obs["dice_noise_sd"], dense.obs["dice_noise_sd"])
