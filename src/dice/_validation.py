"""Input checks shared by every public function: fail early, say what is wrong and how to fix it."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

__all__ = ["DiceInputError", "check_adata", "get_matrix", "looks_like_counts"]


class DiceInputError(ValueError):
    """Raised when user input cannot be processed; the message says how to fix it."""


def get_matrix(adata: AnnData, layer: str | None = None):
    """Return ``adata.X`` or ``adata.layers[layer]`` without copying."""
    if layer is None:
        return adata.X
    if layer not in adata.layers:
        raise DiceInputError(
            f"Layer {layer!r} not found. Available layers: {list(adata.layers)}. "
            "Pass layer=None to use adata.X."
        )
    return adata.layers[layer]


def _values(matrix) -> np.ndarray:
    return matrix.data if sp.issparse(matrix) else np.asarray(matrix)


def looks_like_counts(matrix, *, max_rows: int = 2000) -> bool:
    """Heuristic: non-negative integers with a large maximum are raw counts, not log-normalised data.

    log1p-normalised data (target sum 1e4) rarely exceeds ~12 and is not integer-valued.
    """
    sub = matrix[: min(max_rows, matrix.shape[0])]
    values = _values(sub)
    if values.size == 0:
        return False
    if values.min() < 0:
        return False
    is_integer = np.allclose(values, np.round(values))
    return bool(is_integer and values.max() > 30)


def check_adata(
    adata: AnnData,
    *,
    layer: str | None = None,
    expect: str = "log-normalised",
    min_cells: int = 2,
    what: str = "adata",
) -> None:
    """Validate an AnnData before any work is done (so that nothing is modified on failure).

    Parameters
    ----------
    adata
        The data to check.
    layer
        Layer holding the expression values, ``None`` for ``adata.X``.
    expect
        ``"log-normalised"`` to refuse raw counts, ``"counts"`` to require them, ``"any"`` for no check.
    min_cells
        Smallest acceptable number of cells.
    what
        Name of the argument, used in messages.
    """
    if not isinstance(adata, AnnData):
        raise DiceInputError(f"{what} must be an AnnData object, got {type(adata).__name__}.")
    if adata.n_obs < min_cells or adata.n_vars == 0:
        raise DiceInputError(
            f"{what} is empty or too small ({adata.n_obs} cells x {adata.n_vars} genes); "
            f"at least {min_cells} cells and 1 gene are needed."
        )
    matrix = get_matrix(adata, layer)
    values = _values(matrix)
    if not np.issubdtype(values.dtype, np.number):
        raise DiceInputError(f"{what} holds non-numeric values ({values.dtype}).")
    finite = np.isfinite(values)
    if not finite.all():
        n_bad = int((~finite).sum())
        raise DiceInputError(
            f"{what} contains {n_bad} NaN or infinite values. Remove or impute them first, e.g. "
            "`adata = adata[:, np.isfinite(adata.X).all(axis=0)]` to drop affected genes."
        )
    if expect == "log-normalised" and looks_like_counts(matrix):
        raise DiceInputError(
            f"{what} looks like raw counts (non-negative integers, max {values.max():.0f}), but "
            "log-normalised data is expected. Run `dice.pp.recipe_paper(adata)` (QC, normalise to 1e4, "
            "log1p, highly variable genes), or `sc.pp.normalize_total(adata, target_sum=1e4); "
            "sc.pp.log1p(adata)`. If the counts are in a layer, pass `layer=`."
        )
    if expect == "counts" and (values.min() < 0 or not np.allclose(values, np.round(values))):
        raise DiceInputError(
            f"{what} does not look like raw counts (negative or non-integer values). The paper's "
            "recipe starts from raw UMI counts; pass `layer=` if the counts are stored in a layer."
        )
