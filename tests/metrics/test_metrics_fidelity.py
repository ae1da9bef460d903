from __future__ import annotations

import numpy as np
import pytest

from dice.metrics import latent_error


def test_latent_error_hand_computation():
    u = np.array([[1.0, 2.0], [3.0, 4.0]])
    z = np.array([[0.0, 0.0], [3.0, 6.0]])
    # squared distances per cell: 1 + 4 = 5 and 0 + 4 = 4 -> mean 4.5; per dimension 4.5 / 2
    assert latent_error(u, z) == pytest.approx(4.5)
    assert latent_error(u, z, per_dimension=True) == pytest.approx(2.25)
    assert latent_error(z, z) == 0.0


def test_orthogonal_alignment_removes_a_rotation():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    u = z @ q
    assert latent_error(u, z) > 0.1
    assert latent_error(u, z, align="orthogonal") == pytest.approx(0.0, abs=1e-20)


def test_latent_error_shape_checks():
    with pytest.raises(ValueError, match="dimensions"):
        latent_error(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="entries"):
        latent_error(np.zeros((4, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="align"):
        latent_error(np.zeros((4, 2)), np.zeros((4, 2)), align="affine")
