"""``DicePrior``: everything needed to denoise a new dataset, with save/load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .._validation import DiceInputError
from ..pp._linear import LinearEmbedding
from ._network import DiffusionMLP
from .._settings import PosteriorSettings, TrainSettings
from ._posterior import PosteriorSamples, sample_posterior
from ._schedule import NoiseSchedule
from ._training import SameLabelMixup, train_diffusion

__all__ = ["FORMAT_VERSION", "DicePrior", "resolve_device"]

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


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
    ):
        self.embedding = embedding
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
    ) -> DicePrior:
        """Train the diffusion prior on reference latents (see :func:`dice.tl.train_prior`).

        ``settings.mixup_prob`` applies only with ``labels`` (default 0.9 with labels, else no mixup).
        """
        settings = settings or TrainSettings()
        device = resolve_device(device)
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
            network, schedule, scaled, n_steps=settings.n_updates, batch_size=settings.batch_size, lr=settings.lr,
            weight_decay=settings.weight_decay, generator=generator, mixup=mixup, progress=progress,
        )
        config = {
            "network": {"hidden_dim": settings.hidden_dim, "n_blocks": settings.n_blocks, "time_dim": 16,
                        "norm": settings.norm},
            "schedule": schedule.config(),
            "training": {
                "n_updates": settings.n_updates, "batch_size": settings.batch_size, "lr": settings.lr,
                "weight_decay": settings.weight_decay, "mixup_prob": mixup_prob if mixup is not None else 0.0,
                "n_cells": int(latents.shape[0]),
            },
            "seed": seed,
            "device": str(device),
            "history": history,
        }
        return cls(embedding, network, schedule, latent_scale, config, device=device)

    def sample_prior(self, n_cells: int, *, seed: int = 0, n_steps: int | None = None) -> np.ndarray:
        """Generate latent cell states from the prior (full ancestral reverse diffusion, or strided)."""
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed)
        start = torch.randn((n_cells, self.embedding.n_comps), generator=generator, device=self.device)
        t_max = torch.full((n_cells,), self.schedule.max_noise_std, dtype=torch.float64)
        # an "observation" that is pure noise at the schedule's largest level starts the chain at t = T
        from ._sampler import prior_step

        method = "ancestral" if n_steps is None else "strided"
        x, _ = prior_step(
            self.network, self.schedule, start * self.schedule.max_noise_std, t_max, generator,
            method=method, n_steps=n_steps or 1,
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
    ) -> PosteriorSamples:
        """Posterior of latent measurements ``scores`` with per-cell noise variances ``sigma2`` (array level)."""
        return sample_posterior(
            self.network, self.schedule, np.asarray(scores), np.asarray(sigma2), self.latent_scale,
            settings or PosteriorSettings(), seed=seed, device=self.device, keep_samples=keep_samples,
            progress=progress,
        )

    def to(self, device: str | torch.device) -> DicePrior:
        """Move the network to ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``; refused when unavailable)."""
        self.device = resolve_device(device)
        self.network = self.network.to(self.device)
        return self

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``config.json`` (format version, genes, parameters, history) and tensor-only weights."""
        from .. import __version__

        directory = Path(directory)
        if directory.exists() and any(directory.iterdir()) and not overwrite:
            raise FileExistsError(f"{directory} exists and is not empty; pass overwrite=True to replace it.")
        directory.mkdir(parents=True, exist_ok=True)
        emb = self.embedding
        config = {
            "format_version": FORMAT_VERSION,
            "dice_version": __version__,
            "genes": [str(g) for g in emb.genes],
            "n_comps": emb.n_comps,
            "max_value": emb.max_value,
            "noise_var": emb.noise_var,
            "latent_scale": self.latent_scale,
            **self.config,
        }
        tensors = {f"network.{k}": v.detach().cpu() for k, v in self.network.state_dict().items()}
        tensors.update({
            "embedding.mean": torch.as_tensor(emb.mean),
            "embedding.std": torch.as_tensor(emb.std),
            "embedding.loadings": torch.as_tensor(emb.loadings),
            "embedding.singular_values": torch.as_tensor(np.asarray(emb.singular_values)),
        })
        if emb.gene_noise_var is not None:
            tensors["embedding.gene_noise_var"] = torch.as_tensor(emb.gene_noise_var)
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=1))
        torch.save(tensors, directory / WEIGHTS_FILE)
        return directory

    @classmethod
    def load(cls, directory: str | Path, *, device: str | torch.device = "auto") -> DicePrior:
        """Load a model saved by :meth:`save`; checks the format version and the gene list."""
        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        if not config_path.is_file() or not weights_path.is_file():
            raise DiceInputError(
                f"{directory} is not a dice model directory (expected {CONFIG_FILE} and {WEIGHTS_FILE})."
            )
        config = json.loads(config_path.read_text())
        version = config.get("format_version")
        if version != FORMAT_VERSION:
            raise DiceInputError(
                f"{directory} was saved in model format version {version} (by dice "
                f"{config.get('dice_version', '?')}); this dice reads version {FORMAT_VERSION}. Install the "
                "dice version that wrote it, or re-train the prior with `dice.tl.train_prior`."
            )
        tensors = torch.load(weights_path, map_location="cpu", weights_only=True)
        genes = pd.Index(config["genes"])
        loadings = tensors["embedding.loadings"].numpy()
        if loadings.shape != (len(genes), config["n_comps"]) or not genes.is_unique:
            raise DiceInputError(
                f"{directory}: the gene list in {CONFIG_FILE} ({len(genes)} genes) does not match the "
                f"saved loadings {tuple(loadings.shape)}; the directory is corrupted or mixed. Re-save it."
            )
        # absent from models saved before the gene-weighted likelihood (denoise then falls back, with a warning)
        gene_noise_var = tensors.get("embedding.gene_noise_var")
        embedding = LinearEmbedding(
            genes=genes, mean=tensors["embedding.mean"].numpy(), std=tensors["embedding.std"].numpy(),
            loadings=loadings, singular_values=tensors["embedding.singular_values"].numpy(),
            noise_var=float(config["noise_var"]), max_value=config["max_value"],
            gene_noise_var=None if gene_noise_var is None else gene_noise_var.numpy(),
        )
        net = config["network"]
        network = DiffusionMLP(
            config["n_comps"], hidden_dim=net["hidden_dim"], n_blocks=net["n_blocks"],
            time_dim=net["time_dim"], norm=net["norm"],
        )
        network.load_state_dict({k[len("network."):]: v for k, v in tensors.items() if k.startswith("network.")})
        schedule = NoiseSchedule(**config["schedule"])
        keep = {k: config[k] for k in ("network", "schedule", "training", "seed", "history")}
        return cls(embedding, network, schedule, config["latent_scale"], keep, device=resolve_device(device))
