"""Row blocks: the one way dice reads expression data.

Every computation that touches cells x genes values (validation, fitting, projection, measurement) reads
them here, ``block_size`` cells at a time, so no cells x genes array is held beyond one block. Dense numpy,
scipy sparse (CSR, CSC, COO), backed AnnData (``read_h5ad(backed="r")``: h5py datasets and anndata's
sparse datasets) and dask arrays are read alike; each block comes back as a numpy array or a CSR matrix.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = ["DEFAULT_BLOCK_BYTES", "LogNormalized", "RowBlock", "block_size_for", "iter_row_blocks", "n_rows"]

#: Target size of one dense float32 block (cells x genes); 64 MB keeps the peak memory small and BLAS busy.
DEFAULT_BLOCK_BYTES = 64 * 2**20
#: Blocks hold a multiple of this many cells, so that results never depend on the block size chosen.
BLOCK_GRANULE = 1024


@dataclass
class RowBlock:
    """Rows ``start:stop`` of the selected cells (positions in the selection) and their values."""

    start: int
    stop: int
    values: np.ndarray | sp.csr_matrix

    @property
    def n_cells(self) -> int:
        return self.stop - self.start


def n_rows(matrix) -> int:
    return int(matrix.shape[0])


def block_size_for(n_genes: int, block_bytes: int = DEFAULT_BLOCK_BYTES) -> int:
    """Cells per block so that one dense float32 block is about ``block_bytes`` (a multiple of 1024)."""
    cells = max(block_bytes // max(4 * int(n_genes), 1), BLOCK_GRANULE)
    return int(cells // BLOCK_GRANULE * BLOCK_GRANULE)


def _is_dask(matrix) -> bool:
    return type(matrix).__module__.startswith("dask")


class LogNormalized:
    """A lazy view of raw counts as ``log1p(target_sum * c / sum(c))`` per cell, transformed block by block.

    Lets raw-count ``X`` be read as log-normalised data (scanpy's ``normalize_total`` + ``log1p``) without
    ever holding the transformed matrix.
    """

    def __init__(self, counts, target_sum: float = 1e4):
        self.counts, self.target_sum = counts, float(target_sum)
        self.shape = tuple(counts.shape)
        self.dtype = np.dtype(np.float32)

    def transform(self, block):
        depth = np.asarray(block.sum(axis=1), dtype=np.float64).ravel()
        scale = self.target_sum / np.maximum(depth, 1e-12)
        if sp.issparse(block):
            out = sp.csr_matrix(sp.diags(scale) @ block, dtype=np.float32)
            out.data = np.log1p(out.data)
            return out
        return np.log1p(np.asarray(block, dtype=np.float64) * scale[:, None]).astype(np.float32)


def _read(matrix, rows) -> np.ndarray | sp.csr_matrix:
    """Rows of ``matrix`` (a slice or a sorted integer array) as numpy or CSR, whatever the container."""
    if isinstance(matrix, LogNormalized):
        return matrix.transform(_read(matrix.counts, rows))
    if _is_dask(matrix):
        part = matrix[rows].compute()
    elif isinstance(matrix, np.ndarray):
        part = matrix[rows]
    elif sp.issparse(matrix):
        part = (matrix if matrix.format in ("csr", "csc") else matrix.tocsr())[rows]
    else:  # h5py.Dataset, anndata's backed sparse datasets, array-likes
        part = matrix[rows]
    if sp.issparse(part):
        return sp.csr_matrix(part)
    return np.asarray(part)


def iter_row_blocks(matrix, *, block_size: int, rows: np.ndarray | None = None) -> Iterator[RowBlock]:
    """Yield consecutive row blocks of ``matrix`` (optionally only the sorted positions ``rows``).

    Parameters
    ----------
    matrix
        Cells x genes: numpy, scipy sparse, an h5py / backed-sparse dataset, or a dask array.
    block_size
        Cells per block.
    rows
        Sorted, unique integer positions of the cells to read (a subset of the rows); ``None`` for all.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be positive, got {block_size}")
    if isinstance(matrix, sp.spmatrix | sp.sparray) and matrix.format not in ("csr", "csc"):
        matrix = matrix.tocsr()
    total = n_rows(matrix) if rows is None else len(rows)
    for start in range(0, total, block_size):
        stop = min(start + block_size, total)
        selection = slice(start, stop) if rows is None else np.asarray(rows[start:stop])
        yield RowBlock(start, stop, _read(matrix, selection))
