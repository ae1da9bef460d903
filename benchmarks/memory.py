"""Peak RSS and cost per cell of the row-block pipeline on a backed, sparse atlas.

A synthetic log-normalised atlas (cells x 2,000 genes, a few cell types from a low-rank model, ``log1p`` of
Poisson counts, float32 CSR, ~7 % non-zeros) is written to an ``.h5ad`` chunk by chunk: each chunk of
``GEN_CHUNK`` cells is drawn (one dense chunk of rates at a time, never the whole matrix), converted to CSR and
appended to the on-disk ``X`` with ``anndata.io.sparse_dataset(...).append``. The full matrix is never held.

Each measurement then runs in a FRESH subprocess (so ``ru_maxrss`` is its own peak), opens the file with
``ad.read_h5ad(path, backed="r")`` and runs one step:

* ``fit``: ``dice.tl.train_prior`` with ``TrainSettings(n_updates=N_UPDATES)`` (few updates: the network's
  training cost does not depend on the number of cells; the streamed Gram fit and projection do);
* ``denoise``: ``dice.tl.denoise`` of the same file with the saved model and ``DENOISE_SETTINGS``.

Usage::

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
        .venv/bin/python benchmarks/memory.py --sizes 100000 300000 500000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

N_GENES = 2000
N_TYPES = 6
RANK = 8
GEN_CHUNK = 10_000
N_UPDATES = 200
DENOISE_SETTINGS = {"n_samples": 1, "prior_step": "tweedie"}
ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "memory.md"
DATA_DIR = Path("/tmp/dice_memory")


def _chunk(rng: np.random.Generator, n: int, params: dict) -> tuple[sp.csr_matrix, np.ndarray]:
    """``n`` cells: log1p of Poisson counts under a low-rank log-rate, as float32 CSR (and their types)."""
    types = rng.integers(0, N_TYPES, size=n)
    z = params["centres"][types] + 0.5 * rng.standard_normal((n, RANK)).astype(np.float32)
    lib = np.exp(0.3 * rng.standard_normal((n, 1))).astype(np.float32)
    rate = lib * np.exp(params["base"] + z @ params["loadings"])  # one dense chunk (n x genes), not the matrix
    counts = rng.poisson(rate).astype(np.float32)
    del rate
    x = sp.csr_matrix(counts)
    del counts
    x.data = np.log1p(x.data).astype(np.float32)
    return x, types


def generate(path: Path, n_cells: int, seed: int = 0) -> dict:
    import anndata as ad
    import h5py
    import pandas as pd
    from anndata.io import sparse_dataset, write_elem

    rng = np.random.default_rng(seed)
    params = {
        "base": rng.normal(np.log(0.03), 0.8, size=N_GENES).astype(np.float32),
        "loadings": (0.35 * rng.standard_normal((RANK, N_GENES))).astype(np.float32),
        "centres": (1.5 * rng.standard_normal((N_TYPES, RANK))).astype(np.float32),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    nnz = 0
    all_types = []
    with h5py.File(path, "w") as f:
        f.attrs["encoding-type"] = "anndata"
        f.attrs["encoding-version"] = "0.1.0"
        done = 0
        while done < n_cells:
            n = min(GEN_CHUNK, n_cells - done)
            x, types = _chunk(rng, n, params)
            nnz += x.nnz
            all_types.append(types)
            if done == 0:
                write_elem(f, "X", x)
                store = sparse_dataset(f["X"])
            else:
                store.append(x)
            done += n
        types = np.concatenate(all_types)
        obs = pd.DataFrame(
            {"cell_type": pd.Categorical([f"t{t}" for t in types])}, index=[f"c{i}" for i in range(n_cells)]
        )
        var = pd.DataFrame(index=[f"g{j}" for j in range(N_GENES)])
        write_elem(f, "obs", obs)
        write_elem(f, "var", var)
        for key in ("obsm", "varm", "obsp", "varp", "layers", "uns"):
            write_elem(f, key, {})
    check = ad.read_h5ad(path, backed="r")
    assert check.shape == (n_cells, N_GENES), check.shape
    check.file.close()
    # in-memory CSR: float32 data + int32 indices + int64 indptr (what anndata loads)
    csr_mb = (nnz * 4 + nnz * 4 + (n_cells + 1) * 8) / 2**20
    return {
        "n_cells": n_cells,
        "nnz": nnz,
        "density": nnz / (n_cells * N_GENES),
        "file_mb": path.stat().st_size / 2**20,
        "csr_mb": csr_mb,
        "gen_s": time.perf_counter() - t0,
    }


def _hwm_mb() -> float:
    """This process's own peak RSS (``VmHWM``, reset at ``execve``) in MB; ``ru_maxrss`` is not, see below."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _measure(step: str, path: str, model_dir: str) -> None:
    """Runs inside a fresh subprocess; prints one JSON line with wall time and this process's peak RSS."""
    import resource

    import anndata as ad
    import torch

    torch.set_num_threads(1)
    import dice

    rss0 = _hwm_mb()
    adata = ad.read_h5ad(path, backed="r")
    t0 = time.perf_counter()
    if step == "fit":
        model = dice.tl.train_prior(
            adata, settings=dice.tl.TrainSettings(n_updates=N_UPDATES), seed=0, device="cpu", progress=False
        )
        wall = time.perf_counter() - t0
        model.save(model_dir, overwrite=True)
        extra = {"n_comps": int(getattr(model.embedding, "n_comps", -1))}
    else:
        model = dice.models.DicePrior.load(model_dir, device="cpu")
        t0 = time.perf_counter()
        dice.tl.denoise(
            adata, model, settings=dice.tl.PosteriorSettings(**DENOISE_SETTINGS), seed=0, device="cpu", progress=False
        )
        wall = time.perf_counter() - t0
        extra = {"mean_shape": list(adata.obsm["X_dice"].shape)}
    # Linux keeps ru_maxrss across fork + execve, so it is at least the parent's RSS when it spawned us;
    # VmHWM belongs to the new address space only. Both are recorded; the table uses VmHWM.
    ru_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB -> MB
    print(
        json.dumps(
            {
                "step": step,
                "n_cells": adata.n_obs,
                "wall_s": wall,
                "peak_rss_mb": _hwm_mb(),
                "ru_maxrss_mb": ru_maxrss,
                "rss_after_import_mb": rss0,
                **extra,
            }
        )
    )


def run_step(step: str, path: Path, model_dir: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, __file__, "--_measure", step, str(path), str(model_dir)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        sys.stderr.write(out.stderr[-4000:])
        raise RuntimeError(f"{step} on {path} failed (rc {out.returncode})")
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    rec["cells_per_s"] = rec["n_cells"] / rec["wall_s"]
    return rec


def write_table(records: list[dict], data: dict, command: str) -> str:
    lines = [
        "# Memory: peak RSS and cost per cell of the row-block pipeline",
        "",
        f"Synthetic log-normalised atlas, {N_GENES:,} genes, {N_TYPES} cell types from a rank-{RANK} model, "
        "`log1p` of Poisson counts, float32 CSR, written chunk by chunk "
        f"({GEN_CHUNK:,} cells per chunk, `anndata.io.sparse_dataset(...).append`; the dense matrix is never "
        'held) to `/tmp/dice_memory/*.h5ad` and opened with `ad.read_h5ad(path, backed="r")`.',
        f"Each step runs in a fresh subprocess (peak RSS = its own `VmHWM`), 1 CPU thread. `fit` = "
        f"`dice.tl.train_prior(adata, settings=TrainSettings(n_updates={N_UPDATES}))` (few updates: network "
        "training cost does not depend on the number of cells); `denoise` = `dice.tl.denoise(adata, model, "
        f"settings=PosteriorSettings({', '.join(f'{k}={v!r}' for k, v in DENOISE_SETTINGS.items())}))` "
        "(not the default sampler: its memory is O(chunk), its time is issue 12's subject). "
        "Wall time excludes interpreter start, imports and opening the file; peak RSS includes them.",
        "",
        "| cells | nnz | density | file on disk (MB) | CSR in memory (MB) | step | wall (s) | cells/s | "
        "µs/cell | RSS after imports (MB) | peak RSS (MB) | ru_maxrss (MB) |",
        "|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        d = data[r["n_cells"]]
        lines.append(
            f"| {r['n_cells']:,} | {d['nnz']:,} | {d['density']:.3f} | {d['file_mb']:.0f} | "
            f"{d['csr_mb']:.0f} | {r['step']} | {r['wall_s']:.1f} | {r['cells_per_s']:,.0f} | "
            f"{1e6 / r['cells_per_s']:.1f} | {r['rss_after_import_mb']:.0f} | {r['peak_rss_mb']:.0f} | "
            f"{r['ru_maxrss_mb']:.0f} |"
        )
    lines += [
        "",
        "`peak RSS` is the step process's `VmHWM` (`/proc/self/status`) read at the end of the step; "
        "`RSS after imports` is the same after `import torch, anndata, dice`, before the file is opened. "
        "`ru_maxrss` (`getrusage(RUSAGE_SELF)`) is shown too but is NOT the step's own peak: Linux carries "
        "it across fork + execve, so it is at least the RSS of the parent (the generator) at spawn time. "
        "(CSR in memory = float32 data + int32 "
        "indices + int64 indptr, i.e. what loading `X` whole would cost; the pipeline never does).",
        "",
        "Command:",
        "",
        "```",
        command,
        "```",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 500_000])
    p.add_argument("--denoise-max", type=int, default=10**9, help="skip denoise above this many cells")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--_measure", nargs=3, metavar=("STEP", "PATH", "MODEL"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._measure:
        _measure(*args._measure)
        return
    command = (
        "OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python "
        "benchmarks/memory.py " + " ".join(sys.argv[1:])
    )
    records, data = [], {}
    for n in args.sizes:
        path = DATA_DIR / f"atlas_{n}.h5ad"
        data[n] = generate(path, n)
        print(json.dumps(data[n]), flush=True)
        steps = ["fit"] + (["denoise"] if n <= args.denoise_max else [])
        for step in steps:
            rec = run_step(step, path, DATA_DIR / f"model_{n}")
            records.append(rec)
            print(json.dumps(rec), flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(write_table(records, data, command))
        path.unlink()
    print(write_table(records, data, command))


if __name__ == "__main__":
    main()
