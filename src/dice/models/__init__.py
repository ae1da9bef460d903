"""The torch part of dice: network, noise schedule, training loop, sampler and the model class.

Imported only when needed (``import dice`` does not import torch).
"""

from ._network import DiffusionMLP
from ._posterior import PosteriorSamples, SamplerSettings, sample_posterior
from ._prior import FORMAT_VERSION, DicePrior, resolve_device
from ._sampler import likelihood_step, prior_step, rho_schedule
from ._schedule import NoiseSchedule
from ._training import SameLabelMixup, train_diffusion

__all__ = [
    "FORMAT_VERSION",
    "DicePrior",
    "DiffusionMLP",
    "NoiseSchedule",
    "PosteriorSamples",
    "SameLabelMixup",
    "SamplerSettings",
    "likelihood_step",
    "prior_step",
    "resolve_device",
    "rho_schedule",
    "sample_posterior",
    "train_diffusion",
]
