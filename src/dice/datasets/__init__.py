"""Datasets: synthetic generators (paper section 4, E.2), their exact Bayes posterior, the registry."""

from ._bayes import (
    embedding_affine_map,
    exact_posterior,
    latents_to_embedding_coords,
    posterior_parameters,
    sample_exact_posterior,
    to_embedding_coords,
)
from ._registry import DatasetChecksumError, DatasetNotFoundError, cbmc, fetch, list_datasets, load, registry
from ._synthetic import SYNTHETIC_SETUPS, synthetic

__all__: list[str] = [
    "SYNTHETIC_SETUPS",
    "DatasetChecksumError",
    "DatasetNotFoundError",
    "cbmc",
    "embedding_affine_map",
    "exact_posterior",
    "fetch",
    "latents_to_embedding_coords",
    "list_datasets",
    "load",
    "posterior_parameters",
    "registry",
    "sample_exact_posterior",
    "synthetic",
    "to_embedding_coords",
]
