"""Fidelity of an embedding to known clean latents (simulations)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.linalg import orthogonal_procrustes

from ._validation import as_embedding, check_same_length

__all__ = ["latent_error"]


def latent_error(
    embedding: np.ndarray,
    clean_latents: np.ndarray,
    *,
    per_dimension: bool = False,
    align: Literal["none", "orthogonal"] = "none",
) -> float:
    """Mean squared error between an embedding and the clean latents it should recover.

    With ``U`` the embedding and ``Z`` the clean latents (both ``n`` cells x ``d`` dimensions)::

        per_dimension=False (default):  (1/n) sum_i ||U_i - Z_i||^2          # mean squared distance per cell
        per_dimension=True:              (1/(n d)) sum_i sum_j (U_ij - Z_ij)^2  # = the above / d

    Parameters
    ----------
    embedding
        Estimated latents, cells x dimensions.
    clean_latents
        True noise-free latents for the same cells in the same order, same shape.
    per_dimension
        Also average over dimensions (the elementwise MSE) instead of summing over them.
    align
        ``"none"`` (default) compares coordinates as they are. ``"orthogonal"`` first rotates/reflects the
        embedding by the orthogonal matrix ``R`` minimising ``||U R - Z||_F`` (orthogonal Procrustes; no
        centring, no scaling), for embeddings identified only up to rotation. State which one you report.

    Returns
    -------
    The error as a float (0 for a perfect recovery).

    Raises
    ------
    ValueError
        If shapes differ or values are not finite.
    """
    u = as_embedding(embedding, "embedding")
    z = as_embedding(clean_latents, "clean_latents")
    check_same_length(u.shape[0], z.shape[0], "clean_latents")
    if u.shape[1] != z.shape[1]:
        raise ValueError(f"`embedding` has {u.shape[1]} dimensions but `clean_latents` has {z.shape[1]}.")
    if align == "orthogonal":
        rotation, _ = orthogonal_procrustes(u, z)
        u = u @ rotation
    elif align != "none":
        raise ValueError(f"`align` must be 'none' or 'orthogonal', got {align!r}.")
    sq_dist = np.sum((u - z) ** 2, axis=1)
    error = float(np.mean(sq_dist))
    return error / u.shape[1] if per_dimension else error
