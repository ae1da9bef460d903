"""The compiled-kernel measurement (benchmarks/c_decode.py): the C decode and objective agree with numpy's."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
c_decode = pytest.importorskip("c_decode")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    directory = tmp_path_factory.mktemp("c_decode")
    try:
        library = c_decode.build(directory)
    except subprocess.CalledProcessError:
        pytest.skip("the kernel does not build here (glibc's libmvec 2.35 or later is needed)")
    return library, c_decode.load(c_decode.patched_newton(library, directory))


def test_the_patched_solver_decodes_as_numpy_does(built):
    import ctypes

    from dice.likelihood._newton import decoded_rates

    library, module = built
    lib = ctypes.CDLL(str(library))
    b = c_decode.block(n_cells=64, n_genes=200, k=7)
    expected = c_decode.rates_and_objective(decoded_rates, None, b)
    got = c_decode.rates_and_objective(module.decoded_rates, lib, b)
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-12)
    assert np.any(expected[1] == 0.0)  # the block reaches the cap, where the slope is 0 in both
    np.testing.assert_array_equal(got[1] == 0.0, expected[1] == 0.0)


def test_the_patch_fails_loudly_when_the_solver_changes_shape(tmp_path, monkeypatch):
    changed = tmp_path / "_newton.py"
    changed.write_text(c_decode.NEWTON.read_text().replace("    def objective(u, lam, data):", "    def value(u):"))
    monkeypatch.setattr(c_decode, "NEWTON", changed)
    with pytest.raises(RuntimeError, match="changed shape"):
        c_decode.patched_newton(tmp_path / "lib.so", tmp_path)
