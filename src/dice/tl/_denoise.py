"""``dice.tl.denoise``: posterior-mean embeddings and per-cell uncertainty, written into an AnnData."""

from __future__ import annotations

import time
import warnings
from dataclasses import fields

import numpy as np
from anndata import AnnData

from .._validation import DiceInputError, check_adata

__all__ = ["PRESETS", "denoise"]

# "default" was chosen by measurement (BENCHMARKS.md, "Choosing the default sampler"): with Gaussian
# noise and orthonormal loadings the posterior of u given x is the prior times N(V^T x; u, sigma^2 I),
# so one reverse diffusion from the matching noise level draws from it exactly (given the prior), at
# t0 network calls per sample and without the Gibbs chain's mixing error. "paper" follows the authors'
# real-data protocol: split Gibbs, full ancestral prior steps, rho 5 -> 0.5 linear over 100 iterations,
# sigma^2 = 1 in standardised units, one sample.
PRESETS: dict[str, dict] = {
    "default": {
        "method": "direct", "prior_step": "ancestral", "n_prior_steps": 20, "rho": 0.0, "rho_end": 0.0,
        "rho_schedule": "constant", "n_iter": 1, "n_samples": 10, "noise_var": "dataset",
        "mean_estimate": "tweedie", "likelihood": "gene_weighted",
    },
    "paper": {
        "method": "gibbs", "prior_step": "ancestral", "n_prior_steps": 1, "rho": 5.0, "rho_end": 0.5,
        "rho_schedule": "linear", "n_iter": 100, "n_samples": 1, "noise_var": 1.0,
        "mean_estimate": "samples", "likelihood": "isotropic",
    },
}

MEAN_DEFINITION = {
    "tweedie": "one-call Tweedie estimate E[u | V^T x] at the target noise level (no Monte Carlo error)",
    "samples": "average of the n_samples posterior draws",
}

UNCERTAINTY_DEFINITION = (
    "root mean over latent dimensions of the across-sample variance of the posterior samples "
    "(latent units, same as X_dice); NaN when n_samples = 1"
)


LIKELIHOODS = {
    "gene_weighted": "x_std = V u + e with e_g ~ N(0, c psi_g), psi_g the reference's residual variance of "
    "gene g: the measurement of u is the weighted projection (V^T Psi^-1 V)^-1 V^T Psi^-1 x_std, its noise "
    "covariance c (V^T Psi^-1 V)^-1, used with its mean eigenvalue (noise_sd)",
    "isotropic": "x_std = V u + e with e_g ~ N(0, sigma^2) for every gene (the paper's model): the measurement "
    "of u is V^T x_std, its noise covariance sigma^2 I",
}


def _noise_level(spec, per_cell, reference_level: float, n_cells: int) -> np.ndarray:
    """Noise variance per cell from a ``noise_var`` spec; ``per_cell`` computes the cells' own estimates."""
    if isinstance(spec, int | float) and not isinstance(spec, bool):
        if spec <= 0:
            raise DiceInputError(f"noise_var must be positive, got {spec}.")
        return np.full(n_cells, float(spec))
    if spec == "reference":
        return np.full(n_cells, reference_level)
    if spec == "cell":
        return np.maximum(per_cell(), 1e-6)
    if spec == "dataset":
        return np.full(n_cells, max(float(per_cell().mean()), 1e-6))
    raise DiceInputError(
        f"noise_var must be 'dataset', 'cell', 'reference' or a positive number, got {spec!r}."
    )


def _measurement(likelihood: str, noise_spec, standardised, embedding) -> tuple[np.ndarray, np.ndarray]:
    """The latent measurement of each cell and its noise variance per latent dimension."""
    n_cells = len(standardised)
    if likelihood == "isotropic":
        scores = embedding.project(standardised)
        sigma2 = _noise_level(noise_spec, lambda: embedding.residual_var(standardised, scores),
                              embedding.noise_var, n_cells)
        return scores, sigma2
    projector, covariance = embedding.weighted_projection()
    scores = np.asarray(standardised @ projector, dtype=np.float32)
    # psi is the reference's own residual variance, so the reference's scale factor is 1 by construction
    scale = _noise_level(noise_spec, lambda: embedding.weighted_noise_scale(standardised, scores), 1.0, n_cells)
    return scores, scale * float(np.trace(covariance)) / embedding.n_comps


def _resolve_likelihood(likelihood: str, noise_spec, embedding) -> str:
    if likelihood != "gene_weighted":
        return likelihood
    if not isinstance(noise_spec, str):
        _noise_level(noise_spec, None, 1.0, 0)  # a non-positive number: say that first
        raise DiceInputError(
            f"noise_var={noise_spec!r} is a per-gene variance, which only the isotropic likelihood uses; pass "
            "likelihood='isotropic' with it, or noise_var='dataset', 'cell' or 'reference'."
        )
    if embedding.gene_noise_var is None:
        warnings.warn(
            "this model was saved by an older dice without per-gene noise variances; using the isotropic "
            "likelihood (re-train the prior with dice.tl.train_prior to use the gene-weighted one).",
            stacklevel=3,
        )
        return "isotropic"
    return likelihood


def _uns_safe(value):
    if isinstance(value, dict):
        return {k: _uns_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_uns_safe(v) for v in value]
    return "none" if value is None else value


def denoise(
    adata: AnnData,
    *,
    model=None,
    mode: str = "default",
    layer: str | None = None,
    sampler: str | None = None,
    rho: float | None = None,
    rho_end: float | None = None,
    rho_schedule: str | None = None,
    n_iter: int | None = None,
    prior_step: str | None = None,
    n_prior_steps: int | None = None,
    n_samples: int | None = None,
    noise_var: str | float | None = None,
    mean_estimate: str | None = None,
    likelihood: str | None = None,
    min_shared: float = 0.5,
    store_samples: bool = False,
    key_added: str = "dice",
    seed: int = 0,
    device: str = "auto",
    batch_size: int = 32_768,
    progress: bool = True,
    train_kwargs: dict | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Denoise cell embeddings by sampling each cell's latent posterior under a diffusion prior.

    Parameters
    ----------
    adata
        Log-normalised cells (genes matched to the model's by name). Not modified on error.
    model
        A :class:`dice.models.DicePrior` from :func:`dice.tl.train_prior`. ``None`` trains one on
        ``adata`` itself first (atlas construction), with ``train_kwargs`` and ``seed``.
    mode
        ``"default"`` (exact posterior draws: ``sampler="direct"``, ``prior_step="ancestral"``, rho 0,
        10 samples, gene-weighted likelihood, noise level estimated on ``adata``; chosen by measurement) or
        ``"paper"`` (the authors' protocol: isotropic likelihood, full ancestral prior steps, 100
        iterations, rho 5 -> 0.5, sigma^2 = 1, one sample; slow). Any option
        below overrides the preset. Deliberate differences from the authors' code, in both modes: the
        reverse diffusion starts at the fractional diffusion time whose noise level is exactly rho
        (their code starts at a grid step, one step late), rho beyond the schedule's reach is reported, not silently
        clamped, and every random draw is seeded.
    sampler
        ``"gibbs"`` (split Gibbs, the paper's sampler) or ``"direct"`` (one reverse diffusion from the
        Gibbs sampler's target distribution).
    rho, rho_end, rho_schedule, n_iter
        Coupling strength, **in units of the cell's noise standard deviation sigma** (so results do not
        depend on the scale of the data), its final value and schedule (``"constant"``, ``"linear"``,
        ``"exponential"``) over ``n_iter`` Gibbs iterations. The sampler targets the posterior under
        noise variance ``sigma^2 (1 + rho^2)``: small rho trusts the measurement, large rho the prior.
    prior_step, n_prior_steps
        ``"ancestral"`` (every DDPM step from t0, the paper), ``"strided"`` (``n_prior_steps`` steps)
        or ``"tweedie"`` (one-call posterior-mean estimate; not a sample, under-states uncertainty).
    n_samples
        Independent posterior draws; their spread is the uncertainty.
    mean_estimate
        How ``X_dice`` estimates the posterior mean: ``"tweedie"`` (default with the direct sampler:
        the network's one-call ``E[u | x]`` at the target noise level, free of Monte Carlo error) or
        ``"samples"`` (the average of the draws; always used by the Gibbs sampler).
    likelihood
        The measurement model of the likelihood step. ``"gene_weighted"`` (default): each gene's noise
        variance is proportional to its residual variance in the reference (outside the k loadings), so
        a cell is measured by the weighted least-squares projection instead of ``V^T x`` (on the synthetic
        setups it brings the error from 1.17x to 1.02x the exact Bayes posterior's; BENCHMARKS.md,
        section 3). ``"isotropic"``: every gene equally noisy (the paper's model). Both treat the noise in
        latent space as isotropic; for the gene-weighted one this is its mean variance (the exact
        covariance's eigenvalues spread by ~1.3x on the synthetic data).
    noise_var
        How the noise level is estimated: ``"dataset"`` (from the residuals of all of ``adata`` outside
        the k loadings), ``"cell"`` (each cell's own residuals), ``"reference"`` (the reference's), or, with
        ``likelihood="isotropic"`` only, a number (sigma^2 per gene in standardised units).
    min_shared
        Smallest fraction of the model's genes that ``adata`` must have.
    store_samples
        Also keep the samples in ``obsm[f"X_{key_added}_samples"]`` (cells x n_samples x k).
    key_added
        Prefix of the written keys.
    seed
        Seeds every random draw (and the prior's training when ``model`` is None).
    device, batch_size, progress
        Torch device (``"auto"``: CUDA when present), rows per sampler batch, progress bar.
    copy
        Return a new AnnData instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the new AnnData when ``copy=True``. Writes ``obsm[f"X_{key_added}"]`` (posterior mean),
    ``obsm[f"X_{key_added}_pca"]`` (the undenoised projection ``V^T x``), ``obs[f"{key_added}_uncertainty"]``
    (posterior spread, see ``uns[key_added]["uncertainty"]``), ``obs[f"{key_added}_noise_sd"]`` (the
    measurement's noise sd per latent dimension, per cell; for the isotropic likelihood the per-gene sd)
    and ``uns[key_added]`` (every parameter, the seed and package versions).
    """
    from ..models import SamplerSettings
    from ..pp._project import standardized_matrix

    started = time.perf_counter()
    if mode not in PRESETS:
        raise DiceInputError(f"mode must be one of {sorted(PRESETS)}, got {mode!r}.")
    check_adata(adata, layer=layer, what="adata")
    options = dict(PRESETS[mode])
    overrides = {
        "method": sampler, "rho": rho, "rho_end": rho_end, "rho_schedule": rho_schedule, "n_iter": n_iter,
        "prior_step": prior_step, "n_prior_steps": n_prior_steps, "n_samples": n_samples,
        "noise_var": noise_var, "mean_estimate": mean_estimate, "likelihood": likelihood,
    }
    options.update({k: v for k, v in overrides.items() if v is not None})
    noise_spec = options.pop("noise_var")
    likelihood = options.pop("likelihood")
    if likelihood not in LIKELIHOODS:
        raise DiceInputError(f"likelihood must be one of {sorted(LIKELIHOODS)}, got {likelihood!r}.")
    settings = SamplerSettings(**options)
    try:
        settings.validate()
    except ValueError as error:
        raise DiceInputError(str(error)) from error

    trained_here = model is None
    if trained_here:
        from ._train import train_prior

        model = train_prior(adata, layer=layer, seed=seed, device=device, progress=progress,
                            **(train_kwargs or {}))
    embedding = model.embedding
    likelihood = _resolve_likelihood(likelihood, noise_spec, embedding)
    standardised = standardized_matrix(adata, embedding, layer=layer, min_shared=min_shared)
    scores = embedding.project(standardised)
    measured, sigma2 = _measurement(likelihood, noise_spec, standardised, embedding)
    del standardised
    posterior = model.posterior(measured, sigma2, settings, seed=seed, batch_size=batch_size, progress=progress)

    target = adata.copy() if copy else adata
    target.obsm[f"X_{key_added}"] = posterior.mean.astype(np.float32)
    target.obsm[f"X_{key_added}_pca"] = scores
    target.obs[f"{key_added}_uncertainty"] = posterior.spread.astype(np.float32)
    target.obs[f"{key_added}_noise_sd"] = np.sqrt(sigma2).astype(np.float32)
    if store_samples:
        target.obsm[f"X_{key_added}_samples"] = posterior.samples
    record = _record(model, settings, noise_spec, sigma2, posterior, mode, seed, trained_here, started, adata,
                     key_added)
    record.update(likelihood=likelihood, likelihood_model=LIKELIHOODS[likelihood])
    target.uns[key_added] = _uns_safe(record)
    return target if copy else None


def _record(model, settings, noise_spec, sigma2, posterior, mode, seed, trained_here, started, adata,
            key_added) -> dict:
    from importlib.metadata import version

    import torch

    from .. import __version__

    training = {k: v for k, v in model.config["training"].items()}
    return {
        "mode": mode,
        "sampler": {f.name: getattr(settings, f.name) for f in fields(settings)},
        "noise_var": str(noise_spec),
        "noise_var_mean": float(np.mean(sigma2)),
        "rho_units": "relative to each cell's noise sd sigma; absolute rho = rho * sigma",
        "latent_scale": model.latent_scale,
        "n_comps": model.embedding.n_comps,
        "n_genes_model": model.embedding.n_genes,
        "n_genes_shared": int(np.isin(model.embedding.genes, adata.var_names).sum()),
        "n_clamped_prior_steps": posterior.n_clamped,
        "uncertainty": UNCERTAINTY_DEFINITION,
        "posterior_mean": MEAN_DEFINITION["tweedie" if posterior.tweedie_mean is not None else "samples"],
        "embedding_key": f"X_{key_added}",
        "seed": seed,
        "prior_trained_on_this_data": trained_here,
        "prior": {"network": dict(model.config["network"]), "training": training,
                  "seed": model.config["seed"]},
        "seconds": time.perf_counter() - started,
        "versions": {"dice": __version__, "torch": str(torch.__version__), "numpy": np.__version__,
                     "anndata": version("anndata"), "scanpy": version("scanpy")},
    }
