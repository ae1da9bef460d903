"""Dask-backed AnnData: measure and sample each row chunk as a task on the active Dask scheduler.

:func:`dice.tl.denoise` comes here when ``X`` (or the raw-count layer the count likelihood reads) is a dask
array. The rows are cut into chunks of a multiple of :data:`~dice.models._posterior.CHUNK_CELLS` (1,024)
cells, the array's own row chunks rounded to that multiple (columns joined), so that each chunk starts on a
sampler chunk and on a count-likelihood block: its draws are seeded ``(seed, c)`` with ``c`` the global sampler
chunk, exactly as in memory, and the results are equal to the in-memory path's. Two passes of tasks:

1. ``dice-measure-*``: the chunk's Gaussian measurement, ``V^T x`` and (count likelihood) count measurement,
   kept where they were computed (``dask.persist``). Only what needs all cells comes back to the client
   (``dice-statistics-*``): the value summary (checked as one pass over the data would), the depths (count
   likelihood: empty and shallow cells) and, for ``noise_var="dataset"``, the noise factors (one float per
   cell), whose mean is the dataset's noise level, computed as in memory.
2. ``dice-posterior-*``: the chunk's posterior at that level, next to its measurement.

The model travels once per worker: with a ``distributed`` client it is scattered to every worker
(``broadcast=True``) together with the gene alignment and the settings, and every task takes that copy; on the
threaded or synchronous scheduler the tasks share the client's objects. The outputs are gathered and
concatenated into numpy arrays for the caller to write in one step.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from itertools import pairwise

import numpy as np
import scipy.sparse as sp

from .._blocks import LogNormalized, _is_dask, _read
from .._settings import PosteriorSettings
from .._validation import DiceInputError, ValueSummary
from ..likelihood import GaussianLikelihood
from ..likelihood._gaussian import dataset_level
from ..models._posterior import CHUNK_CELLS, warn_clamped, warn_outside
from ..pp._align import align_genes
from ._latent import (
    CellMeasurements,
    LatentResult,
    MeasurementInputs,
    gaussian_kind,
    measure_counts,
    measure_values,
    posterior_of,
    warn_empty_cells,
)

__all__ = ["denoise_on_dask", "on_dask"]


@dataclass
class _Plan:
    """What every task needs besides its rows; shipped once to each worker."""

    model: object
    alignment: object
    likelihood: GaussianLikelihood
    settings: PosteriorSettings
    use_counts: bool
    counts_layer: str | None
    target_sum: float | None  # raw-count X, read as log1p(target_sum * c / sum(c))
    what: str


@dataclass
class _Measured:
    """One chunk's measurement, its value summary and a counts error left for the client to raise."""

    cells: CellMeasurements
    summary: ValueSummary
    error: DiceInputError | None


def on_dask(inputs: MeasurementInputs) -> bool:
    """Whether the chunked path runs: a matrix to measure is a dask array and the others are in memory."""
    matrix = inputs.matrix.counts if isinstance(inputs.matrix, LogNormalized) else inputs.matrix
    used = [m for m in (matrix, inputs.counts) if m is not None]
    in_memory = all(_is_dask(m) or isinstance(m, np.ndarray) or sp.issparse(m) for m in used)
    return in_memory and any(_is_dask(m) for m in used)


def _measure_chunk(plan: _Plan, values, counts) -> _Measured:
    """Task of the first pass: one chunk's measurement (``values``: its rows; ``counts``: its raw counts)."""
    matrix = values if plan.target_sum is None else LogNormalized(values, plan.target_sum)
    scores, factors, pca, summary = measure_values(
        plan.likelihood, plan.alignment, matrix, gaussian=not plan.use_counts
    )
    cells = CellMeasurements(scores, factors, pca, plan.likelihood, plan.settings.noise_var)
    error = None
    if plan.use_counts:
        try:
            reference = plan.model.count_reference
            # one thread per task: the scheduler already runs chunks side by side
            measured, depth = measure_counts(
                plan.model.embedding, counts, plan.alignment, reference, what=plan.what, n_threads=1
            )
            cells = replace(cells, counts=measured, counts_layer=plan.counts_layer, depth=depth)
        except DiceInputError as raised:
            error = raised
    return _Measured(cells, summary, error)


def _statistics(part: _Measured, need_factors: bool) -> tuple:
    """What the client needs of a measured chunk: summary, counts error, noise factors (if asked), depths."""
    return part.summary, part.error, part.cells.factors if need_factors else None, part.cells.depth


def _sample_chunk(plan: _Plan, part: _Measured, level: float | None, start: int, seed: int, keep_samples: bool):
    """Task of the second pass: the posterior of the chunk starting at cell ``start`` (a multiple of
    ``CHUNK_CELLS``, so its draws are the whole dataset's), at the dataset's noise ``level`` when one applies."""
    cells = part.cells if level is None else replace(part.cells, noise_rule=level)
    first_chunk = start // CHUNK_CELLS
    result = posterior_of(
        plan.model,
        cells,
        plan.settings,
        seed=seed,
        keep_samples=keep_samples,
        progress=False,
        first_chunk=first_chunk,
        warn=False,
    )
    return result, cells.measurement().noise_var


def _row_chunks(matrices: list, n_cells: int) -> tuple[int, ...]:
    """Cells per task: the largest dask row chunk rounded to a multiple of ``CHUNK_CELLS`` (at least one)."""
    largest = max(max(m.chunks[0]) for m in matrices if _is_dask(m))
    size = max(1, round(largest / CHUNK_CELLS)) * CHUNK_CELLS
    return tuple(min(size, n_cells - start) for start in range(0, n_cells, size))


def _pieces(matrix, chunks: tuple[int, ...]) -> list:
    """One input per task: the row chunk of a dask array (a Delayed; columns joined), or the rows themselves."""
    if _is_dask(matrix):
        return list(matrix.rechunk({0: chunks, 1: -1}).to_delayed().ravel())
    bounds = np.cumsum((0, *chunks))
    return [_read(matrix, slice(a, b)) for a, b in pairwise(bounds.tolist())]


def _ship(plan: _Plan, tag: str) -> tuple[object, str]:
    """The plan as the tasks take it, and the scheduler's name.

    With an active ``distributed`` client: one copy scattered to every worker. Otherwise a single graph key
    holding the client's object (the threaded and synchronous schedulers share it; a process pool pickles it).
    """
    import dask
    from dask.base import get_scheduler

    scheduler = get_scheduler()
    client = getattr(scheduler, "__self__", None)
    if client is not None and type(client).__name__ == "Client":
        return client.scatter(plan, broadcast=True, hash=False), "distributed"
    # "dask.threaded" (delayed's default), "dask.local" (synchronous), "dask.multiprocessing" (processes)
    name = "dask.threaded" if scheduler is None else str(getattr(scheduler, "__module__", type(scheduler).__name__))
    return dask.delayed(plan, name=f"dice-plan-{tag}", traverse=False), name


def denoise_on_dask(
    model,
    inputs: MeasurementInputs,
    var_names,
    settings: PosteriorSettings,
    *,
    layer: str | None = None,
    seed: int = 0,
    keep_samples: bool = False,
    what: str = "adata",
) -> tuple[LatentResult, np.ndarray | None]:
    """Measure and sample every row chunk of dask-backed data as tasks on the active Dask scheduler.

    Parameters
    ----------
    model
        The :class:`dice.models.DicePrior` (sent once to each worker).
    inputs
        :func:`dice.tl._latent.measurement_inputs` of the AnnData (:func:`on_dask` true for it).
    var_names
        The AnnData's gene names.
    settings, layer, seed, keep_samples, what
        As for :func:`dice.tl._latent.measure_cells` and :func:`dice.tl._latent.posterior_of`.

    Returns
    -------
    The posterior summaries of all cells (numpy arrays; ``info["dask"]`` says how they were computed) and the
    cells' depths (count likelihood) or ``None``. Raises :class:`DiceInputError` for invalid values after the
    first pass, before any posterior runs.
    """
    import dask

    alignment = align_genes(var_names, model.embedding.genes, min_shared=settings.min_shared, what=what)
    use_counts = inputs.counts is not None and inputs.count_reference is not None
    matrix, target_sum = inputs.matrix, None
    if isinstance(matrix, LogNormalized):
        matrix, target_sum = matrix.counts, matrix.target_sum
    if use_counts and tuple(inputs.counts.shape) != tuple(matrix.shape):
        layer_name = inputs.counts_layer
        raise DiceInputError(f"{what}.layers[{layer_name!r}] has shape {inputs.counts.shape}, X has {matrix.shape}.")
    likelihood = GaussianLikelihood(model.embedding, gaussian_kind(settings, use_counts), alignment.present)
    plan = _Plan(model, alignment, likelihood, settings, use_counts, inputs.counts_layer, target_sum, what)
    chunks = _row_chunks([matrix, inputs.counts], int(matrix.shape[0]))
    starts = np.cumsum((0, *chunks))[:-1].tolist()
    values = _pieces(matrix, chunks)
    counts = _pieces(inputs.counts, chunks) if use_counts else [None] * len(chunks)
    tag = uuid.uuid4().hex[:12]
    shipped, scheduler = _ship(plan, tag)

    task = dask.delayed(_measure_chunk)
    measured = [
        task(shipped, v, c, dask_key_name=f"dice-measure-{tag}-{i}") for i, (v, c) in enumerate(zip(values, counts))
    ]
    measured = dask.persist(*measured)
    need_factors = not use_counts and isinstance(settings.noise_var, str) and settings.noise_var == "dataset"
    task = dask.delayed(_statistics)
    stats = dask.compute(
        *[task(m, need_factors, dask_key_name=f"dice-statistics-{tag}-{i}") for i, m in enumerate(measured)]
    )
    summary = ValueSummary()
    for part in stats:
        summary.merge(part[0])
    summary.check(expect="log-normalised", what=what, layer=layer)
    errors = [part[1] for part in stats if part[1] is not None]
    if errors:
        raise errors[0]
    depth = np.concatenate([part[3] for part in stats]) if use_counts else None
    if depth is not None:
        warn_empty_cells(depth, what, stacklevel=3)
    level = dataset_level(np.concatenate([part[2] for part in stats])) if need_factors else None

    task = dask.delayed(_sample_chunk)
    sampled = dask.compute(
        *[
            task(shipped, m, level, start, seed, keep_samples, dask_key_name=f"dice-posterior-{tag}-{i}")
            for i, (m, start) in enumerate(zip(measured, starts))
        ]
    )
    del measured, shipped  # releases the chunks' measurements and the workers' copies of the model
    results = [result for result, _ in sampled]
    n_clamped = sum(result.info["n_clamped_prior_steps"] for result in results)
    if n_clamped:
        warn_clamped(n_clamped, model.schedule, stacklevel=4)
    n_outside = sum(result.info["n_outside_prior"] for result in results)
    if n_outside:
        warn_outside(n_outside, stacklevel=4)
    info = dict(results[0].info)
    info.update(
        noise_var_mean=float(np.mean(np.concatenate([noise for _, noise in sampled]))),
        n_clamped_prior_steps=n_clamped,
        n_outside_prior=n_outside,
        dask={
            "scheduler": scheduler,
            "n_chunks": len(chunks),
            "chunk_cells": chunks[0],
            "tasks": "per chunk: read, measurement, posterior; client: value checks, noise level, outputs",
        },
    )

    def joined(name):
        return np.concatenate([getattr(result, name) for result in results])

    samples = joined("samples") if keep_samples else None
    return LatentResult(joined("mean"), joined("pca"), joined("spread"), joined("noise_sd"), samples, info), depth
