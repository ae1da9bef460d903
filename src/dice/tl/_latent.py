"""The array-level path shared by every tool: read row blocks, measure cells, sample their posterior.

``denoise``, ``train_prior`` and ``transfer_labels`` are AnnData wrappers around these functions; none of
them copies an AnnData or holds a cells x genes array beyond one block.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from .._blocks import block_size_for, iter_row_blocks
from .._settings import PosteriorSettings
from .._validation import DepthWarning, DiceInputError, ValueSummary
from ..likelihood import GAUSSIAN_LIKELIHOODS, GaussianLikelihood, Measurement
from ..pp._align import align_genes

__all__ = [
    "COUNTS_LAYER",
    "CellMeasurements",
    "DepthWarning",
    "LatentResult",
    "MeasurementInputs",
    "count_matrix",
    "data_matrix",
    "measure_cells",
    "measurement_inputs",
    "posterior_of",
    "reference_latents",
    "resolve_likelihood",
    "warn_if_shallow",
    "x_holds_counts",
]

logger = logging.getLogger("dice")

COUNTS_LAYER = "counts"  # where scanpy users keep raw UMI counts
COUNT_LIKELIHOOD = (
    "raw counts c_g ~ NB(lambda_g, alpha_g), lambda_g = n p_g(u) / sum_h p_h(u) over the genes present, "
    "p_g = exp(b_g) expm1(mean_g + std_g (V u)_g); measurement N(u; uhat, H^-1) at the mode (Fisher scoring), "
    "used isotropically with variance trace(H^-1) / k per cell (dice.likelihood.count_measurement)"
)


@dataclass
class CellMeasurements:
    """One pass over a dataset: each cell's measurement ingredients and its plain projection ``V^T x``."""

    scores: np.ndarray | None  # the Gaussian measurement's (None when the count likelihood replaces it)
    factors: np.ndarray | None
    pca: np.ndarray
    likelihood: GaussianLikelihood
    noise_rule: str | float
    counts: Measurement | None = None  # the count measurement (per-cell noise), when the count likelihood ran
    counts_layer: str | None = None
    depth: np.ndarray | None = None  # counts per cell over the model genes present (count likelihood only)

    def measurement(self, rows: np.ndarray | None = None) -> Measurement:
        """The Gaussian measurement of the cells ``rows`` (noise level estimated on those cells).

        For the count likelihood the noise is already per cell (no dataset rule): the rows are just selected.
        """
        select = slice(None) if rows is None else rows
        if self.counts is not None:
            return Measurement(self.counts.scores[select], self.counts.noise_var[select])
        return self.likelihood.finish(self.scores[select], self.factors[select], self.noise_rule)

    def info(self) -> dict:
        if self.counts is not None:
            kind, model = "counts", COUNT_LIKELIHOOD
        else:
            kind = self.likelihood.kind
            model = GAUSSIAN_LIKELIHOODS[kind]
        return {
            "likelihood": kind,
            "likelihood_model": model,
            "counts_layer": self.counts_layer,
            "n_genes_used": self.likelihood.n_genes_used,
            "n_genes_model": int(self.likelihood.present.size),
        }


@dataclass
class LatentResult:
    """Posterior summaries of a set of cells (latent units) and what produced them."""

    mean: np.ndarray
    pca: np.ndarray
    spread: np.ndarray
    noise_sd: np.ndarray
    samples: np.ndarray | None
    info: dict


def count_matrix(adata, layer: str | None = None):
    """Where the AnnData keeps raw counts: ``(matrix, name)``, or ``(None, None)``.

    ``layers["counts"]`` (where scanpy users keep them); otherwise ``X`` itself when no ``layer`` is asked for
    and ``X`` holds non-negative integers (:func:`x_holds_counts`), named ``"X"``.
    """
    if adata is None:
        return None, None
    if COUNTS_LAYER in adata.layers:
        return adata.layers[COUNTS_LAYER], COUNTS_LAYER
    if layer is None and x_holds_counts(adata.X):
        logger.info("dice: X holds raw counts (no layers['counts']): read as counts, log-normalised internally")
        return adata.X, "X"
    return None, None


def x_holds_counts(matrix) -> bool:
    """Whether every value is a non-negative integer (and not all are zero): raw counts in ``X``.

    Reads blocks until a value says otherwise, so log-normalised data are told apart on the first block.
    """
    if not np.issubdtype(getattr(matrix, "dtype", np.dtype(object)), np.number):
        return False
    largest = 0.0
    for block in iter_row_blocks(matrix, block_size=block_size_for(matrix.shape[1])):
        values = block.values.data if sp.issparse(block.values) else np.asarray(block.values)
        if not values.size:
            continue
        if not (np.all(np.isfinite(values)) and values.min() >= 0 and np.all(values == np.round(values))):
            return False
        largest = max(largest, float(values.max()))
    return largest > 0


def data_matrix(adata, layer: str | None, counts_name: str | None):
    """The log-normalised values the tools read: ``X`` / ``layers[layer]``, or raw-count ``X`` log-normalised.

    ``counts_name`` is :func:`count_matrix`'s answer for the same AnnData and layer (asked once by the caller):
    when it is ``"X"`` the raw counts are read through :class:`dice._blocks.LogNormalized`
    (``normalize_total(1e4)`` + ``log1p`` per block).
    """
    from .._blocks import LogNormalized
    from .._validation import get_matrix

    matrix = get_matrix(adata, layer)
    return LogNormalized(matrix) if counts_name == "X" else matrix


def resolve_likelihood(settings: PosteriorSettings, model, has_counts: bool, *, what: str = "adata") -> str:
    """The likelihood that runs: ``"counts"``, ``"gene_weighted"`` or ``"isotropic"``.

    ``"auto"`` is the count likelihood when the model has a count reference (trained on a reference with
    ``layers["counts"]``) and the data have ``layers["counts"]``; otherwise the gene-weighted one.
    """
    has_reference = getattr(model, "count_reference", None) is not None
    if settings.likelihood == "auto":
        return "counts" if has_reference and has_counts else "gene_weighted"
    if settings.likelihood == "counts":
        if not has_reference:
            raise DiceInputError(
                "likelihood='counts' needs a model with a count reference, and this model has none: train it "
                f"with dice.tl.train_prior on a reference that keeps its raw counts in layers[{COUNTS_LAYER!r}], "
                "or use likelihood='auto' / 'gene_weighted'."
            )
        if not has_counts:
            raise DiceInputError(
                f"likelihood='counts' needs raw counts, and {what} has no layers[{COUNTS_LAYER!r}]: put the raw UMI "
                f"counts there (e.g. `{what}.layers[{COUNTS_LAYER!r}] = {what}.raw.X` or a copy of X before "
                "normalisation), or use likelihood='auto' / 'gene_weighted'."
            )
        return "counts"
    return _likelihood_kind(settings)


def require_counts(settings: PosteriorSettings, *datasets: tuple) -> None:
    """Refuse ``likelihood="counts"`` up front (before any training) when a dataset ``(adata, what)`` has no counts."""
    if settings.likelihood != "counts":
        return
    for adata, what in datasets:
        if count_matrix(adata)[0] is None:
            resolve_likelihood(settings, _HAS_REFERENCE, False, what=what)


class _HasReference:
    count_reference = True


_HAS_REFERENCE = _HasReference()


def _likelihood_kind(settings: PosteriorSettings) -> str:
    if settings.likelihood in ("auto", "gene_weighted"):
        return "gene_weighted"
    if settings.likelihood == "isotropic":
        return "isotropic"
    if settings.likelihood == "counts":
        raise DiceInputError(
            "likelihood='counts' needs raw counts and a model with a count reference: keep the raw counts in "
            f"layers[{COUNTS_LAYER!r}] of both the reference (train_prior) and the data, or use 'auto'."
        )
    raise DiceInputError(f"likelihood {settings.likelihood!r} is not available.")


def _check_counts(values, what: str) -> None:
    data = values.data if sp.issparse(values) else np.asarray(values)
    if data.size and not (np.all(np.isfinite(data)) and data.min() >= 0):
        raise DiceInputError(
            f"{what}.layers[{COUNTS_LAYER!r}] must hold raw counts (finite, non-negative); it has negative or "
            "non-finite values. Put the raw UMI counts there, or drop the layer to use the log-normalised X only."
        )


def measure_counts(
    embedding, counts, alignment, reference, *, rows=None, block_size=None, what="adata", n_threads=None
):
    """:func:`dice.likelihood.count_measurement` of every cell, reading ``counts`` in row blocks.

    Returns the measurement and each cell's depth (its counts over the model genes it has); raises
    :class:`DiceInputError` on negative or non-finite counts. ``n_threads`` as in ``count_measurement``
    (the Dask tasks pass 1: the scheduler already runs chunks side by side).
    """
    from ..likelihood._counts import count_measurement

    n_cells = int(counts.shape[0]) if rows is None else len(rows)
    scores, noise, depth = np.empty((n_cells, embedding.n_comps)), np.empty(n_cells), np.empty(n_cells)
    block_size = block_size or block_size_for(alignment.n_shared)
    for block in iter_row_blocks(counts, block_size=block_size, rows=rows):
        values = alignment.take_all(block.values)
        _check_counts(values, what)
        m = count_measurement(values, embedding, reference, present=alignment.present, n_threads=n_threads)
        scores[block.start : block.stop], noise[block.start : block.stop] = m.scores, m.noise_var
        depth[block.start : block.stop] = np.asarray(values.sum(axis=1)).ravel()
    return Measurement(scores, noise), depth


def warn_empty_cells(depth: np.ndarray, what: str = "adata", *, stacklevel: int = 2) -> None:
    """Warn about the cells without counts over the model's genes (their posterior is the prior)."""
    n_empty = int(np.sum(depth == 0))
    if n_empty:
        warnings.warn(
            f"{what}: {n_empty} cells have no counts over the model's genes; they carry no information, so their "
            "posterior is the prior (a large noise_sd and uncertainty). Filter them out first if that is not "
            "wanted, e.g. with scanpy.pp.filter_cells(adata, min_counts=1) on the model's genes.",
            UserWarning,
            stacklevel=stacklevel + 1,
        )


def gaussian_kind(settings: PosteriorSettings, use_counts: bool) -> str:
    """The Gaussian likelihood measured beside the counts (its ``pca``) or instead of them."""
    return "gene_weighted" if use_counts and settings.likelihood == "counts" else _likelihood_kind(settings)


def measure_values(
    likelihood: GaussianLikelihood, alignment, matrix, *, rows=None, block_size=None, progress=False, gaussian=True
):
    """The Gaussian measurement of log-normalised cells, block by block: ``(scores, factors, pca, summary)``.

    ``summary`` (:class:`dice._validation.ValueSummary`) has seen every value; the caller checks it. With
    ``gaussian=False`` (the count likelihood measures the cells instead) only ``pca`` and ``summary`` are
    computed, and ``scores`` and ``factors`` are ``None``.
    """
    from tqdm.auto import tqdm

    embedding = likelihood.embedding
    loadings = embedding.loadings[alignment.present].astype(np.float64)
    n_cells = int(matrix.shape[0]) if rows is None else len(rows)
    pca = np.empty((n_cells, embedding.n_comps), dtype=np.float32)
    scores, factors = (np.empty_like(pca), np.empty(n_cells)) if gaussian else (None, None)
    summary = ValueSummary()
    block_size = block_size or block_size_for(alignment.n_shared)
    with tqdm(total=n_cells, desc="measuring cells", unit="cells", disable=not progress, mininterval=1.0) as bar:
        for block in iter_row_blocks(matrix, block_size=block_size, rows=rows):
            values = alignment.take(block.values)
            summary.update(values)
            standardised = embedding.standardize(values, genes=alignment.present)
            if gaussian:
                scores[block.start : block.stop], factors[block.start : block.stop] = likelihood.measure_block(
                    standardised
                )
            pca[block.start : block.stop] = standardised.astype(np.float64) @ loadings
            bar.update(block.n_cells)
    return scores, factors, pca, summary


def measure_cells(
    embedding,
    matrix,
    var_names,
    settings: PosteriorSettings,
    *,
    rows: np.ndarray | None = None,
    what: str = "adata",
    layer: str | None = None,
    block_size: int | None = None,
    progress: bool = False,
    counts=None,
    count_reference=None,
    counts_layer: str | None = COUNTS_LAYER,
) -> CellMeasurements:
    """Align, validate (every value, block by block), standardise and measure cells against a model.

    Raises :class:`DiceInputError` before returning anything when the data are not log-normalised
    expression (NaN, negative values, raw counts) or share too few genes with the model.

    With ``counts`` (raw counts, same cells and genes as ``matrix``) and ``count_reference`` (the model's
    :class:`dice.likelihood.CountReference`), the measurement is the count likelihood's; ``pca`` stays
    ``V^T x`` of the log-normalised ``matrix``.
    """
    alignment = align_genes(var_names, embedding.genes, min_shared=settings.min_shared, what=what)
    use_counts = counts is not None and count_reference is not None
    likelihood = GaussianLikelihood(embedding, gaussian_kind(settings, use_counts), alignment.present)
    scores, factors, pca, summary = measure_values(
        likelihood, alignment, matrix, rows=rows, block_size=block_size, progress=progress, gaussian=not use_counts
    )
    summary.check(expect="log-normalised", what=what, layer=layer)
    if not use_counts:
        return CellMeasurements(scores, factors, pca, likelihood, settings.noise_var)
    if counts.shape != matrix.shape:
        raise DiceInputError(f"{what}.layers[{counts_layer!r}] has shape {counts.shape}, X has {matrix.shape}.")
    measured, depth = measure_counts(
        embedding, counts, alignment, count_reference, rows=rows, block_size=block_size, what=what
    )
    warn_empty_cells(depth, what, stacklevel=3)
    return CellMeasurements(scores, factors, pca, likelihood, settings.noise_var, measured, counts_layer, depth)


class MeasurementInputs(NamedTuple):
    """What :func:`measure_cells` reads from an AnnData (:func:`measurement_inputs`).

    ``matrix`` is the log-normalised data (raw-count ``X`` wrapped in :class:`dice._blocks.LogNormalized`);
    ``counts`` and ``count_reference`` are set only when the count likelihood runs.
    """

    matrix: object
    counts: object
    count_reference: object
    counts_layer: str | None


def measurement_inputs(
    model, adata, settings: PosteriorSettings, *, layer=None, what="adata", kind: str | None = None, found=None
) -> MeasurementInputs:
    """The matrices to measure, with the likelihood :func:`resolve_likelihood` picks (or ``kind``).

    ``found``: :func:`count_matrix`'s answer for the same AnnData and layer, when the caller has it already
    (raw-count ``X`` is then not scanned again).
    """
    counts, counts_layer = count_matrix(adata, layer) if found is None else found
    kind = kind or resolve_likelihood(settings, model, counts is not None, what=what)
    use = kind == "counts"
    return MeasurementInputs(
        data_matrix(adata, layer, counts_layer),
        counts if use else None,
        model.count_reference if use else None,
        counts_layer,
    )


def measure_adata(
    model,
    adata,
    settings: PosteriorSettings,
    *,
    layer=None,
    rows=None,
    what="adata",
    progress=False,
    kind: str | None = None,
    inputs: MeasurementInputs | None = None,
) -> CellMeasurements:
    """:func:`measure_cells` of an AnnData, with the likelihood :func:`resolve_likelihood` picks (or ``kind``).

    ``inputs``: :func:`measurement_inputs`' answer for the same arguments, when the caller has it already.
    """
    if inputs is None:
        inputs = measurement_inputs(model, adata, settings, layer=layer, what=what, kind=kind)
    return measure_cells(
        model.embedding,
        inputs.matrix,
        adata.var_names,
        settings,
        rows=rows,
        what=what,
        layer=layer,
        progress=progress,
        counts=inputs.counts,
        count_reference=inputs.count_reference,
        counts_layer=inputs.counts_layer,
    )


def warn_if_shallow(model, cells: CellMeasurements, *, what: str = "adata", calibrated: bool = False) -> dict | None:
    """Warn when most cells are shallower than 99 % of the reference's cells; return the depth summary.

    Only the count likelihood knows depths (``cells.depth``) and only models trained on counts record the
    reference's (``model.config["reference_depth"]``); otherwise nothing is checked and ``None`` returned.
    ``cells`` may also be the depths themselves (an array, or ``None``).
    """
    reference = getattr(model, "config", {}).get("reference_depth")
    depth = cells.depth if isinstance(cells, CellMeasurements) else cells
    if depth is None or not depth.size:
        return None
    median = float(np.median(depth))
    summary = {"median": median} if reference is None else {"median": median, "reference_median": reference["median"]}
    if reference is None or median >= reference["q01"]:
        return summary
    then = (
        "label confidence is calibrated on reference cells thinned to this depth"
        if calibrated
        else "dice.tl.transfer_labels calibrates label confidence at this depth"
    )
    warnings.warn(
        f"{what}: the median cell has {median:,.0f} counts over the model's genes, fewer than 99 % of the "
        f"reference's cells (reference median {reference['median']:,.0f}, 1 % quantile {reference['q01']:,.0f}). "
        "The count likelihood widens these cells' measurements (obs 'noise_sd'), so the prior does more of the "
        f"work and the uncertainty is larger; {then}. A deeper reference of the same tissue would not need this.",
        DepthWarning,
        stacklevel=3,
    )
    return summary


def reference_latents(
    embedding, matrix, *, rows: np.ndarray | None = None, block_size: int | None = None
) -> np.ndarray:
    """``V^T x_std`` of the reference cells (the prior's training data), block by block."""
    n_cells = int(matrix.shape[0]) if rows is None else len(rows)
    out = np.empty((n_cells, embedding.n_comps), dtype=np.float32)
    block_size = block_size or block_size_for(embedding.n_genes)
    for block in iter_row_blocks(matrix, block_size=block_size, rows=rows):
        values = block.values.toarray() if hasattr(block.values, "toarray") else block.values
        out[block.start : block.stop] = embedding.project(embedding.standardize(values))
    return out


def posterior_of(
    model,
    cells: CellMeasurements,
    settings: PosteriorSettings,
    *,
    rows: np.ndarray | None = None,
    seed: int = 0,
    keep_samples: bool = False,
    progress: bool = True,
    first_chunk: int = 0,
    warn: bool = True,
) -> LatentResult:
    """Sample the posterior of the measured cells ``rows`` (all when ``None``).

    ``first_chunk`` and ``warn``: see :func:`dice.models._posterior.sample_posterior` (cells that are rows
    ``first_chunk * CHUNK_CELLS`` onwards of a larger dataset are seeded as in the whole).
    """
    measurement = cells.measurement(rows)
    posterior = model.posterior(
        measurement.scores,
        measurement.noise_var,
        settings,
        seed=seed,
        keep_samples=keep_samples,
        progress=progress,
        first_chunk=first_chunk,
        warn=warn,
    )
    pca = cells.pca if rows is None else cells.pca[rows]
    info = cells.info()
    if cells.counts is not None:  # the count model's share of ambient RNA (TrainSettings.ambient_fraction)
        info["ambient_fraction"] = float(model.count_reference.ambient_fraction)
    info.update(
        noise_var_mean=float(np.mean(measurement.noise_var)),
        n_clamped_prior_steps=posterior.n_clamped,
        n_outside_prior=posterior.n_outside,
        posterior_mean=posterior.mean_estimate,
    )
    return LatentResult(
        posterior.mean, pca, posterior.spread, measurement.noise_sd.astype(np.float32), posterior.samples, info
    )
