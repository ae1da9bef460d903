"""The torch part of dice: network, noise schedule, training loop, sampler and the model class.

Imported only when needed (``import dice`` does not import torch).
"""

from ._network import DiffusionMLP
from ._prior import DicePrior
from ._schedule import NoiseSchedule

__all__ = ["DicePrior", "DiffusionMLP", "NoiseSchedule"]
