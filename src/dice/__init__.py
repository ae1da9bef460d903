"""dice: diffusion-induced cell embeddings for single-cell data.

Denoised, uncertainty-aware cell embeddings from a latent plug-and-play diffusion prior
(Meier et al., "Clustering by denoising"), packaged for scanpy workflows::

    import dice
    model = dice.tl.train_prior(adata_ref)           # reference: loadings + diffusion prior
    dice.tl.denoise(adata_query, model=model)        # writes obsm["X_dice"], obs["dice_uncertainty"]
    dice.tl.denoise(adata)                           # atlas: train on adata itself, then denoise it

Submodules are imported lazily so that ``import dice`` stays fast and never imports torch. The errors and
warnings dice raises are at the top level: ``dice.DiceInputError`` (a ``ValueError``: bad input, with what
to do about it), ``dice.DiceModelError`` (a saved model that cannot be read back), ``dice.DepthWarning`` and
``dice.UnreliableLabelWarning``.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _package_version

try:
    __version__ = _package_version("dice-sc")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

_SUBMODULES = ("pp", "tl", "pl", "datasets", "metrics", "models")
#: What dice raises and warns, for ``except`` clauses and warning filters (all defined in ``dice._validation``).
_ERRORS_AND_WARNINGS = ("DiceInputError", "DiceModelError", "DepthWarning", "UnreliableLabelWarning")

__all__ = ["__version__", *_SUBMODULES, *_ERRORS_AND_WARNINGS]


def __getattr__(name: str):
    if name in _SUBMODULES:
        module = import_module(f"dice.{name}")
        globals()[name] = module
        return module
    if name in _ERRORS_AND_WARNINGS:
        value = getattr(import_module("dice._validation"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dice' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
