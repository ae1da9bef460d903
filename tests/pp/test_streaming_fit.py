"""The streaming fit is exact PCA of the standardised, capped reference, whatever the container or block size."""

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from dice.pp._linear import LinearEmbedding


def _sparse_counts_like(n_cells=700, n_genes=60, seed=0, depth=1.0):
    """log1p counts; ``depth=0.03`` gives ~6 % non-zeros (the sparse Gram path), 1.0 the dense path."""
    rng = np.random.default_rng(seed)
    programs = depth * rng.gamma(1.0, 1.0, size=(3, n_genes))
    weights = rng.dirichlet(np.ones(3), size=n_cells)
    rates = weights @ programs * rng.gamma(2.0, 1.0, size=(n_cells, 1))
    counts = rng.poisson(rates)
    counts[:5, 0] = 400  # outliers that the cap at 10 sd clips
    return sp.csr_matrix(np.log1p(counts).astype(np.float32))


def _exact(dense, max_value, k):
    mean = dense.mean(axis=0)
    std = dense.std(axis=0, ddof=1)
    std = np.where(std > 1e-8, std, 1.0)
    x = (dense.astype(np.float32) - mean.astype(np.float32)) / std.astype(np.float32)
    x = np.minimum(x, max_value).astype(np.float64)
    _, values, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    return x, values[:k], vt[:k].T


def _fits(matrix, tmp_path):
    genes = [f"g{i}" for i in range(matrix.shape[1])]
    path = tmp_path / "backed.h5ad"
    ad.AnnData(sp.csr_matrix(matrix)).write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    out = {
        "dense": LinearEmbedding.fit(matrix.toarray(), genes, n_comps=5),
        "csr": LinearEmbedding.fit(matrix, genes, n_comps=5),
        "csr_small_blocks": LinearEmbedding.fit(matrix, genes, n_comps=5, block_size=64),
        "csc": LinearEmbedding.fit(sp.csc_matrix(matrix), genes, n_comps=5, block_size=100),
        "backed": LinearEmbedding.fit(backed.X, genes, n_comps=5, block_size=128),
    }
    backed.file.close()
    return out


@pytest.mark.parametrize("depth", [0.03, 1.0])
def test_streaming_fit_is_exact_pca_for_every_container(tmp_path, depth):
    matrix = _sparse_counts_like(depth=depth)
    assert (matrix.nnz / np.prod(matrix.shape) < 0.1) == (depth < 1)
    x, values, vectors = _exact(matrix.toarray(), 10.0, 5)
    for name, emb in _fits(matrix, tmp_path).items():
        cosines = np.abs(np.sum(emb.loadings * vectors, axis=0))
        assert cosines.min() > 1 - 1e-5, name
        np.testing.assert_allclose(emb.singular_values[:5], values, rtol=1e-6, err_msg=name)
        # the overall residual variance, straight from its definition
        scores = x @ emb.loadings.astype(np.float64)
        direct = np.mean(((x**2).sum(1) - (scores**2).sum(1)) / (x.shape[1] - 5))
        assert emb.noise_var == pytest.approx(direct, rel=1e-5), name


@pytest.mark.parametrize("depth", [0.03, 1.0])
def test_streaming_fit_agrees_across_containers_and_block_sizes(tmp_path, depth):
    fits = _fits(_sparse_counts_like(seed=3, depth=depth), tmp_path)
    first = fits["dense"]
    for name, emb in fits.items():
        np.testing.assert_allclose(emb.loadings, first.loadings, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(emb.gene_noise_var, first.gene_noise_var, rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(emb.std, first.std, rtol=1e-6, err_msg=name)


def test_gene_residual_variance_matches_its_definition():
    matrix = _sparse_counts_like(seed=5)
    emb = LinearEmbedding.fit(matrix, [f"g{i}" for i in range(matrix.shape[1])], n_comps=4)
    x, _, _ = _exact(matrix.toarray(), 10.0, 4)
    v = emb.loadings.astype(np.float64)
    residual = x - x @ v @ v.T
    leverage = np.clip((v**2).sum(1), 0, 0.9)
    psi = (residual**2).mean(0) / (1 - leverage)
    psi = np.maximum(psi, 0.1 * np.median(psi))
    weighted = v / psi[:, None]
    projector = weighted @ np.linalg.inv(v.T @ weighted)
    r = x - (x @ projector) @ v.T
    scale = np.mean((r**2 / psi).sum(1) / (x.shape[1] - 4))
    np.testing.assert_allclose(emb.gene_noise_var, psi * scale, rtol=1e-4)
