"""Preprocessing: the paper's recipe, gene alignment, standardisation and loadings."""

from ._align import GeneAlignment, align_genes
from ._linear import LinearEmbedding, choose_n_comps
from ._project import fit_loadings, project
from ._recipe import recipe_paper

__all__ = [
    "GeneAlignment",
    "LinearEmbedding",
    "align_genes",
    "choose_n_comps",
    "fit_loadings",
    "project",
    "recipe_paper",
]
