"""``dice.pp.project``: a dataset's plain projection ``V^T x`` onto a model's loadings."""

from __future__ import annotations

from anndata import AnnData

from .._settings import PosteriorSettings
from .._validation import check_adata, get_matrix

__all__ = ["project"]


def project(
    adata: AnnData,
    model,
    *,
    layer: str | None = None,
    key_added: str = "dice",
    min_shared: float = 0.5,
    copy: bool = False,
) -> AnnData | None:
    """Project ``adata`` onto a model's reference loadings (no denoising); writes ``obsm[f"X_{key_added}_pca"]``.

    Genes are matched by name, standardised with the reference statistics (genes the data lack contribute
    nothing) and multiplied by V, block by block. This is the undenoised baseline that
    :func:`dice.tl.denoise` also writes.

    Parameters
    ----------
    adata
        Log-normalised cells. Not modified on error.
    model
        A :class:`dice.models.DicePrior`.
    layer
        Use ``adata.layers[layer]`` instead of ``X``.
    key_added
        Prefix of the written key (the same prefix as :func:`dice.tl.denoise`'s).
    min_shared
        Smallest fraction of the model's genes that ``adata`` must have.
    copy
        Return a new AnnData instead of writing into ``adata``.
    """
    from ..tl._latent import measure_cells

    check_adata(adata, layer=layer, what="adata")
    cells = measure_cells(
        model.embedding,
        get_matrix(adata, layer),
        adata.var_names,
        PosteriorSettings(min_shared=min_shared),
        layer=layer,
    )
    target = adata.copy() if copy else adata
    target.obsm[f"X_{key_added}_pca"] = cells.pca
    return target if copy else None
