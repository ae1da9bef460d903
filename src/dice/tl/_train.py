"""``dice.tl.train_prior``: fit loadings and a diffusion prior on a reference."""

from __future__ import annotations

import logging

import numpy as np
from anndata import AnnData

from .._validation import DiceInputError, check_adata, get_matrix

__all__ = ["train_prior"]

logger = logging.getLogger("dice")


def train_prior(
    adata_ref: AnnData,
    *,
    n_comps: int | None = None,
    layer: str | None = None,
    labels_key: str | None = None,
    mixup_prob: float | None = None,
    max_value: float | None = 10.0,
    hidden_dim: int = 64,
    n_blocks: int = 2,
    norm: str = "batch",
    n_timesteps: int = 512,
    n_steps: int = 4000,
    batch_size: int = 512,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
):
    """Fit the loading matrix V and train a diffusion prior over the reference's latent cell states.

    Parameters
    ----------
    adata_ref
        Reference cells, log-normalised (raw counts are refused; see :func:`dice.pp.recipe_paper`).
        Not modified.
    n_comps
        Latent dimension k; ``None`` picks the elbow of the singular values (between 10 and 50).
    layer
        Use ``adata_ref.layers[layer]`` instead of ``X``.
    labels_key
        Column of ``obs`` with cell labels, enabling the paper's same-label mixup augmentation.
    mixup_prob
        Probability of replacing a training latent by a Dirichlet(1) mix of it and four same-label
        cells; default 0.9 (the paper's value) when ``labels_key`` is given, else no mixup.
    max_value
        Cap after standardising genes with the reference statistics (the paper's 10).
    hidden_dim, n_blocks, norm
        Network width D, number of residual blocks M and normalisation. The CPU-sized default
        (D = 64, M = 2, ~150k parameters for k = 25) matched larger networks in our measurements;
        the paper used D = 512, M = 8 on GPU for real data.
    n_timesteps
        Diffusion steps T of the linear beta schedule (1e-4 to 2e-2).
    n_steps, batch_size, lr, weight_decay
        AdamW optimisation: number of gradient steps (not epochs, so that cost does not grow with the
        number of cells), mini-batch size, peak learning rate (cosine decay), weight decay.
    seed
        Seeds the network initialisation, batches, diffusion times and noise.
    device
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``.
    progress
        Show a progress bar.

    Returns
    -------
    :class:`dice.models.DicePrior`, holding genes, standardisation, V, the network, its noise schedule,
    the training history and the seed. Save it with ``model.save(path)``.
    """
    from ..models import DicePrior
    from ..pp._linear import LinearEmbedding

    check_adata(adata_ref, layer=layer, what="adata_ref", min_cells=3)
    labels = None
    if labels_key is not None:
        if labels_key not in adata_ref.obs:
            raise DiceInputError(
                f"labels_key {labels_key!r} is not a column of adata_ref.obs (columns: {list(adata_ref.obs)})."
            )
        labels = adata_ref.obs[labels_key].astype(str).to_numpy()
        if adata_ref.obs[labels_key].isna().any():
            raise DiceInputError(f"obs[{labels_key!r}] has missing labels; drop those cells or fill them.")
    if mixup_prob is None:
        mixup_prob = 0.9 if labels is not None else 0.0
    if not 0.0 <= mixup_prob <= 1.0:
        raise DiceInputError(f"mixup_prob must lie in [0, 1], got {mixup_prob}.")
    if mixup_prob > 0 and labels is None:
        raise DiceInputError("mixup_prob > 0 needs labels_key= (mixup combines cells of the same label).")
    matrix = get_matrix(adata_ref, layer)
    embedding = LinearEmbedding.fit(
        matrix, adata_ref.var_names, n_comps=n_comps, max_value=max_value, seed=seed
    )
    latents = embedding.project(embedding.standardize(_dense(matrix)))
    logger.info("dice: k = %d latent dimensions, reference noise variance %.3g", embedding.n_comps,
                embedding.noise_var)
    return DicePrior.fit(
        embedding, latents, labels=labels, mixup_prob=mixup_prob, hidden_dim=hidden_dim, n_blocks=n_blocks,
        norm=norm, n_timesteps=n_timesteps, n_steps=n_steps, batch_size=batch_size, lr=lr,
        weight_decay=weight_decay, seed=seed, device=device, progress=progress,
    )


def _dense(matrix) -> np.ndarray:
    return matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix)
