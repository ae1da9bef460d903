"""The Newton solve's mode and Fisher information against a direct float64 computation (k = 5), with and
without ambient RNA."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dice.likelihood._counts import CountReference
from dice.likelihood._newton import decoded_rates, newton_modes
from helpers import toy_embedding

N_GENES, K = 60, 5


def _problem(seed=0, n_cells=40):
    rng = np.random.default_rng(seed)
    embedding = toy_embedding(rng, N_GENES, K)
    loadings = embedding.loadings
    ref = CountReference(rng.normal(0, 0.2, N_GENES), rng.uniform(0, 0.3, N_GENES), np.full(K, 4.0))
    u = rng.normal(0, 1.5, (n_cells, K))
    rate, _ = decoded_rates(u, embedding.mean, embedding.std, loadings, np.exp(ref.gene_scale), ref.floor, ref.min_rate)
    depth = rng.integers(50, 2000, n_cells)[:, None]
    counts = rng.poisson(depth * rate / rate.sum(axis=1, keepdims=True)).astype(float)
    return embedding, ref, counts


def _direct(embedding, ref, counts, u):
    """Gradient and Fisher information of the penalised multinomial-NB log-likelihood, in float64."""
    scale = np.exp(ref.gene_scale)
    rate, slope = decoded_rates(u, embedding.mean, embedding.std, embedding.loadings, scale, ref.floor, ref.min_rate)
    total = rate.sum(axis=1, keepdims=True)
    rho = ref.ambient_fraction
    n = counts.sum(axis=1, keepdims=True)
    own = (1.0 - rho) * n * rate / total  # the cell's own expected counts; the rest is ambient
    lam = own + (rho * n * ref.ambient if rho > 0 else 0.0)
    weight = 1.0 / (lam * (1.0 + np.maximum(ref.dispersion, 1e-6) * lam))
    grads, infos = [], []
    for c in range(counts.shape[0]):  # J = d lambda / du, one cell at a time: no shared algebra with the solver
        dlam = ((1.0 - rho) * n[c] / total[c]) * slope[c][:, None] * embedding.loadings
        jac = dlam - own[c][:, None] * (dlam.sum(axis=0) / ((1.0 - rho) * n[c]))[None, :]
        grads.append(jac.T @ (weight[c] * (counts[c] - lam[c])) - u[c] / ref.prior_var)
        infos.append(jac.T @ (weight[c][:, None] * jac))
    return np.array(grads), np.array(infos)


@pytest.mark.parametrize("ambient_fraction", [0.0, 0.2])
def test_information_and_mode_match_a_direct_computation(ambient_fraction):
    embedding, ref, counts = _problem()
    ambient = np.random.default_rng(1).dirichlet(np.ones(N_GENES))
    ref = dataclasses.replace(ref, ambient=ambient, ambient_fraction=ambient_fraction)
    present = np.ones(N_GENES, dtype=bool)
    # the information comes from the point before the last, unchecked step: with a tight tolerance that
    # step vanishes and the information is the direct one at the mode, up to single-precision sums
    u, info = newton_modes(counts, present, embedding, ref, 30, None, tol=1e-9)
    _, direct = _direct(embedding, ref, counts, u)
    scale = np.linalg.norm(direct, axis=(1, 2))
    assert np.max(np.linalg.norm(info - direct, axis=(1, 2)) / scale) < 1e-4
    np.testing.assert_allclose(info, np.swapaxes(info, 1, 2))  # the triangle filled in symmetrically
    # at the default tolerance it is within a small step of the mode: close, not exact
    u, info = newton_modes(counts, present, embedding, ref, 20, None)
    grad, direct = _direct(embedding, ref, counts, u)
    error = np.linalg.norm(info - direct, axis=(1, 2)) / np.linalg.norm(direct, axis=(1, 2))
    assert np.max(error) < 0.02
    assert np.median(error) < 2e-3
    # at the mode the Newton decrement (the gain still to come) is far below the stopping tolerance
    posterior = direct + np.diag(1.0 / ref.prior_var)[None]
    decrement = 0.5 * np.einsum("ci,ci->c", grad, np.linalg.solve(posterior, grad[..., None])[..., 0])
    assert np.max(decrement) < 1e-2
    assert np.median(decrement) < 1e-4


def test_cells_still_moving_after_the_last_iteration_get_the_information_where_they_stopped():
    """With one iteration from far away no cell converges: each gets the information at the point its line
    search reached, not one from before it."""
    embedding, ref, counts = _problem()
    present = np.ones(N_GENES, dtype=bool)
    start = np.zeros((counts.shape[0], K))
    u, info = newton_modes(counts, present, embedding, ref, 1, start)
    assert np.all(np.linalg.norm(u - start, axis=1) > 0.1)  # every cell moved
    grad, direct = _direct(embedding, ref, counts, u)
    error = np.linalg.norm(info - direct, axis=(1, 2)) / np.linalg.norm(direct, axis=(1, 2))
    assert np.max(error) < 1e-4
    # and they are not at the mode yet: the penalised gradient there is far from zero
    assert np.median(np.linalg.norm(grad, axis=1)) > 1e-2
