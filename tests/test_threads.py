"""dice._threads: ordered results, errors raised, BLAS and torch pinned while the blocks run, the memory cap."""

from __future__ import annotations

import threading

import pytest
from threadpoolctl import threadpool_info

from dice._threads import THREADS_BYTES, blas_threads, map_in_threads


def test_results_come_back_in_order_from_several_threads():
    seen = set()

    def work(start):
        seen.add(threading.current_thread().name)
        return start * 2

    assert map_in_threads(work, range(0, 40, 4), n_threads=3) == [2 * s for s in range(0, 40, 4)]
    assert blas_threads() >= 1
    if len(seen) > 1:  # the pool's threads did the work (one may take every task on a fast machine)
        assert all(name.startswith("dice-block") for name in seen)


def test_memory_caps_the_threads_and_blas_is_pinned_inside():
    names, limits = set(), []

    def work(start):
        names.add(threading.current_thread().name)
        limits.extend(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")
        return start

    # one call needs the whole budget: everything runs in the calling thread
    map_in_threads(work, range(5), n_threads=4, block_bytes=THREADS_BYTES)
    assert names == {threading.current_thread().name}
    assert set(limits) <= {1}


def test_an_error_in_a_block_is_raised():
    def work(start):
        if start == 3:
            raise RuntimeError("block 3 failed")
        return start

    with pytest.raises(RuntimeError, match="block 3"):
        map_in_threads(work, range(6), n_threads=2)
    with pytest.raises(ValueError, match="at least 1"):
        map_in_threads(work, range(6), n_threads=0)


def _blas_limits():
    return sorted(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")


def test_overlapping_callers_restore_the_original_limits():
    """Two callers inside at once (as Dask tasks in threads are): BLAS stays pinned until both have left,
    and the limits from before the first come back after the last."""
    from threadpoolctl import threadpool_limits

    from dice._threads import pinned_blas

    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_limits()
        assert before, "numpy loads a BLAS; threadpoolctl must see it"
        first, second = pinned_blas(), pinned_blas()
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)  # the first leaves while the second is still inside
        assert set(_blas_limits()) <= {1}
        second.__exit__(None, None, None)
        assert _blas_limits() == before


def test_torch_is_pinned_inside_and_restored_after():
    """Torch runs at one thread in the blocks (its batched solves would otherwise start a team per call and
    two blocks side by side oversubscribe the cores), and the caller's torch setting comes back after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = map_in_threads(lambda start: torch.get_num_threads(), range(4), n_threads=2)
        assert seen == [1, 1, 1, 1]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_torch_is_pinned_in_a_thread_that_set_its_own():
    """A worker thread that has run torch at two threads (a Dask worker) and calls in while another caller
    already holds the pin: its blocks still run torch at one thread, and it gets its own setting back."""
    import torch

    from dice._threads import pinned_blas

    seen, after = [], []

    def worker():
        torch.set_num_threads(2)  # this thread's own setting, made before the call
        seen.extend(map_in_threads(lambda start: torch.get_num_threads(), range(3), n_threads=1))
        after.append(torch.get_num_threads())

    before = torch.get_num_threads()
    try:
        with pinned_blas():  # another caller inside already
            thread = threading.Thread(target=worker)
            thread.start()
            thread.join()
    finally:
        torch.set_num_threads(before)
    assert seen == [1, 1, 1]
    assert after == [2]
