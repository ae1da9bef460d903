"""Input checks shared by every public function: fail early, say what is wrong and how to fix it."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

logger = logging.getLogger("dice")

__all__ = [
    "DepthWarning",
    "DiceInputError",
    "DiceModelError",
    "UnreliableLabelWarning",
    "ValueSummary",
    "check_adata",
    "get_matrix",
    "looks_like_counts",
]


class DiceInputError(ValueError):
    """Raised when user input cannot be processed; the message says how to fix it."""


def get_matrix(adata: AnnData, layer: str | None = None):
    """Return ``adata.X`` or ``adata.layers[layer]`` without copying."""
    if layer is None:
        return adata.X
    if layer not in adata.layers:
        raise DiceInputError(
            f"Layer {layer!r} not found. Available layers: {list(adata.layers)}. Pass layer=None to use adata.X."
        )
    return adata.layers[layer]


def _values(matrix) -> np.ndarray:
    return matrix.data if sp.issparse(matrix) else np.asarray(matrix)


@dataclass
class ValueSummary:
    """What a pass over the data saw: non-finite values, the range, integers, per-gene means and spreads.

    Filled block by block (:meth:`update`), so that the checks look at *every* value at the cost of one
    pass that the computation makes anyway; :meth:`check` then says what is wrong and how to fix it.
    """

    n_values: int = 0
    n_rows: int = 0
    n_nonfinite: int = 0
    min: float = np.inf
    max: float = -np.inf
    n_at_min: int = 0
    all_integer: bool = True
    column_sum: np.ndarray | None = None
    column_sumsq: np.ndarray | None = None
    n_count_rows: int = 0
    first_count_row: int = -1

    def update(self, block) -> None:
        values = _values(block)
        if values.size == 0:
            return
        if not np.issubdtype(values.dtype, np.number):
            raise DiceInputError(f"the expression values are not numeric ({values.dtype}).")
        finite = np.isfinite(values)
        n_bad = int(values.size - np.count_nonzero(finite))
        self.n_nonfinite += n_bad
        self.n_values += int(np.prod(block.shape))
        if not n_bad:
            self._count_rows(block)
        self.n_rows += int(block.shape[0])
        good = values[finite] if n_bad else values
        if good.size:
            low = float(good.min())
            at_low = int(np.count_nonzero(good == low))
            if low < self.min:
                self.min, self.n_at_min = low, at_low
            elif low == self.min:
                self.n_at_min += at_low
            self.max = max(self.max, float(good.max()))
            if self.all_integer:
                self.all_integer = bool(np.array_equal(good, np.trunc(good)))  # trunc: far cheaper than mod
        if not n_bad:  # per-gene moments (only needed, and only meaningful, for finite data)
            if sp.issparse(block):
                sums = np.asarray(block.sum(axis=0), dtype=np.float64).ravel()
                squares = np.asarray(block.multiply(block).sum(axis=0), dtype=np.float64).ravel()
            else:
                dense = np.asarray(block)  # sums in double without a double copy of the block
                sums = dense.sum(axis=0, dtype=np.float64)
                squares = np.einsum("ij,ij->j", dense, dense, dtype=np.float64)
            if self.column_sum is None:
                self.column_sum, self.column_sumsq = sums, squares
            else:
                self.column_sum += sums
                self.column_sumsq += squares

    def merge(self, later: ValueSummary) -> None:
        """Fold in the summary of the rows that follow this one's: a pass made in pieces (e.g. on Dask workers)
        ends with what one pass over all the rows would have seen (per-gene sums up to rounding)."""
        if self.first_count_row < 0 and later.first_count_row >= 0:
            self.first_count_row = self.n_rows + later.first_count_row
        self.n_count_rows += later.n_count_rows
        self.n_values += later.n_values
        self.n_rows += later.n_rows
        self.n_nonfinite += later.n_nonfinite
        if later.min < self.min:
            self.min, self.n_at_min = later.min, later.n_at_min
        elif later.min == self.min:
            self.n_at_min += later.n_at_min
        self.max = max(self.max, later.max)
        self.all_integer = self.all_integer and later.all_integer
        if later.column_sum is not None:
            if self.column_sum is None:
                self.column_sum, self.column_sumsq = later.column_sum.copy(), later.column_sumsq.copy()
            else:
                self.column_sum += later.column_sum
                self.column_sumsq += later.column_sumsq

    def _count_rows(self, block) -> None:
        """Count the rows that look like raw counts (integers only, maximum >= 2): mixed data has some."""
        if sp.issparse(block):
            block = sp.csr_matrix(block)
            fractional = block.copy()
            fractional.data = (fractional.data != np.trunc(fractional.data)).astype(np.int8)
            n_fractional = np.asarray(fractional.sum(axis=1)).ravel()
            row_max = block.max(axis=1).toarray().ravel()
        else:
            dense = np.asarray(block)
            n_fractional = np.count_nonzero(dense != np.trunc(dense), axis=1)
            row_max = dense.max(axis=1)
        rows = np.flatnonzero((n_fractional == 0) & (row_max >= 2))
        if rows.size:
            if self.first_count_row < 0:
                self.first_count_row = self.n_rows + int(rows[0])
            self.n_count_rows += int(rows.size)

    def _centred(self) -> bool:
        """Per-gene means near zero relative to their spread: the signature of ``sc.pp.scale``d data."""
        if self.column_sum is None or self.n_rows < 2:
            return False
        means = self.column_sum / self.n_rows
        sds = np.sqrt(np.maximum(self.column_sumsq / self.n_rows - means**2, 0.0))
        spread = float(np.median(sds))
        return spread > 0 and float(np.median(np.abs(means))) < 0.05 * spread

    def check(self, *, expect: str, what: str, layer: str | None) -> None:
        """Raise :class:`DiceInputError` unless the values fit ``expect`` (``"log-normalised"``, ``"counts"``)."""
        source = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
        if self.n_nonfinite:
            raise DiceInputError(
                f"{what} contains {self.n_nonfinite} NaN or infinite values ({source}). Remove or impute them "
                "first, e.g. `adata = adata[:, np.isfinite(adata.X).all(axis=0)]` to drop affected genes."
            )
        if expect == "log-normalised":
            if self.min < 0 and self._centred():
                raise DiceInputError(
                    f"{what} is centred (gene means near 0, minimum {self.min:.3g} in {source}): it looks scaled "
                    "(e.g. by `sc.pp.scale`), not log-normalised. dice standardises genes itself with the "
                    "reference's statistics; pass the log-normalised values (keep them in a layer before scaling "
                    "and pass `layer=`, or use `adata.raw.to_adata()`)."
                )
            if self.min < 0 and self.n_at_min >= 0.05 * self.n_values:
                raise DiceInputError(
                    f"{what} looks shifted: {self.n_at_min / self.n_values:.0%} of its values equal its negative "
                    f"minimum {self.min:.3g} ({source}), where log-normalised data have zeros. Pass the "
                    "log-normalised values themselves (normalize_total + log1p, without an offset)."
                )
            if self.min < 0:
                # signed values that are neither centred nor shifted zeros: factor-model data such as the paper's
                # synthetic setups; standardisation makes them usable, so they are accepted
                logger.info(
                    "%s has negative values (minimum %.3g); treating them as factor-model values.", what, self.min
                )
            if self.all_integer and self.max > 0:
                raise DiceInputError(
                    f"{what} looks like raw counts (every value a non-negative integer, max {self.max:.0f}, in "
                    f"{source}), but log-normalised data is expected. Run `dice.pp.recipe_paper(adata)` (QC, "
                    "normalise to 1e4, log1p, highly variable genes), or `sc.pp.normalize_total(adata, "
                    "target_sum=1e4); sc.pp.log1p(adata)` (keep the counts in `adata.layers['counts']`)."
                )
            if not self.all_integer and self.n_count_rows >= max(1, 0.01 * self.n_rows):
                raise DiceInputError(
                    f"{what} mixes raw counts and log-normalised cells: {self.n_count_rows} of {self.n_rows} cells "
                    f"(the first is row {self.first_count_row}) hold only whole numbers in {source}, the "
                    "others do not. Normalise every cell the same way (e.g. log-normalise the "
                    "counts before concatenating the datasets)."
                )
        if expect == "counts" and (self.min < 0 or not self.all_integer):
            raise DiceInputError(
                f"{what} does not look like raw counts (negative or non-integer values in {source}). The "
                "paper's recipe starts from raw UMI counts; pass `layer=` if the counts are stored in a layer."
            )


def looks_like_counts(matrix) -> bool:
    """Non-negative integers (not all zero): raw counts, not log-normalised data. Reads every value."""
    from ._blocks import block_size_for, iter_row_blocks

    summary = ValueSummary()
    for block in iter_row_blocks(matrix, block_size=block_size_for(matrix.shape[1])):
        summary.update(block.values)
    return bool(
        summary.n_values and summary.n_nonfinite == 0 and summary.min >= 0 and summary.all_integer and summary.max > 0
    )


def check_adata(
    adata: AnnData,
    *,
    layer: str | None = None,
    expect: str | None = None,
    min_cells: int = 2,
    what: str = "adata",
) -> None:
    """Validate an AnnData before any work is done (so that nothing is modified on failure).

    The structure is always checked (type, size, layer, numeric dtype). With ``expect`` (``"log-normalised"``
    or ``"counts"``) every value is read, block by block, and checked too; functions that read the data
    anyway check the values during their own pass instead (:class:`ValueSummary`).
    """
    if not isinstance(adata, AnnData):
        raise DiceInputError(f"{what} must be an AnnData object, got {type(adata).__name__}.")
    if adata.n_obs < min_cells or adata.n_vars == 0:
        raise DiceInputError(
            f"{what} is empty or too small ({adata.n_obs} cells x {adata.n_vars} genes); "
            f"at least {min_cells} cells and 1 gene are needed."
        )
    matrix = get_matrix(adata, layer)
    dtype = getattr(matrix, "dtype", None)
    if dtype is None or not np.issubdtype(dtype, np.number):
        raise DiceInputError(f"{what} holds non-numeric values ({dtype}).")
    if expect is not None:
        from ._blocks import block_size_for, iter_row_blocks

        summary = ValueSummary()
        for block in iter_row_blocks(matrix, block_size=block_size_for(adata.n_vars)):
            summary.update(block.values)
        summary.check(expect=expect, what=what, layer=layer)


class DiceModelError(DiceInputError):
    """Raised when a saved model directory cannot be read back exactly; the message names the file and the fix."""


class DepthWarning(UserWarning):
    """A query far shallower than the reference the model was fitted on (its confidence and uncertainty are
    then extrapolated). Silence it with ``warnings.filterwarnings("ignore", category=dice.DepthWarning)``."""


class UnreliableLabelWarning(UserWarning):
    """Labels whose held-out reference cells, measured as the query is, mostly get another label
    (:func:`dice.tl.transfer_labels`; the per-label report is in ``uns[key]["held_out"]``)."""
