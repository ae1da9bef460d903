"""``DicePrior``: everything needed to denoise a new dataset, with save/load."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .._settings import PosteriorSettings, TrainSettings
from .._validation import DiceInputError, DiceModelError
from ..likelihood._counts import CountReference
from ..pp._linear import LinearEmbedding
from . import _io
from ._network import DiffusionMLP
from ._outside import apply_gaussian_prior, latent_moments, outside_prior
from ._posterior import CHUNK_CELLS, PosteriorSamples, sample_posterior, warn_clamped, warn_outside
from ._schedule import NoiseSchedule
from ._training import SameLabelMixup, train_diffusion

__all__ = ["FORMAT_VERSION", "DicePrior", "resolve_device"]

FORMAT_VERSION = _io.FORMAT_VERSION  # 2: atomic writes, checksums and a tensor manifest (see ``_io``)
CONFIG_FILE = _io.CONFIG_FILE
WEIGHTS_FILE = _io.WEIGHTS_FILE
COUNT_ARRAYS = ("gene_scale", "dispersion", "prior_var")  # CountReference fields saved as ``count.*`` tensors
COUNT_OPTIONAL = ("ambient", "start")  # CountReference arrays absent from models saved before they existed
COUNT_KEY = "count_reference"  # its floats in the config

logger = logging.getLogger("dice")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device to use: the one requested, or a :class:`DiceInputError` when it is not usable here.

    Parameters
    ----------
    device
        ``"auto"`` (CUDA when available, else the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:<index>"``, ``"mps"``
        or a :class:`torch.device`. A device that is unknown or not available on this machine is refused,
        never silently replaced by another.

    Returns
    -------
    The device.
    """
    if isinstance(device, str) and device.strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    n_cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mps = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    available = ["cpu", *(f"cuda:{i}" for i in range(n_cuda)), *(["mps"] if mps else [])]
    hint = f"Devices available here: {available}; pass one of them, or device='auto' (CUDA when present, else CPU)."
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DiceInputError(f"Unknown device {device!r}. {hint}") from None
    if resolved.type == "cpu":
        return resolved
    if resolved.type == "cuda":
        if n_cuda == 0:
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise DiceInputError(f"Device {device!r} was requested, but {why}. {hint}")
        if resolved.index is not None and resolved.index >= n_cuda:
            raise DiceInputError(f"Device {device!r} was requested, but only {n_cuda} CUDA GPU(s) exist. {hint}")
        return resolved
    if resolved.type == "mps" and mps:
        return resolved
    raise DiceInputError(f"Device {device!r} is not available on this machine (or not supported by dice). {hint}")


class DicePrior:
    """A reference's linear embedding plus a diffusion prior over its latent cell states.

    Create one with :func:`dice.tl.train_prior`; use it with :func:`dice.tl.denoise`.

    Attributes
    ----------
    embedding
        Gene standardisation and loadings V (:class:`dice.pp.LinearEmbedding`).
    network
        The noise-prediction network (works on ``latents / latent_scale``).
    schedule
        The diffusion noise schedule.
    latent_scale
        One global scale: the network sees latents divided by it (an exact reparametrisation that
        gives the network unit-scale inputs; per-dimension whitening would change the model).
    config
        Network and training parameters, seed and the training history.
    """

    def __init__(
        self,
        embedding: LinearEmbedding,
        network: DiffusionMLP,
        schedule: NoiseSchedule,
        latent_scale: float,
        config: dict,
        device: str | torch.device = "cpu",
        count_reference: CountReference | None = None,
    ):
        self.embedding = embedding
        self.count_reference = count_reference
        self.schedule = schedule
        self.latent_scale = float(latent_scale)
        self.config = config
        self.device = resolve_device(device)
        self.network = network.to(self.device).eval()

    def __repr__(self) -> str:
        net = self.config["network"]
        return (
            f"DicePrior({self.embedding.n_genes} genes, k={self.embedding.n_comps}, "
            f"D={net['hidden_dim']}, M={net['n_blocks']}, trained {self.config['training']['n_updates']} updates, "
            f"seed={self.config['seed']})"
        )

    @property
    def genes(self) -> pd.Index:
        return self.embedding.genes

    @property
    def history(self) -> dict:
        return self.config.get("history", {})

    @classmethod
    def fit(
        cls,
        embedding: LinearEmbedding,
        latents: np.ndarray,
        *,
        labels: np.ndarray | None = None,
        settings: TrainSettings | None = None,
        seed: int = 0,
        device: str | torch.device = "auto",
        progress: bool = True,
        count_reference: CountReference | None = None,
        latents_kind: str = "projection",
    ) -> DicePrior:
        """Train the diffusion prior on reference latents (see :func:`dice.tl.train_prior`).

        ``settings.mixup_prob`` applies only with ``labels`` (default 0.9 with labels, else no mixup).
        ``count_reference`` (the count likelihood's per-gene statistics) travels with the model;
        ``latents_kind`` records what ``latents`` are (``"projection"``: ``V^T x_std``; ``"counts"``: the count
        measurement of the reference; ``"counts_posterior_draw"``: a draw from each reference cell's count
        posterior) in ``config["prior_latents"]``.
        """
        settings = settings or TrainSettings()
        device = resolve_device(device)
        logger.info("dice: training the prior on %d cells on device %s", latents.shape[0], device)
        latent_scale = float(np.sqrt(np.mean(np.var(latents, axis=0))))
        if not np.isfinite(latent_scale) or latent_scale <= 0:
            raise DiceInputError("The reference latents have no variance; is the reference constant?")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            network = DiffusionMLP(
                latents.shape[1], hidden_dim=settings.hidden_dim, n_blocks=settings.n_blocks, norm=settings.norm
            )
        network = network.to(device)
        schedule = NoiseSchedule(settings.n_timesteps)
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)
        scaled = torch.as_tensor(latents / latent_scale, dtype=torch.float32, device=device)
        mixup_prob = settings.mixup_prob if settings.mixup_prob is not None else (0.9 if labels is not None else 0.0)
        mixup = None
        if labels is not None and mixup_prob > 0:
            mixup = SameLabelMixup(labels, prob=mixup_prob, device=device)
        history = train_diffusion(
            network,
            schedule,
            scaled,
            n_steps=settings.n_updates,
            batch_size=settings.batch_size,
            lr=settings.lr,
            weight_decay=settings.weight_decay,
            generator=generator,
            mixup=mixup,
            progress=progress,
        )
        config = {
            "network": {
                "hidden_dim": settings.hidden_dim,
                "n_blocks": settings.n_blocks,
                "time_dim": 16,
                "norm": settings.norm,
            },
            "schedule": schedule.config(),
            "training": {
                "n_updates": settings.n_updates,
                "batch_size": settings.batch_size,
                "lr": settings.lr,
                "weight_decay": settings.weight_decay,
                "mixup_prob": mixup_prob if mixup is not None else 0.0,
                "n_cells": int(latents.shape[0]),
            },
            "seed": seed,
            "device": str(device),
            "history": history,
            "prior_latents": latents_kind,
            "latent_moments": latent_moments(latents),
        }
        return cls(embedding, network, schedule, latent_scale, config, device=device, count_reference=count_reference)

    def sample_prior(self, n_cells: int, *, seed: int = 0, n_steps: int | None = None) -> np.ndarray:
        """Generate latent cell states from the prior (full ancestral reverse diffusion, or strided)."""
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed)
        start = torch.randn((n_cells, self.embedding.n_comps), generator=generator, device=self.device)
        t_max = torch.full((n_cells,), self.schedule.max_noise_std, dtype=torch.float64, device=self.device)
        # an "observation" that is pure noise at the schedule's largest level starts the chain at t = T
        from ._sampler import prior_step

        method = "ancestral" if n_steps is None else "strided"
        x, _ = prior_step(
            self.network,
            self.schedule,
            start * self.schedule.max_noise_std,
            t_max,
            generator,
            method=method,
            n_steps=n_steps or 1,
        )
        return (x * self.latent_scale).cpu().numpy()

    def posterior(
        self,
        scores: np.ndarray,
        sigma2: np.ndarray,
        settings: PosteriorSettings | None = None,
        *,
        seed: int = 0,
        keep_samples: bool = False,
        progress: bool = True,
        first_chunk: int = 0,
        warn: bool = True,
    ) -> PosteriorSamples:
        """Posterior of latent measurements ``scores`` with per-cell noise variances ``sigma2`` (array level).

        ``first_chunk`` and ``warn``: see :func:`dice.models._posterior.sample_posterior` (rows of a larger
        dataset seeded as in the whole; the clamped-steps and outside warnings left to the caller). Cells
        measured far outside the reference's latent states get the posterior of a Gaussian approximation of
        the prior instead of the network's (:mod:`dice.models._outside`; ``PosteriorSamples.n_outside``).
        """
        logger.info("dice: sampling the posterior of %d cells on device %s", len(scores), self.device)
        settings = settings or PosteriorSettings()
        scores, sigma2 = np.asarray(scores), np.asarray(sigma2)
        result = sample_posterior(
            self.network,
            self.schedule,
            scores,
            sigma2,
            self.latent_scale,
            settings,
            seed=seed,
            device=self.device,
            keep_samples=keep_samples,
            progress=progress,
            first_chunk=first_chunk,
            warn=False,
        )
        moments = self.config.get("latent_moments")  # absent from models saved before it existed: no guard
        if moments is not None:
            direct = settings.sampler == "direct"  # above the schedule's top level: the prior's blur, Gaussian
            max_level = self.schedule.max_noise_std * self.latent_scale if direct else None
            outside = outside_prior(scores, sigma2, moments, settings.rho, max_level)
            apply_gaussian_prior(
                result, outside, scores, sigma2, moments, settings, seed=seed, first_row=first_chunk * CHUNK_CELLS
            )
            if direct:
                result.n_clamped = 0  # every clamped row of the direct sampler was replaced just now
        if warn and result.n_clamped:
            warn_clamped(result.n_clamped, self.schedule, stacklevel=3)
        if warn and result.n_outside:
            warn_outside(result.n_outside, stacklevel=3)
        return result

    def to(self, device: str | torch.device) -> DicePrior:
        """Move the network to ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``; refused when unavailable)."""
        self.device = resolve_device(device)
        self.network = self.network.to(self.device)
        return self

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Write the model to ``directory``: ``config.json`` (settings, genes, history, checksums) and ``weights.pt``.

        The write is atomic: the files go to a temporary directory beside ``directory`` that is renamed into
        place, so an interrupted save leaves either the previous model or the new one, never a mix.

        Parameters
        ----------
        directory
            Target directory (created; its parent too).
        overwrite
            Replace an existing model directory (refused otherwise when it is not empty).

        Returns
        -------
        The directory written.
        """
        from .. import __version__

        emb = self.embedding
        config = {
            "dice_version": __version__,
            "genes": [str(g) for g in emb.genes],
            "n_comps": emb.n_comps,
            "latent_scale": self.latent_scale,
        }
        tensors = {f"network.{k}": v for k, v in self.network.state_dict().items()}
        # every embedding field travels: arrays as tensors, everything else (noise_var, max_value...) in the config
        for field in dataclasses.fields(emb):
            if field.name == "genes":
                continue
            value = getattr(emb, field.name)
            if isinstance(value, np.ndarray | torch.Tensor):
                tensors[f"embedding.{field.name}"] = torch.as_tensor(value)
            else:
                config[field.name] = value.item() if isinstance(value, np.generic) else value
        if self.count_reference is not None:  # arrays as ``count.*`` tensors, the floats in the config
            ref = self.count_reference
            for name in COUNT_ARRAYS + COUNT_OPTIONAL:
                if (value := getattr(ref, name)) is not None:
                    tensors[f"count.{name}"] = torch.as_tensor(np.asarray(value, dtype=np.float64))
            config[COUNT_KEY] = {
                "floor": float(ref.floor),
                "min_rate": float(ref.min_rate),
                "ambient_fraction": float(ref.ambient_fraction),
            }
            if ref.start_log_depth is not None:
                config[COUNT_KEY]["start_log_depth"] = [float(v) for v in ref.start_log_depth]
        clash = sorted(set(config) & set(self.config))
        if clash:
            raise ValueError(f"model config keys {clash} collide with the embedding's fields")
        config.update(self.config)
        return _io.write_model_dir(directory, config, tensors, overwrite=overwrite)

    @classmethod
    def load(cls, directory: str | Path, *, device: str | torch.device = "auto") -> DicePrior:
        """Load a model written by :meth:`save`, onto ``device``, after checking that it is intact.

        Parameters
        ----------
        directory
            The model directory.
        device
            Where the network goes (see :func:`resolve_device`); an unavailable device is refused.

        Raises
        ------
        DiceModelError
            The directory is missing, incomplete, corrupted, mixed from two models, of another format version,
            or holds non-finite weights; the message names the file and the fix.
        """
        device = resolve_device(device)
        directory = Path(directory)
        config, tensors = _io.read_model_dir(directory)
        config_path = directory / CONFIG_FILE
        fields = {f.name: f for f in dataclasses.fields(LinearEmbedding)}
        genes = pd.Index(config["genes"])
        loadings = tensors.get("embedding.loadings")
        if loadings is None or tuple(loadings.shape) != (len(genes), config["n_comps"]) or not genes.is_unique:
            shape = None if loadings is None else tuple(loadings.shape)
            raise DiceModelError(
                f"{config_path}: the gene list ({len(genes)} genes, k={config['n_comps']}"
                f"{'' if genes.is_unique else ', with duplicates'}) does not match the saved loadings {shape}; "
                "the directory is corrupted or mixed. Re-save the model."
            )
        count_tensors = {f"count.{name}" for name in COUNT_ARRAYS}
        known = count_tensors | {f"count.{name}" for name in COUNT_OPTIONAL}
        unknown = [
            k
            for k in tensors
            if not k.startswith("network.") and k not in known and k.removeprefix("embedding.") not in fields
        ]
        if unknown:
            raise DiceModelError(
                f"{directory / WEIGHTS_FILE}: tensors {unknown[:5]} are not known to this dice; the model was written "
                "by a newer dice. Upgrade dice to load it."
            )
        kwargs = {"genes": genes}
        for name in fields:
            if f"embedding.{name}" in tensors:
                kwargs[name] = tensors[f"embedding.{name}"].numpy()
            elif name in config and name != "genes":
                kwargs[name] = config[name]
        count_reference = _load_count_reference(
            config, tensors, count_tensors, len(genes), config["n_comps"], config_path
        )
        embedded = {"genes", "n_comps", "latent_scale", "dice_version", COUNT_KEY, *fields, *_io.IO_KEYS}
        keep = {k: v for k, v in config.items() if k not in embedded}
        try:
            embedding = LinearEmbedding(**kwargs)
            net = config["network"]
            network = DiffusionMLP(
                config["n_comps"],
                hidden_dim=net["hidden_dim"],
                n_blocks=net["n_blocks"],
                time_dim=net["time_dim"],
                norm=net["norm"],
            )
            network.load_state_dict(
                {k.removeprefix("network."): v for k, v in tensors.items() if k.startswith("network.")}
            )
            schedule = NoiseSchedule(**config["schedule"])
            latent_scale = float(config["latent_scale"])
            if not latent_scale > 0:
                raise ValueError(f"latent_scale must be positive, got {latent_scale}")
        except Exception as error:
            raise DiceModelError(
                f"{config_path}: the model cannot be rebuilt from its settings and weights ({type(error).__name__}: "
                f"{str(error)[:200]}); it was written by an incompatible dice. Re-save it with this dice, or re-train "
                "it with `dice.tl.train_prior`."
            ) from None
        return cls(embedding, network, schedule, latent_scale, keep, device=device, count_reference=count_reference)


def _load_count_reference(config, tensors, names, n_genes, k, config_path) -> CountReference | None:
    """The saved :class:`CountReference` (``count.*`` tensors plus ``config["count_reference"]``), checked."""
    present = names & set(tensors)
    if not present and COUNT_KEY not in config:
        return None
    floats = config.get(COUNT_KEY)
    shapes = {"gene_scale": (n_genes,), "dispersion": (n_genes,), "prior_var": (k,)}
    ok = present == names and isinstance(floats, dict) and {"floor", "min_rate"} <= set(floats)
    ok = ok and all(tuple(tensors[f"count.{n}"].shape) == shape for n, shape in shapes.items())
    ambient = tensors.get("count.ambient")
    fraction = floats.get("ambient_fraction", 0.0) if isinstance(floats, dict) else 0.0
    ok = ok and (ambient is None or tuple(ambient.shape) == (n_genes,))
    ok = ok and isinstance(fraction, int | float) and 0 <= fraction < 1 and (ambient is not None or fraction == 0)
    start = tensors.get("count.start")
    start_log_depth = floats.get("start_log_depth") if isinstance(floats, dict) else None
    if start is not None:  # the start map needs its depth range, and fits the model's k
        ok = ok and tuple(start.shape) == (2 * k + 2, k) and isinstance(start_log_depth, list)
        ok = ok and len(start_log_depth) == 2 and all(isinstance(v, int | float) for v in start_log_depth)
    if not ok:
        raise DiceModelError(
            f"{config_path}: the count reference is incomplete or does not match the model's genes and k "
            f"(tensors {sorted(present)}, config {floats!r}); the directory is corrupted or mixed. Re-save the model."
        )
    return CountReference(
        *(tensors[f"count.{n}"].numpy().astype(np.float64) for n in COUNT_ARRAYS),
        floor=float(floats["floor"]),
        min_rate=float(floats["min_rate"]),
        ambient=None if ambient is None else ambient.numpy().astype(np.float64),
        ambient_fraction=float(fraction),
        start=None if start is None else start.numpy().astype(np.float64),
        start_log_depth=None if start is None else tuple(float(v) for v in start_log_depth),
    )
