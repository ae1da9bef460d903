"""``dice.tl.denoise``: posterior-mean embeddings and per-cell uncertainty, written into an AnnData."""

from __future__ import annotations

import time

import numpy as np
from anndata import AnnData

from .._settings import PosteriorSettings, TrainSettings, check_seed
from .._validation import DiceInputError, check_adata

__all__ = ["denoise"]

MEAN_DEFINITION = {
    "tweedie": "one-call Tweedie estimate E[u | measurement] at the target noise level (no Monte Carlo error)",
    "samples": "average of the n_samples posterior draws",
}
UNCERTAINTY_DEFINITION = {
    "samples": (
        "root mean over latent dimensions of the across-sample variance of the posterior samples "
        "(latent units, same as X_dice); NaN when n_samples = 1"
    ),
    "jacobian": (
        "root mean over latent dimensions of the posterior variance, second-order Tweedie: noise variance "
        "times the trace of the Jacobian of the posterior mean (n_probes finite-difference Jacobian-vector "
        "products; latent units, same as X_dice); the posterior the draws target"
    ),
    "none": "not computed (NaN)",
}


def versions() -> dict:
    from importlib.metadata import version

    import torch

    from .. import __version__

    return {
        "dice": __version__,
        "torch": str(torch.__version__),
        "numpy": np.__version__,
        "anndata": version("anndata"),
        "scanpy": version("scanpy"),
    }


def resolve_model(model, adata: AnnData, *, layer, n_comps, training, seed, device, progress):
    """The model to use: ``model`` (moved to ``device`` when one is named), or one trained on ``adata``."""
    from ..models import DicePrior

    if model is None:
        from ._train import fit_prior

        training = training if training is not None else TrainSettings()
        return fit_prior(
            adata,
            n_comps=n_comps,
            layer=layer,
            labels_key=None,
            settings=training,
            seed=seed,
            device=device,
            progress=progress,
        ), True
    if not isinstance(model, DicePrior):
        raise DiceInputError(
            f"model must be a dice.models.DicePrior (from dice.tl.train_prior or DicePrior.load), got "
            f"{type(model).__name__}."
        )
    if n_comps is not None or training is not None:
        raise DiceInputError("n_comps and training apply only when denoise trains the model (model=None).")
    if str(device) != "auto":
        model.to(device)
    return model, False


def write_outputs(target: AnnData, key_added: str, result, *, store_samples: bool) -> None:
    """Write the posterior summaries in one step, dropping an earlier run's samples under the same key."""
    target.obsm[f"X_{key_added}"] = result.mean.astype(np.float32)
    target.obsm[f"X_{key_added}_pca"] = result.pca.astype(np.float32)
    target.obs[f"{key_added}_uncertainty"] = result.spread.astype(np.float32)
    target.obs[f"{key_added}_noise_sd"] = result.noise_sd.astype(np.float32)
    if store_samples:
        target.obsm[f"X_{key_added}_samples"] = result.samples
    else:
        target.obsm.pop(f"X_{key_added}_samples", None)


def denoise(
    adata: AnnData,
    model=None,
    *,
    layer: str | None = None,
    settings: PosteriorSettings | str | None = None,
    n_comps: int | None = None,
    training: TrainSettings | None = None,
    store_samples: bool = False,
    key_added: str = "dice",
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    copy: bool = False,
) -> AnnData | None:
    """Denoise cell embeddings by sampling each cell's latent posterior under a diffusion prior.

    Works alone in a scanpy workflow (``dice.tl.denoise(adata)`` trains a prior on ``adata`` itself: atlas
    construction), or maps a query onto a reference's model. Cells are read in row blocks, so sparse, backed
    and dask-backed data work without densifying the matrix.

    Parameters
    ----------
    adata
        Log-normalised cells (genes matched to the model's by name), ideally with their raw counts in
        ``layers["counts"]`` (the count likelihood then runs; right at any sequencing depth); or raw counts
        in ``X`` itself, log-normalised internally. Not modified on error.
        A dask-backed ``X`` (or ``layers["counts"]``) is processed chunk by chunk on the active Dask scheduler
        (threads, synchronous, processes or a ``distributed`` cluster): the reads, the measurement and the
        posterior of each row chunk (its rows rounded to a multiple of 1,024 cells) run as tasks, on the workers
        with ``distributed``, where the model is sent once per worker. The client only gathers what needs all
        cells (the value checks, the depths for the count likelihood, and for ``noise_var="dataset"`` one noise
        factor per cell, reduced to the dataset's level before the posterior tasks start) and the outputs.
        Results equal the in-memory ones (same seeds); the outputs are computed numpy arrays, never dask arrays,
        and no progress bars are shown there (the Dask dashboard shows the tasks).
    model
        A :class:`dice.models.DicePrior` (:func:`dice.tl.train_prior`, :meth:`~dice.models.DicePrior.load`).
        ``None`` trains one on ``adata`` first, with ``n_comps``, ``training`` and ``seed``.
    layer
        Use ``adata.layers[layer]`` instead of ``X``.
    settings
        The posterior and its sampler (:class:`dice.tl.PosteriorSettings`): ``None``/``"default"`` (gene-weighted
        likelihood, Tweedie mean, second-order Tweedie uncertainty, exact posterior draws when stored; chosen by
        measurement) or ``"paper"`` (the
        authors' protocol, :meth:`~dice.tl.PosteriorSettings.paper`; slow). ``rho`` is in units of each
        cell's noise sd, so results do not depend on the scale of the data.
    n_comps, training
        Latent dimension and :class:`dice.tl.TrainSettings` of the prior trained when ``model`` is ``None``.
    store_samples
        Also draw and keep ``n_samples`` exact posterior draws per cell in ``obsm[f"X_{key_added}_samples"]``
        (cells x n_samples x k; :func:`dice.tl.cluster_confidence` needs them). The default uncertainty does
        not need draws, so without this none are made.
    key_added
        Prefix of the written keys.
    seed
        Seeds every random draw (and the prior's training when ``model`` is None).
    device
        ``"auto"`` (the model's device, or CUDA when present for training), ``"cpu"`` or ``"cuda"``.
    progress
        Progress bars (they count cells).
    copy
        Return a new AnnData instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the new AnnData when ``copy=True``. Writes ``obsm[f"X_{key_added}"]`` (posterior mean),
    ``obsm[f"X_{key_added}_pca"]`` (the undenoised projection ``V^T x``), ``obs[f"{key_added}_uncertainty"]``
    (posterior spread: root mean over latent dimensions of the posterior variance),
    ``obs[f"{key_added}_noise_sd"]`` (the measurement's noise sd per latent dimension) and
    ``uns[key_added]`` (``"params"``: every setting and the seed; the likelihood used, genes used, device,
    package versions, timing; ``"dask"``: scheduler and chunks, for dask-backed data).
    """
    from ._dask import denoise_on_dask, on_dask
    from ._latent import measure_adata, measurement_inputs, posterior_of, require_counts, warn_if_shallow

    started = time.perf_counter()
    settings = PosteriorSettings.resolve(settings)
    check_seed(seed)
    check_adata(adata, layer=layer, what="adata")
    require_counts(settings, (adata, "adata"))
    model, trained_here = resolve_model(
        model, adata, layer=layer, n_comps=n_comps, training=training, seed=seed, device=device, progress=progress
    )
    inputs = measurement_inputs(model, adata, settings, layer=layer)
    if on_dask(inputs):  # every row chunk measured and sampled as a task on the active Dask scheduler
        result, depths = denoise_on_dask(
            model, inputs, adata.var_names, settings, layer=layer, seed=seed, keep_samples=store_samples
        )
        depth = warn_if_shallow(model, depths, what="adata")
    else:
        cells = measure_adata(model, adata, settings, layer=layer, progress=progress, inputs=inputs)
        depth = warn_if_shallow(model, cells, what="adata")
        result = posterior_of(model, cells, settings, seed=seed, keep_samples=store_samples, progress=progress)
    record = {
        "params": {**settings.to_dict(), "seed": seed, "store_samples": store_samples, "layer": layer or "X"},
        **result.info,
        "posterior_mean": MEAN_DEFINITION[result.info["posterior_mean"]],
        "uncertainty": UNCERTAINTY_DEFINITION[settings.uncertainty_method],
        "rho_units": "relative to each cell's noise sd sigma; absolute rho = rho * sigma",
        "n_comps": model.embedding.n_comps,
        "latent_scale": model.latent_scale,
        "device": str(model.device),
        "prior_trained_on_this_data": trained_here,
        **({"depth": depth} if depth is not None else {}),
        "prior": {
            "network": dict(model.config["network"]),
            "training": dict(model.config["training"]),
            "seed": model.config["seed"],
        },
        "seconds": time.perf_counter() - started,
        "versions": versions(),
    }
    target = adata.copy() if copy else adata
    write_outputs(target, key_added, result, store_samples=store_samples)
    target.uns[key_added] = record
    return target if copy else None
