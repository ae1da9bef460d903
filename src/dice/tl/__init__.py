"""Tools: train the diffusion prior, denoise cell embeddings, transfer labels, cluster confidence."""

from .._settings import PosteriorSettings, TrainSettings, TransferSettings
from ._confidence import cluster_confidence
from ._denoise import denoise
from ._train import train_prior
from ._transfer import transfer_labels

__all__ = [
    "PosteriorSettings",
    "TrainSettings",
    "TransferSettings",
    "cluster_confidence",
    "denoise",
    "train_prior",
    "transfer_labels",
]
