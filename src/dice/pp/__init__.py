"""Preprocessing: the paper's recipe for raw counts, and the projection onto a model's loadings."""

from ._project import project
from ._recipe import recipe_paper

__all__ = ["project", "recipe_paper"]
