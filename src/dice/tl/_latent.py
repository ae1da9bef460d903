"""The array-level path shared by every tool: read row blocks, measure cells, sample their posterior.

``denoise``, ``train_prior`` and ``transfer_labels`` are AnnData wrappers around these functions; none of
them copies an AnnData or holds a cells x genes array beyond one block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._blocks import block_size_for, iter_row_blocks
from .._settings import PosteriorSettings
from .._validation import DiceInputError, ValueSummary
from ..likelihood import GAUSSIAN_LIKELIHOODS, GaussianLikelihood, Measurement
from ..pp._align import align_genes

__all__ = ["CellMeasurements", "LatentResult", "measure_cells", "posterior_of", "reference_latents"]


@dataclass
class CellMeasurements:
    """One pass over a dataset: each cell's measurement ingredients and its plain projection ``V^T x``."""

    scores: np.ndarray
    factors: np.ndarray
    pca: np.ndarray
    likelihood: GaussianLikelihood
    noise_rule: str | float

    def measurement(self, rows: np.ndarray | None = None) -> Measurement:
        """The Gaussian measurement of the cells ``rows`` (noise level estimated on those cells)."""
        select = slice(None) if rows is None else rows
        return self.likelihood.finish(self.scores[select], self.factors[select], self.noise_rule)

    def info(self) -> dict:
        kind = self.likelihood.kind
        return {"likelihood": kind, "likelihood_model": GAUSSIAN_LIKELIHOODS[kind],
                "n_genes_used": self.likelihood.n_genes_used, "n_genes_model": int(self.likelihood.present.size)}


@dataclass
class LatentResult:
    """Posterior summaries of a set of cells (latent units) and what produced them."""

    mean: np.ndarray
    pca: np.ndarray
    spread: np.ndarray
    noise_sd: np.ndarray
    samples: np.ndarray | None
    info: dict


def _likelihood_kind(settings: PosteriorSettings) -> str:
    if settings.likelihood in ("auto", "gene_weighted"):
        return "gene_weighted"
    if settings.likelihood == "isotropic":
        return "isotropic"
    raise DiceInputError(f"likelihood {settings.likelihood!r} is not available.")


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
) -> CellMeasurements:
    """Align, validate (every value, block by block), standardise and measure cells against a model.

    Raises :class:`DiceInputError` before returning anything when the data are not log-normalised
    expression (NaN, negative values, raw counts) or share too few genes with the model.
    """
    from tqdm.auto import tqdm

    alignment = align_genes(var_names, embedding.genes, min_shared=settings.min_shared, what=what)
    likelihood = GaussianLikelihood(embedding, _likelihood_kind(settings), alignment.present)
    loadings = embedding.loadings[alignment.present].astype(np.float64)
    n_cells = int(matrix.shape[0]) if rows is None else len(rows)
    scores = np.empty((n_cells, embedding.n_comps), dtype=np.float32)
    pca = np.empty_like(scores)
    factors = np.empty(n_cells)
    summary = ValueSummary()
    block_size = block_size or block_size_for(alignment.n_shared)
    with tqdm(total=n_cells, desc="measuring cells", unit="cells", disable=not progress, mininterval=1.0) as bar:
        for block in iter_row_blocks(matrix, block_size=block_size, rows=rows):
            values = alignment.take(block.values)
            summary.update(values)
            standardised = embedding.standardize(values, genes=alignment.present)
            scores[block.start : block.stop], factors[block.start : block.stop] = likelihood.measure_block(
                standardised
            )
            pca[block.start : block.stop] = standardised.astype(np.float64) @ loadings
            bar.update(block.n_cells)
    summary.check(expect="log-normalised", what=what, layer=layer)
    return CellMeasurements(scores, factors, pca, likelihood, settings.noise_var)


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
) -> LatentResult:
    """Sample the posterior of the measured cells ``rows`` (all when ``None``)."""
    measurement = cells.measurement(rows)
    posterior = model.posterior(
        measurement.scores, measurement.noise_var, settings, seed=seed, keep_samples=keep_samples, progress=progress
    )
    pca = cells.pca if rows is None else cells.pca[rows]
    info = cells.info()
    info.update(noise_var_mean=float(np.mean(measurement.noise_var)), n_clamped_prior_steps=posterior.n_clamped,
                posterior_mean=posterior.mean_estimate)
    return LatentResult(posterior.mean, pca, posterior.spread, measurement.noise_sd.astype(np.float32),
                        posterior.samples, info)
