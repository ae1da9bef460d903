"""Tools: train the diffusion prior and denoise cell embeddings."""

from ._confidence import cluster_confidence, credible_sets, expected_calibration_error, reliability_table
from ._denoise import PRESETS, denoise
from ._train import train_prior
from ._transfer import transfer_labels

__all__ = [
    "PRESETS",
    "cluster_confidence",
    "credible_sets",
    "denoise",
    "expected_calibration_error",
    "reliability_table",
    "train_prior",
    "transfer_labels",
]
