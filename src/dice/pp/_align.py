"""Align a dataset's genes to a reference gene list."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._validation import DiceInputError

__all__ = ["GeneAlignment", "align_genes"]

logger = logging.getLogger("dice")


class GeneAlignment:
    """Where each reference gene sits in a query (``-1`` when the query lacks it)."""

    def __init__(self, reference_genes: pd.Index, query_genes: pd.Index):
        self.reference_genes = pd.Index(reference_genes)
        self.positions = np.asarray(pd.Index(query_genes).get_indexer(self.reference_genes))
        self.present = self.positions >= 0

    @property
    def n_shared(self) -> int:
        return int(self.present.sum())

    @property
    def fraction_shared(self) -> float:
        return self.n_shared / max(len(self.reference_genes), 1)

    def dense(self, matrix, fill_value: np.ndarray) -> np.ndarray:
        """Query matrix in reference gene order; absent genes take ``fill_value[gene]``."""
        n_cells = matrix.shape[0]
        out = np.empty((n_cells, len(self.reference_genes)), dtype=np.float32)
        out[:] = np.asarray(fill_value, dtype=np.float32)[None, :]
        columns = matrix[:, self.positions[self.present]]
        if sp.issparse(columns):
            columns = columns.toarray()
        out[:, self.present] = np.asarray(columns, dtype=np.float32)
        return out


def align_genes(
    adata: AnnData,
    reference_genes,
    *,
    min_shared: float = 0.5,
    min_shared_genes: int = 10,
    what: str = "query",
) -> GeneAlignment:
    """Match ``adata.var_names`` to the reference genes (reorder and intersect).

    Genes the query lacks are later filled with the reference mean, i.e. zero after standardisation,
    which adds no evidence for any latent direction. Refuses when too few genes overlap.

    Parameters
    ----------
    adata
        Query AnnData.
    reference_genes
        Gene names the reference model was fitted on, in order.
    min_shared
        Smallest acceptable fraction of reference genes present in the query.
    min_shared_genes
        Smallest acceptable absolute number of shared genes.
    what
        Name used in messages.
    """
    if not adata.var_names.is_unique:
        raise DiceInputError(
            f"{what} has duplicated gene names; call `adata.var_names_make_unique()` first."
        )
    alignment = GeneAlignment(pd.Index(reference_genes), adata.var_names)
    n_ref = len(alignment.reference_genes)
    message = f"{what}: {alignment.n_shared} of {n_ref} reference genes found ({alignment.fraction_shared:.0%})."
    if alignment.n_shared < max(min_shared_genes, int(np.ceil(min_shared * n_ref))):
        example = list(alignment.reference_genes[:3])
        raise DiceInputError(
            f"{message} Too few genes overlap with the reference (need at least {min_shared:.0%} and "
            f"{min_shared_genes} genes). Check that both use the same gene identifiers (symbols vs Ensembl "
            f"ids; reference genes look like {example}) and the same species, or lower `min_shared`."
        )
    if alignment.n_shared < n_ref:
        logger.warning("%s Missing genes are set to the reference mean.", message)
    else:
        logger.info(message)
    return alignment

