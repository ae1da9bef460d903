"""Threads for block-wise numpy work that is mostly element-wise (numpy runs it on one core per thread).

BLAS and torch are pinned to one thread while the blocks run, so the threads do not oversubscribe the cores
and each block's arithmetic is the same whatever the number of threads (the results do not depend on it).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

__all__ = ["blas_threads", "map_in_threads", "pinned_blas"]

T = TypeVar("T")

#: Working memory of the calls running at once: caps the threads when one call needs ``block_bytes``.
THREADS_BYTES = 512 * 2**20


def blas_threads() -> int:
    """The thread limit BLAS runs under now (``OMP_NUM_THREADS``, ``threadpool_limits``); the CPU count if unknown."""
    from threadpoolctl import threadpool_info

    limits = [int(lib.get("num_threads") or 0) for lib in threadpool_info() if lib.get("user_api") == "blas"]
    return max(limits) if limits and max(limits) > 0 else len(os.sched_getaffinity(0))


_pin_lock = threading.Lock()
_pin_state: dict = {"depth": 0, "limiter": None, "torch_threads": None}


@contextmanager
def pinned_blas() -> Iterator[None]:
    """BLAS and torch at one thread while any caller is inside; the original limits come back when the last
    leaves.

    Torch too: its batched triangular solves (:func:`dice.likelihood._newton.solve_lower`) would otherwise
    each start a team of threads per call, and blocks solved side by side would oversubscribe the cores
    (BENCHMARKS.md section 1). Torch keeps a thread count per thread: the first caller's pin reaches the
    threads started from then on, and every caller pins its own thread too (a Dask worker that has run
    torch keeps its own count otherwise), getting its count back when it leaves.
    Callers may overlap (e.g. Dask tasks in the threaded scheduler): a plain ``threadpool_limits`` per
    caller would restore the limit it saw on entry, which may be another caller's 1, for good.
    """
    import torch
    from threadpoolctl import threadpool_limits

    own = torch.get_num_threads()  # this thread's count
    with _pin_lock:
        if _pin_state["depth"] == 0:
            _pin_state["limiter"] = threadpool_limits(limits=1, user_api="blas")
            _pin_state["torch_threads"] = own
        torch.set_num_threads(1)
        _pin_state["depth"] += 1
    try:
        yield
    finally:
        with _pin_lock:
            _pin_state["depth"] -= 1
            if _pin_state["depth"] == 0:
                _pin_state["limiter"].restore_original_limits()
                torch.set_num_threads(_pin_state["torch_threads"])
                _pin_state["limiter"] = _pin_state["torch_threads"] = None
            else:
                torch.set_num_threads(own)


def map_in_threads(
    function: Callable[[int], T], starts: Iterable[int], *, n_threads: int | None = None, block_bytes: int = 0
) -> list[T]:
    """``[function(start) for start in starts]``, in up to ``n_threads`` threads (default :func:`blas_threads`).

    ``block_bytes`` (one call's working memory) caps the threads so that together they stay within
    :data:`THREADS_BYTES`. Results come back in the order of ``starts``; an exception in a call is raised here.
    """
    starts = list(starts)
    if n_threads is not None and n_threads < 1:
        raise ValueError(f"n_threads must be at least 1, got {n_threads}")
    threads = blas_threads() if n_threads is None else int(n_threads)
    threads = max(1, min(threads, len(starts), THREADS_BYTES // max(block_bytes, 1)))
    with pinned_blas():
        if threads == 1:
            return [function(start) for start in starts]
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dice-block") as pool:
            return list(pool.map(function, starts))
