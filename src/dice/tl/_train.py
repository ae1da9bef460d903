"""``dice.tl.train_prior``: fit loadings and a diffusion prior on a reference."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
from anndata import AnnData

from .._settings import TrainSettings, check_seed
from .._validation import DiceInputError, check_adata

if TYPE_CHECKING:
    from ..models import DicePrior

__all__ = ["train_prior"]

logger = logging.getLogger("dice")


def _labels(adata: AnnData, labels_key: str | None, rows: np.ndarray | None) -> np.ndarray | None:
    if labels_key is None:
        return None
    if labels_key not in adata.obs:
        raise DiceInputError(f"labels_key {labels_key!r} is not a column of adata.obs (columns: {list(adata.obs)}).")
    column = adata.obs[labels_key] if rows is None else adata.obs[labels_key].iloc[rows]
    if column.isna().any():
        raise DiceInputError(f"obs[{labels_key!r}] has missing labels; drop those cells or fill them.")
    return column.astype(str).to_numpy()


def fit_prior(
    adata: AnnData,
    *,
    n_comps: int | None,
    layer: str | None,
    labels_key: str | None,
    settings: TrainSettings,
    seed: int,
    device: str,
    progress: bool,
    rows: np.ndarray | None = None,
) -> DicePrior:
    """:func:`train_prior` on the cells ``rows`` of ``adata`` (sorted positions; ``None``: all), no copies."""
    if n_comps is not None and (isinstance(n_comps, bool) or not isinstance(n_comps, int | np.integer)):
        raise DiceInputError(f"n_comps must be a whole number of latent dimensions (e.g. 30) or None, got {n_comps!r}.")
    from ..models import DicePrior
    from ..pp._linear import LinearEmbedding
    from ._latent import count_matrix, data_matrix, reference_latents

    if not adata.var_names.is_unique:
        duplicated = list(adata.var_names[adata.var_names.duplicated()][:3])
        raise DiceInputError(
            f"the reference has duplicated gene names (e.g. {duplicated}); a model needs one column per gene. "
            "Call `adata.var_names_make_unique()` (or aggregate the duplicates) first."
        )
    labels = _labels(adata, labels_key, rows)
    if settings.mixup_prob and labels is None:
        raise DiceInputError("mixup_prob > 0 needs labels_key= (mixup combines cells of the same label).")
    counts, counts_layer = count_matrix(adata, layer)  # asked once: on raw-count X it reads every value
    matrix = data_matrix(adata, layer, counts_layer)
    embedding = LinearEmbedding.fit(
        matrix, adata.var_names, n_comps=n_comps, max_value=settings.max_value, rows=rows, what="adata", layer=layer
    )
    latents = reference_latents(embedding, matrix, rows=rows)
    logger.info("dice: k = %d latent dimensions, reference noise variance %.3g", embedding.n_comps, embedding.noise_var)
    count_reference, kind = None, "projection"
    depth, loadings_fit = None, None
    if counts is not None:
        reference_counts = _gather_counts(counts, rows, counts_layer, matrix.shape, embedding.n_genes)
        if settings.count_loadings_width is not None:
            from ..models._loadings import refit_loadings
            from ..models._prior import resolve_device

            embedding, loadings_fit = refit_loadings(
                embedding,
                reference_counts,
                width=settings.count_loadings_width,
                latents=latents,
                dispersion=settings.count_dispersion,
                seed=seed,
                device=resolve_device(device),
                progress=progress,
            )
            latents = reference_latents(embedding, matrix, rows=rows)
            logger.info("dice: loadings refitted to the counts of %d cells", loadings_fit["n_cells"])
        count_reference, latents, depth = _count_latents(
            embedding,
            reference_counts,
            latents,
            draw=settings.count_latents,
            seed=seed,
            ambient_fraction=settings.ambient_fraction,
            dispersion=settings.count_dispersion,
        )
        kind = "counts" if settings.count_latents == "measurement" else "counts_posterior_draw"
        logger.info(
            "dice: raw counts in layers[%r]: the prior is trained on the count latents (%s)", counts_layer, kind
        )
    model = DicePrior.fit(
        embedding,
        latents,
        labels=labels,
        settings=settings,
        seed=seed,
        device=device,
        progress=progress,
        count_reference=count_reference,
        latents_kind=kind,
    )
    if depth is not None:  # what "far shallower than the reference" means for a query (dice.tl.denoise warns)
        model.config["reference_depth"] = depth_summary(depth)
    model.config["loadings_fit"] = loadings_fit or {"kind": "pca"}
    if count_reference is not None:
        model.config["count_dispersion"] = settings.count_dispersion
    return model


def depth_summary(depth: np.ndarray) -> dict:
    """Quantiles of the counts per cell (JSON-ready): the depth range a model was fitted on."""
    q = np.quantile(np.asarray(depth, dtype=np.float64), [0.01, 0.05, 0.5, 0.95])
    return {"q01": float(q[0]), "q05": float(q[1]), "median": float(q[2]), "q95": float(q[3])}


def _gather_counts(counts, rows, counts_layer, shape, n_genes):
    """The reference's raw counts (the cells ``rows``) as one checked sparse matrix, read in row blocks."""
    import scipy.sparse as sp

    from .._blocks import block_size_for, iter_row_blocks
    from ._latent import _check_counts

    if counts.shape != shape:
        raise DiceInputError(f"adata.layers[{counts_layer!r}] has shape {counts.shape}, X has {shape}.")
    blocks = []
    for block in iter_row_blocks(counts, block_size=block_size_for(n_genes), rows=rows):
        values = sp.csr_matrix(block.values, dtype=np.float64)
        _check_counts(values, "adata")
        blocks.append(values)
    return sp.vstack(blocks, format="csr")


def _count_latents(
    embedding, reference_counts, latents, *, draw="posterior_draw", seed=0, ambient_fraction=0.0, dispersion="local"
):
    """Fit the count reference on the reference's raw counts; return it, the reference's count latents and depths.

    The latents are each cell's count measurement (``draw="measurement"``) or one draw from its posterior
    under the count model's weak Gaussian prior ``N(0, prior_var)`` (``"posterior_draw"``): with the
    isotropic measurement ``N(y; u, s^2)`` ("matched" level, whose posterior mean is the penalised mode)
    that posterior is ``N(y / (1 + s^2 / prior_var), 1 / (1 / s^2 + 1 / prior_var))`` per dimension.
    Averaged over the reference, the draws have the latent states' own spread, where the measurements
    have it plus the noise (equal for a deep reference, twice or more for a shallow one).
    """
    from ..likelihood._counts import count_measurement, fit_count_reference

    count_reference = fit_count_reference(
        reference_counts, embedding, latents=latents, ambient_fraction=ambient_fraction, dispersion=dispersion
    )
    depth = np.asarray(reference_counts.sum(axis=1)).ravel()
    measured = count_measurement(reference_counts, embedding, count_reference)
    if draw == "measurement":
        return count_reference, measured.scores, depth
    shrink = 1.0 + measured.noise_var[:, None] / count_reference.prior_var  # y / shrink is the posterior mean
    variance = measured.noise_var[:, None] / shrink  # = 1 / (1 / s^2 + 1 / prior_var)
    noise = np.random.default_rng(np.random.SeedSequence([seed, 1])).standard_normal(measured.scores.shape)
    return count_reference, measured.scores / shrink + np.sqrt(variance) * noise, depth


def train_prior(
    adata: AnnData,
    *,
    n_comps: int | None = None,
    layer: str | None = None,
    labels_key: str | None = None,
    settings: TrainSettings | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
) -> DicePrior:
    """Fit the loading matrix V and train a diffusion prior over the reference's latent cell states.

    The fit streams over row blocks (exact PCA from the genes x genes Gram matrix), so dense, sparse, backed
    and dask-backed AnnData all work and memory stays ``O(genes^2 + block)``.

    Raw counts. When ``adata.layers["counts"]`` holds the raw counts (same cells and genes as the
    log-normalised data), the count likelihood's per-gene statistics are fitted on them
    (:func:`dice.likelihood.fit_count_reference`, kept as ``model.count_reference``) and the prior is trained
    on the count measurement of the reference (``model.config["prior_latents"] == "counts"``), so that
    ``likelihood="auto"`` measures queries with counts from their raw counts. Before that, the loading matrix
    V itself is refitted to the counts under a penalty that keeps it near PCA's
    (``TrainSettings.count_loadings_width``; recorded in ``model.config["loadings_fit"]``): PCA of a shallow
    reference's log-normalised values mixes depth noise into V. The per-gene noise variances of the Gaussian
    likelihoods stay PCA's residual statistics (their overall level is estimated on the data denoised).
    Without that layer nothing changes (``"projection"``: ``V^T x_std``, PCA's V). Raw-count ``X`` (non-negative
    integers, no ``layers["counts"]``) is read as counts too, and log-normalised internally
    (``normalize_total(1e4)`` + ``log1p``, block by block).

    Parameters
    ----------
    adata
        Reference cells, log-normalised with the raw counts in ``layers["counts"]`` (what
        :func:`dice.pp.recipe_paper` gives), or raw counts in ``X``; scaled data are refused. Not modified.
    n_comps
        Latent dimension k; ``None`` picks the elbow of the spectrum (between 10 and 50).
    layer
        Use ``adata.layers[layer]`` instead of ``X``.
    labels_key
        Column of ``obs`` with cell labels, enabling the paper's same-label mixup augmentation.
    settings
        Network and optimisation settings (:class:`dice.tl.TrainSettings`; default: the measured CPU default).
    seed
        Seeds the network initialisation, batches, diffusion times and noise.
    device
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``; the device used is recorded in
        ``model.config["device"]``.
    progress
        Show a progress bar.

    Returns
    -------
    :class:`dice.models.DicePrior`, holding genes, standardisation, V, the network, its noise schedule, the
    training history and the seed. Save it with ``model.save(path)``.
    """
    settings = settings if settings is not None else TrainSettings()
    if not isinstance(settings, TrainSettings):
        raise DiceInputError(f"settings must be a dice.tl.TrainSettings, got {type(settings).__name__}.")
    check_seed(seed)
    check_adata(adata, layer=layer, what="adata", min_cells=3)
    return fit_prior(
        adata,
        n_comps=n_comps,
        layer=layer,
        labels_key=labels_key,
        settings=settings,
        seed=seed,
        device=device,
        progress=progress,
    )
