"""Would compiled C make the count likelihood cheap enough? A vectorised C decode and objective against numpy's.

Issue 11 asks the count likelihood to cost at most 2x the gene-weighted ``denoise``. The count solve's
cells x genes arithmetic (``dice.likelihood._newton``) is numpy, one memory pass per operation;
``benchmarks/numba_decode.py`` showed that numba, without Intel's SVML, computes each exponential and
logarithm with a scalar call and is slower. C compiled with ``-ffast-math -fopenmp-simd`` gets its
``expf``, ``expm1f``, ``log1pf`` and ``logf`` vectorised through glibc's libmvec (2.35 or later) and fuses
the passes. This script measures that upper bound without changing the package:

1. one synthetic 512-cell block (500 genes, k = 25, single precision, one thread): the decode (rates and
   their slope) and the objective, numpy against C, after checking that both agree;
2. with ``--paired``: ``benchmarks/speed_paired.py`` with a third arm, ``newton_modes`` whose decode and
   objective call the C kernel (the rest of the solve unchanged), so the end-to-end ``denoise`` ratio
   is measured on the same model, in the same process, round by round.

It needs a C compiler (``cc``) and glibc's libmvec, and builds with ``-march=native``: a measurement on
this machine, not a portable build. Run::

    .venv/bin/python benchmarks/c_decode.py
    DICE_DATA_DIR=../shared/data .venv/bin/python benchmarks/c_decode.py --paired --threads 2 --rounds 8
"""

from __future__ import annotations

import argparse
import ctypes
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from speed_paired import load_module

HERE = Path(__file__).resolve().parent
NEWTON = HERE.parent / "src" / "dice" / "likelihood" / "_newton.py"

KERNEL = r"""
#include <math.h>
/* decoded_rates' element-wise part (x = u V^T given, overwritten by the rates) and the NB objective */
void decode(float *x, const float *mean, const float *std, const float *scale, float floor_,
            float min_rate, float cap, float *slope, long n, long G) {
    for (long c = 0; c < n; c++) {
        float *xc = x + c * G, *sc = slope + c * G;
        #pragma omp simd
        for (long g = 0; g < G; g++) {
            float raw = mean[g] + std[g] * xc[g];
            float value = fminf(raw, cap);
            float size = fabsf(value);
            float tail = expf(-size / floor_);
            float grow = expm1f(0.5f * (value + size) + floor_ * log1pf(tail));
            float sig = (value > 0 ? 1.f : tail) / (1.f + tail);
            sc[g] = raw > cap ? 0.f : (grow + 1.f) * scale[g] * std[g] * sig;
            xc[g] = (grow + min_rate) * scale[g];
        }
    }
}
void objective(const float *lam, const float *counts, const float *shifted, const float *alpha,
               double *out, long n, long G) {
    for (long c = 0; c < n; c++) {
        const float *l = lam + c * G, *cc = counts + c * G, *sh = shifted + c * G;
        float acc = 0.f;
        #pragma omp simd reduction(+:acc)
        for (long g = 0; g < G; g++) acc += cc[g] * logf(l[g]) - sh[g] * log1pf(alpha[g] * l[g]);
        out[c] = acc;
    }
}
"""

# the two functions the patched solver uses in place of numpy's (library path filled in)
PATCH_DECODE = '''def decoded_rates(u, mean, std, loadings, scale, floor, min_rate):
    """C kernel (benchmarks/c_decode.py): the same rates and slope as the numpy version."""
    x = np.ascontiguousarray(u.astype(loadings.dtype) @ loadings.T)
    slope = np.empty_like(x)
    _LIB.decode(*_ptrs(x, mean, std, scale), ctypes.c_float(floor), ctypes.c_float(min_rate),
                ctypes.c_float(MAX_LOG1P), *_ptrs(slope), ctypes.c_long(x.shape[0]), ctypes.c_long(x.shape[1]))
    return x, slope


'''
PATCH_OBJECTIVE = """    def objective(u, lam, data):
        arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in (lam, data[0], data[1], alpha)]
        out = np.empty(len(arrays[0]))
        _LIB.objective(*_ptrs(*arrays, out), ctypes.c_long(out.size), ctypes.c_long(arrays[0].shape[1]))
        return out - 0.5 * np.sum(u * u * prec, axis=1)

"""
PATCH_HEAD = """from dice.likelihood._start import start_point
import ctypes
_LIB = ctypes.CDLL({library!r})


def _ptrs(*arrays):
    return [ctypes.c_void_p(a.ctypes.data) for a in arrays]
"""


def build(directory: Path) -> Path:
    """Compile the kernel into ``directory``; returns the shared library's path."""
    source, library = directory / "kernel.c", directory / "libkernel.so"
    source.write_text(KERNEL)
    flags = ["-O3", "-ffast-math", "-fopenmp-simd", "-march=native", "-shared", "-fPIC"]
    subprocess.run(["cc", *flags, str(source), "-o", str(library), "-lmvec", "-lm"], check=True)
    return library


def patched_newton(library: Path, directory: Path) -> Path:
    """A copy of ``dice.likelihood._newton`` whose decode and objective call the kernel; returns its path."""
    source = NEWTON.read_text()
    head = "from ._start import start_point\n"
    anchors = ("def decoded_rates(", "def log_projection(", "    def objective(u, lam, data):", "    def score(")
    places = [source.find(anchor) for anchor in anchors]
    if head not in source or min(places) < 0 or places != sorted(places):
        raise RuntimeError("dice.likelihood._newton changed shape: update benchmarks/c_decode.py's patch")
    decode_at, decode_end, objective_at, objective_end = places
    source = (
        source[:decode_at] + PATCH_DECODE + source[decode_end:objective_at] + PATCH_OBJECTIVE + source[objective_end:]
    )
    path = directory / "newton_c.py"
    path.write_text(source.replace(head, PATCH_HEAD.format(library=str(library))))
    return path


def load(path: Path):
    """The patched solver as a module (loaded as ``speed_paired.py --before`` loads one)."""
    return load_module(path, "newton_c")


def block(seed: int = 0, n_cells: int = 512, n_genes: int = 500, k: int = 25) -> dict:
    """A synthetic block: the decoder's parameters, latent states (a few past the cap) and Poisson counts."""
    import numpy as np

    rng = np.random.default_rng(seed)
    f32 = np.float32
    u = 2.0 * rng.normal(size=(n_cells, k))
    u[:4] *= 40.0  # some rates past the cap, whose slope is 0
    return {
        "u": u,
        "mean": (0.5 * rng.normal(size=n_genes)).astype(f32),
        "std": (0.5 + rng.random(n_genes)).astype(f32),
        "loadings": (rng.normal(size=(n_genes, k)) / np.sqrt(n_genes)).astype(f32),
        "scale": np.exp(rng.normal(size=n_genes) - 6).astype(f32),
        "alpha": (0.1 + rng.random(n_genes)).astype(f32),
        "counts": rng.poisson(1.0, size=(n_cells, n_genes)).astype(f32),
        "floor": 0.3,
        "min_rate": 1e-3,
    }


def rates_and_objective(decoded_rates, objective_lib, b: dict):
    """Rates, slope and the NB objective of block ``b``: numpy's when ``objective_lib`` is None."""
    import numpy as np

    rate, slope = decoded_rates(b["u"], b["mean"], b["std"], b["loadings"], b["scale"], b["floor"], b["min_rate"])
    lam = rate * (b["counts"].sum(axis=1, keepdims=True) / rate.sum(axis=1, keepdims=True))
    shifted = b["counts"] + 1.0 / b["alpha"]
    if objective_lib is None:
        value = b["counts"] * np.log(lam) - shifted * np.log1p(b["alpha"] * lam)
        return rate, slope, np.einsum("cg->c", value, dtype=np.float64)
    out = np.empty(len(lam))
    arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in (lam, b["counts"], shifted, b["alpha"])]
    pointers = [ctypes.c_void_p(a.ctypes.data) for a in (*arrays, out)]
    objective_lib.objective(*pointers, ctypes.c_long(len(out)), ctypes.c_long(lam.shape[1]))
    return rate, slope, out


def micro(module, library: Path) -> None:
    import numpy as np

    from dice.likelihood._newton import decoded_rates

    lib = ctypes.CDLL(str(library))
    b = block()
    arms = {"numpy": (decoded_rates, None), "C": (module.decoded_rates, lib)}
    expected, got = (rates_and_objective(*arms[name], b) for name in ("numpy", "C"))
    for what, e, g in zip(("rates", "slopes", "objective"), expected, got, strict=True):
        print(f"{what}: largest relative difference {np.max(np.abs(g - e) / np.maximum(np.abs(e), 1e-30)):.1e}")
    for name, arm in arms.items():
        rounds = []
        for _ in range(7):
            started = time.perf_counter()
            for _ in range(20):
                rates_and_objective(*arm, b)
            rounds.append((time.perf_counter() - started) / 20 * 1e3)
        print(f"{name}: {np.median(rounds):.2f} ms per block (min {min(rounds):.2f}, max {max(rounds):.2f}, 7 rounds)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paired", action="store_true", help="also the end-to-end denoise ratio (speed_paired.py)")
    parser.add_argument("--threads", type=int, default=2, help="threads of the paired run")
    parser.add_argument("--rounds", type=int, default=8, help="rounds of the paired run")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        library = build(Path(tmp))
        module_path = patched_newton(library, Path(tmp))
        if args.paired:
            command = [sys.executable, str(HERE / "speed_paired.py"), "--threads", str(args.threads)]
            command += ["--rounds", str(args.rounds), "--before", str(module_path)]
            print("the arm 'counts_before' is the C kernel's:", flush=True)
            subprocess.run(command, check=True)
            return
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
            os.environ[var] = "1"
        micro(load(module_path), library)


if __name__ == "__main__":
    main()
