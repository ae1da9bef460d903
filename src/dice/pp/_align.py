"""Align a dataset's genes to a model's gene list."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._validation import DiceInputError

__all__ = ["GeneAlignment", "align_genes"]

logger = logging.getLogger("dice")


class GeneAlignment:
    """Where each model gene sits in a dataset (``-1`` when the dataset lacks it).

    ``present`` masks the model genes the dataset has; :meth:`take` returns a block's columns for those genes,
    in model order. Missing genes are not imputed: the likelihood uses only the genes present
    (:mod:`dice.likelihood`).
    """

    def __init__(self, reference_genes: pd.Index, query_genes: pd.Index):
        self.reference_genes = pd.Index(reference_genes)
        self.positions = np.asarray(pd.Index(query_genes).get_indexer(self.reference_genes))
        self.present = self.positions >= 0
        self._columns = self.positions[self.present]
        self._identity = bool(self.present.all() and np.array_equal(self._columns, np.arange(len(query_genes))))

    @property
    def n_shared(self) -> int:
        return int(self.present.sum())

    @property
    def fraction_shared(self) -> float:
        return self.n_shared / max(len(self.reference_genes), 1)

    def take(self, block, *, dense: bool = True):
        """The block's values for the model genes present, in model order (float32; CSR if ``dense=False``)."""
        columns = block if self._identity else block[:, self._columns]
        if sp.issparse(columns):
            return columns.toarray().astype(np.float32, copy=False) if dense else sp.csr_matrix(columns)
        return np.asarray(columns, dtype=np.float32)

    def take_all(self, block) -> sp.csr_matrix:
        """The block as CSR over every model gene, in model order; the genes the dataset lacks are zero."""
        if self._identity:
            return sp.csr_matrix(block, dtype=np.float64)
        present = np.flatnonzero(self.present)
        expand = sp.csr_matrix(
            (np.ones(present.size), (np.arange(present.size), present)), shape=(present.size, self.present.size)
        )
        return sp.csr_matrix(self.take(block, dense=False) @ expand, dtype=np.float64)


def align_genes(
    var_names,
    reference_genes,
    *,
    min_shared: float = 0.5,
    min_shared_genes: int = 10,
    what: str = "adata",
) -> GeneAlignment:
    """Match a dataset's gene names to the model's genes (reorder and intersect).

    Refuses duplicated names and too small an overlap, with a message that says how to fix it.

    Parameters
    ----------
    var_names
        The dataset's gene names (``adata.var_names``).
    reference_genes
        Gene names the model was fitted on, in order.
    min_shared
        Smallest acceptable fraction of model genes present in the dataset.
    min_shared_genes
        Smallest acceptable absolute number of shared genes.
    what
        Name used in messages.
    """
    var_names = pd.Index(var_names)
    if not var_names.is_unique:
        duplicated = list(var_names[var_names.duplicated()][:3])
        raise DiceInputError(
            f"{what} has duplicated gene names (e.g. {duplicated}); call `adata.var_names_make_unique()` first."
        )
    alignment = GeneAlignment(pd.Index(reference_genes), var_names)
    n_ref = len(alignment.reference_genes)
    message = f"{what}: {alignment.n_shared} of {n_ref} model genes found ({alignment.fraction_shared:.0%})."
    if alignment.n_shared < max(min_shared_genes, int(np.ceil(min_shared * n_ref))):
        example = list(alignment.reference_genes[:3])
        raise DiceInputError(
            f"{message} Too few genes overlap with the model (need at least {min_shared:.0%} and "
            f"{min_shared_genes} genes). Check that both use the same gene identifiers (symbols vs Ensembl "
            f"ids; model genes look like {example}) and the same species, or lower `min_shared`."
        )
    if alignment.n_shared < n_ref:
        logger.warning("%s The likelihood uses the %d genes present.", message, alignment.n_shared)
    else:
        logger.info(message)
    return alignment
