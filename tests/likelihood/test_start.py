"""The start map of the count solve: nearer the mode than the projection, fewer Newton steps, same modes."""

from __future__ import annotations

import numpy as np
import pytest

import dice.likelihood._newton as newton
from dice.likelihood._counts import CountReference, count_measurement, fit_count_reference, thin_counts
from dice.likelihood._start import fit_start_map, start_features, start_point
from helpers import toy_embedding

N_GENES, K = 80, 3


@pytest.fixture(scope="module")
def toy():
    """An embedding-like object with orthonormal loadings (:func:`helpers.toy_embedding`)."""
    return toy_embedding(np.random.default_rng(0), N_GENES, K)


@pytest.fixture(scope="module")
def cells(toy):
    """A reference of 300 negative-binomial cells around three states at 300-3,000 counts; its count model."""
    rng = np.random.default_rng(3)
    plain = CountReference(np.zeros(N_GENES), np.zeros(N_GENES), np.full(K, 4.0))
    centres = 1.5 * rng.normal(size=(3, K))
    states = centres[rng.integers(0, 3, 300)] + 0.3 * rng.normal(size=(300, K))
    rate, _ = newton.decoded_rates(states, toy.mean, toy.std, toy.loadings, 1.0, plain.floor, plain.min_rate)
    expected = rng.uniform(300, 3000, (300, 1)) * rate / rate.sum(axis=1, keepdims=True)
    counts = rng.poisson(expected * rng.gamma(20.0, 1 / 20.0, size=expected.shape)).astype(float)
    return counts, fit_count_reference(counts, toy, n_rounds=1)


def _projection(toy, counts):
    depth = counts.sum(axis=1, keepdims=True)
    return newton.log_projection(counts, depth, toy.mean, toy.std, toy.loadings, toy.max_value), depth


def test_fitted_map_shape_range_and_seed(toy, cells):
    counts, ref = cells
    assert ref.start.shape == (2 * K + 2, K)
    low, high = ref.start_log_depth
    depth = counts.sum(axis=1)
    assert low < np.log(0.05 * depth.min()) + 1.0 and high == pytest.approx(np.log(depth.max()))
    again, _ = fit_start_map(counts, toy, ref)
    np.testing.assert_array_equal(again, ref.start)  # seeded: the same map
    other, _ = fit_start_map(counts, toy, ref, seed=1)
    assert not np.array_equal(other, ref.start)


def test_without_a_map_the_start_is_the_projection(toy, cells):
    counts, ref = cells
    proj, depth = _projection(toy, counts)
    bare = CountReference(ref.gene_scale, ref.dispersion, ref.prior_var)
    assert start_point(proj, depth, bare) is proj
    # the depth enters clipped to the fitted range: a cell 100x deeper than any reference cell starts as
    # if it had the deepest reference depth
    high = ref.start_log_depth[1]
    deeper = start_features(proj[:5], np.full((5, 1), 100 * np.exp(high)), ref.start_log_depth)
    at_edge = start_features(proj[:5], np.full((5, 1), np.exp(high)), ref.start_log_depth)
    np.testing.assert_allclose(deeper, at_edge)


@pytest.mark.parametrize("fraction", [1.0, 0.2, 0.05])
def test_map_starts_nearer_and_converges_to_the_same_modes_in_fewer_steps(toy, cells, fraction, monkeypatch):
    """At every depth the map's start is nearer the mode than the projection (in posterior sd), the solve
    from it needs fewer informations, and both solves end at the same modes and noise."""
    counts, ref = cells
    query = counts[::3]
    if fraction < 1:
        query = thin_counts(query, fraction, np.random.default_rng(11)).toarray()
    query = query[query.sum(axis=1) > 0]
    bare = CountReference(ref.gene_scale, ref.dispersion, ref.prior_var)
    present = np.ones(N_GENES, dtype=bool)
    exact, info = newton.newton_modes(query, present, toy, ref, 100, None, tol=1e-12)
    lower = np.linalg.cholesky(info)

    def distance(u):  # in posterior standard deviations: |L^T (u - mode)|
        return np.linalg.norm(np.einsum("cji,cj->ci", lower, u - exact), axis=1)

    proj, depth = _projection(toy, query)
    assert np.median(distance(start_point(proj, depth, ref))) < 0.5 * np.median(distance(proj))
    sizes = []
    monkeypatch.setattr(newton, "cholesky", lambda m: sizes.append(m.shape[0]) or np.linalg.cholesky(m))
    results = []
    for reference in (bare, ref):
        sizes.clear()
        results.append((count_measurement(query, toy, reference, n_threads=1), sum(sizes)))
    (from_proj, proj_steps), (from_map, map_steps) = results
    assert map_steps < proj_steps
    np.testing.assert_allclose(from_map.scores, from_proj.scores, atol=0.05 * np.sqrt(from_proj.noise_var.max()))
    np.testing.assert_allclose(from_map.noise_var, from_proj.noise_var, rtol=0.02)
