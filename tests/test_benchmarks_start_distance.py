"""The start-distance measurement's pieces (benchmarks/start_distance.py): starts at a known Mahalanobis distance."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
start_distance = pytest.importorskip("start_distance")


def _problem(n=40, k=5, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, k, k))
    information = a @ np.swapaxes(a, 1, 2) + 0.1 * np.eye(k)
    return rng.normal(size=(n, k)), information, 0.5 + rng.random(k)


@pytest.mark.parametrize("delta", [0.0, 0.3, 2.0])
def test_offsets_lie_at_the_asked_distance_in_posterior_sd(delta):
    mode, information, prior_var = _problem()
    moved = start_distance.offset(mode, information, prior_var, delta, seed=1)
    np.testing.assert_allclose(start_distance.mahalanobis(moved, mode, information, prior_var), delta, atol=1e-10)


def test_offsets_are_seeded_and_point_in_different_directions():
    mode, information, prior_var = _problem()
    a = start_distance.offset(mode, information, prior_var, 1.0, seed=3)
    np.testing.assert_array_equal(a, start_distance.offset(mode, information, prior_var, 1.0, seed=3))
    b = start_distance.offset(mode, information, prior_var, 1.0, seed=4)
    assert not np.allclose(a, b)


def test_the_distance_weighs_directions_by_the_precision():
    mode, prior_var = np.zeros((1, 2)), np.array([1e12, 1e12])  # a flat prior: the information alone
    information = np.diag([4.0, 1.0])[None]
    along_sharp = start_distance.mahalanobis(np.array([[1.0, 0.0]]), mode, information, prior_var)
    along_flat = start_distance.mahalanobis(np.array([[0.0, 1.0]]), mode, information, prior_var)
    np.testing.assert_allclose([along_sharp[0], along_flat[0]], [2.0, 1.0], rtol=1e-9)


def test_accuracy_is_zero_for_the_tight_solve_and_sees_a_moved_mode():
    mode, information, prior_var = _problem()
    same = start_distance.accuracy(mode, information, mode, information, prior_var)
    assert same["mode_max"] == 0.0 and same["noise_max"] < 1e-9
    moved = start_distance.offset(mode, information, prior_var, 0.5, seed=2)
    found = start_distance.accuracy(moved, 2.0 * information, mode, information, prior_var)
    assert found["mode_p50"] == pytest.approx(0.5) and found["mode_max"] == pytest.approx(0.5)
    assert found["noise_max"] == pytest.approx(0.5)  # twice the information: half the noise variance
