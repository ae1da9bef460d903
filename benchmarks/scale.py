"""Atlas scale: wall time, cells per second and peak RSS of ``train_prior`` and ``denoise`` against the number of cells.

A synthetic count atlas (cells x 3,000 genes, a few cell types from a low-rank model, ``log1p`` of Poisson counts,
float32 CSR, ~10 % non-zeros; the generator of ``benchmarks/memory.py``) is written to an ``.h5ad`` chunk by
chunk, never holding the matrix. Every measurement then runs in a FRESH subprocess (peak RSS = its own
``VmHWM``, see ``memory._hwm_mb``) and reads the whole file in one of two modes:

* ``backed``: ``ad.read_h5ad(path, backed="r")``, the memory-bounded row-block pipeline in one process;
* ``dask``: ``X`` as a lazy dask array (``anndata.experimental.read_elem_lazy``, one chunk per dice row block)
  on a ``distributed.LocalCluster`` (``--workers`` processes, one thread each). For ``denoise`` each row
  chunk's read, measurement and posterior run on the workers, with the model scattered once to each
  (``dice.tl._dask``); for ``fit`` the workers read the blocks and the client reduces them and trains the
  network. The workers' own peak RSS is reported beside the client's.

Steps: ``fit`` = ``dice.tl.train_prior`` (streaming exact fit of V from the Gram matrix, the reference latents,
then ``memory.N_UPDATES`` network updates: the network's training cost does not depend on the number of
cells); ``denoise`` = ``dice.tl.denoise`` of the whole file with the model fitted in backed mode and the
library's default settings (``--settings default``; ``fast`` = Tweedie mean only, no uncertainty).

Results go to ``benchmarks/results/scale.csv`` (one row per size, step, mode and repeat; rows of sizes not run
this time are kept) and a log-log plot of cost against cells to ``docs/figures/scale.png``. Progress bars count
cells (``--progress``). Usage::

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \\
        .venv/bin/python benchmarks/scale.py --sizes 100000 300000 1000000
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import memory  # noqa: E402  (the atlas generator and the peak-RSS probe of the memory benchmark)

N_GENES = 3000
SIZES = (100_000, 300_000, 1_000_000)
STEPS = ("fit", "denoise")
MODES = ("backed", "dask")
ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "scale.csv"
FIGURE = ROOT.parent / "docs" / "figures" / "scale.png"
DATA_DIR = Path("/tmp/dice_scale")
FIELDS = [
    "date",
    "commit",
    "n_cells",
    "n_genes",
    "nnz",
    "file_mb",
    "step",
    "mode",
    "settings",
    "repeat",
    "wall_s",
    "cells_per_s",
    "us_per_cell",
    "peak_rss_mb",
    "workers_peak_rss_mb",
    "n_workers",
    "threads",
    "device",
    "load_5min",
    "settings_json",
]


def posterior_settings(name: str):
    """``default``: the library's default; ``fast``: the Tweedie mean alone (one call, no uncertainty)."""
    import dice

    if name == "default":
        return dice.tl.PosteriorSettings()
    if name == "fast":
        return dice.tl.PosteriorSettings(**memory.DENOISE_SETTINGS)
    raise ValueError(f"--settings must be 'default' or 'fast', got {name!r}")


def generate(path: Path, n_cells: int, *, n_genes: int = N_GENES, seed: int = 0, progress: bool = False) -> dict:
    """Write the synthetic atlas to ``path`` one chunk of ``memory.GEN_CHUNK`` cells at a time (a cells bar)."""
    import h5py
    import pandas as pd
    from anndata.io import sparse_dataset, write_elem
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    params = {
        "base": rng.normal(np.log(0.03), 0.8, size=n_genes).astype(np.float32),
        "loadings": (0.35 * rng.standard_normal((memory.RANK, n_genes))).astype(np.float32),
        "centres": (1.5 * rng.standard_normal((memory.N_TYPES, memory.RANK))).astype(np.float32),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    started, nnz, types = time.perf_counter(), 0, []
    with (
        h5py.File(path, "w") as f,
        tqdm(total=n_cells, desc=f"writing {path.name}", unit="cells", disable=not progress) as bar,
    ):
        f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"
        store = None
        for start in range(0, n_cells, memory.GEN_CHUNK):
            x, chunk_types = memory._chunk(rng, min(memory.GEN_CHUNK, n_cells - start), params)
            nnz += x.nnz
            types.append(chunk_types)
            if store is None:
                write_elem(f, "X", x)
                store = sparse_dataset(f["X"])
            else:
                store.append(x)
            bar.update(x.shape[0])
        labels = pd.Categorical([f"t{t}" for t in np.concatenate(types)])
        write_elem(f, "obs", pd.DataFrame({"cell_type": labels}, index=[f"c{i}" for i in range(n_cells)]))
        write_elem(f, "var", pd.DataFrame(index=[f"g{j}" for j in range(n_genes)]))
        for key in ("obsm", "varm", "obsp", "varp", "layers", "uns"):
            write_elem(f, key, {})
    return {
        "n_cells": n_cells,
        "n_genes": n_genes,
        "nnz": nnz,
        "file_mb": path.stat().st_size / 2**20,
        "gen_s": time.perf_counter() - started,
    }


def _open(mode: str, path: str, n_workers: int):
    """The AnnData to measure (and the Dask client/cluster to close, in ``dask`` mode)."""
    import anndata as ad

    if mode == "backed":
        return ad.read_h5ad(path, backed="r"), None
    import distributed
    import h5py
    from anndata.experimental import read_elem_lazy
    from anndata.io import read_elem

    from dice._blocks import block_size_for

    cluster = distributed.LocalCluster(
        n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    )
    client = distributed.Client(cluster)
    f = h5py.File(path, "r")
    n_genes = f["var"][f["var"].attrs["_index"]].shape[0]
    x = read_elem_lazy(f["X"], chunks=(block_size_for(n_genes), -1))
    adata = ad.AnnData(X=x, obs=read_elem(f["obs"]), var=read_elem(f["var"]))
    return adata, (client, cluster, f)


def _measure(step: str, mode: str, path: str, model_dir: str, options: str) -> None:
    """Runs inside a fresh subprocess; prints one JSON line (wall time, peak RSS of this process and workers)."""
    import torch

    opts = json.loads(options)
    torch.set_num_threads(opts["threads"])
    import dice

    adata, dask_handles = _open(mode, path, opts["workers"])
    progress = opts["progress"]
    if step == "fit":
        started = time.perf_counter()
        model = dice.tl.train_prior(
            adata,
            settings=dice.tl.TrainSettings(n_updates=memory.N_UPDATES),
            seed=0,
            device=opts["device"],
            progress=progress,
        )
        wall = time.perf_counter() - started
        device, settings = str(model.device), {"n_updates": memory.N_UPDATES}
        if mode == "backed":  # the model every denoise uses
            model.save(model_dir, overwrite=True)
    else:
        model = dice.models.DicePrior.load(model_dir, device=opts["device"])
        posterior = posterior_settings(opts["settings"])
        started = time.perf_counter()
        dice.tl.denoise(adata, model, settings=posterior, seed=0, device=opts["device"], progress=progress)
        wall = time.perf_counter() - started
        device, settings = adata.uns["dice"]["device"], posterior.to_dict()
        assert adata.obsm["X_dice"].shape[0] == adata.n_obs
    workers_peak = float("nan")
    if dask_handles is not None:
        client, cluster, f = dask_handles
        workers_peak = max(client.run(memory._hwm_mb).values())
        client.close()
        cluster.close()
        f.close()
    record = {
        "step": step,
        "mode": mode,
        "n_cells": adata.n_obs,
        "wall_s": wall,
        "peak_rss_mb": memory._hwm_mb(),
        "workers_peak_rss_mb": workers_peak,
        "device": device,
        "load_5min": round(os.getloadavg()[1], 2),  # the machine's load over (about) the measurement
        "settings_json": json.dumps(settings, sort_keys=True),
    }
    print(json.dumps(record))


def run_step(step: str, mode: str, path: Path, model_dir: Path, opts: dict) -> dict:
    """One measurement in a fresh subprocess (its stderr, where the progress bars are, passes through)."""
    threads = str(opts["threads"])
    env = dict(os.environ)
    env.update({var: threads for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    command = [sys.executable, __file__, "--_measure", step, mode, str(path), str(model_dir), json.dumps(opts)]
    out = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{step} ({mode}) on {path} failed (rc {out.returncode})")
    record = json.loads(out.stdout.strip().splitlines()[-1])
    record["cells_per_s"] = record["n_cells"] / record["wall_s"]
    record["us_per_cell"] = 1e6 / record["cells_per_s"]
    return record


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _merge(old: list[dict], new: list[dict], *, append: bool = False) -> list[dict]:
    """Rows of this run replace earlier rows of the same size, step, mode and settings (``append``: join them)."""

    def key(r):
        return (int(r["n_cells"]), r["step"], r["mode"], r["settings"])

    done = set() if append else {key(r) for r in new}
    kept = [r for r in old if key(r) not in done]
    if append:  # number this run's repeats after the earlier ones
        first = {}
        for r in kept:
            first[key(r)] = max(first.get(key(r), -1), int(r["repeat"]))
        new = [{**r, "repeat": first.get(key(r), -1) + 1 + int(r["repeat"])} for r in new]
    return sorted([*kept, *new], key=lambda r: (*key(r), int(r["repeat"])))


def plot(rows: list[dict], path: Path) -> None:
    """Wall time (log-log) and peak RSS (log cells) against cells, one line per step and mode (median over repeats)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (ax_time, ax_rss) = plt.subplots(1, 2, figsize=(10, 4))
    series = sorted({(r["step"], r["mode"], r["settings"]) for r in rows})
    for index, (step, mode, settings) in enumerate(series):
        colour = f"C{index}"  # the same series has the same colour in both panels
        mine = [r for r in rows if (r["step"], r["mode"], r["settings"]) == (step, mode, settings)]
        sizes = sorted({int(r["n_cells"]) for r in mine})
        wall = [np.median([float(r["wall_s"]) for r in mine if int(r["n_cells"]) == n]) for n in sizes]
        rss = [np.median([float(r["peak_rss_mb"]) for r in mine if int(r["n_cells"]) == n]) for n in sizes]
        label = f"{step}, {mode}" + ("" if step == "fit" else f" ({settings})")
        style = "-" if mode == "backed" else "--"
        ax_time.plot(sizes, wall, style, color=colour, marker="o", label=label)
        ax_rss.plot(sizes, rss, style, color=colour, marker="o", label=label)
        if mode == "dask":
            workers = [
                np.median([float(r["workers_peak_rss_mb"]) for r in mine if int(r["n_cells"]) == n]) for n in sizes
            ]
            ax_rss.plot(sizes, workers, ":", color=colour, marker="x", label=f"{label}, each worker")
    all_sizes = sorted({int(r["n_cells"]) for r in rows})
    span = (min(all_sizes, default=SIZES[0]) / 1.5, max(*all_sizes, SIZES[-1]) * 1.5)
    if all_sizes:  # slope 1 through the cheapest series at the smallest size
        first = min(float(r["wall_s"]) for r in rows if int(r["n_cells"]) == all_sizes[0])
        grid = np.array([all_sizes[0], max(*all_sizes, SIZES[-1])], dtype=float)
        ax_time.plot(grid, first * grid / grid[0], color="grey", lw=0.8, ls=":", label="linear in cells")
    ax_rss.axhline(4096, color="grey", lw=0.8, ls="-.", label="4 GB target")
    ax_time.set_yscale("log")
    ax_time.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax_rss.set_ylim(0, 4600)  # linear: the 4 GB budget in view
    for ax, ylabel in ((ax_time, "wall time (s)"), (ax_rss, "peak RSS (MB)")):
        ax.set_xscale("log")
        ax.set_xlim(*span)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(f"cells (x {N_GENES:,} genes)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax_time.legend(fontsize=7)
    ax_rss.legend(fontsize=7)
    fig.suptitle("dice at atlas scale (synthetic counts, backed h5ad; Dask LocalCluster)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    p.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--settings", choices=("default", "fast"), default="default", help="denoise settings")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--workers", type=int, default=2, help="Dask worker processes (one thread each)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the measured process")
    p.add_argument("--device", default="cpu", help="'cpu', 'cuda' or 'auto'")
    p.add_argument("--genes", type=int, default=N_GENES)
    p.add_argument("--data-dir", type=Path, default=DATA_DIR)
    p.add_argument("--keep-data", action="store_true", help="keep the generated .h5ad files")
    p.add_argument("--progress", action="store_true", help="progress bars (they count cells)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--append", action="store_true", help="keep earlier rows of the same sizes (more repeats)")
    p.add_argument("--figure", type=Path, default=FIGURE)
    p.add_argument("--_measure", nargs=5, metavar=("STEP", "MODE", "PATH", "MODEL", "OPTIONS"), help=argparse.SUPPRESS)
    p.add_argument("--plot-only", action="store_true", help="redraw the figure and print the table from --out")
    args = p.parse_args(argv)
    if args._measure:
        _measure(*args._measure)
        return
    if args.plot_only:
        rows = read_rows(args.out)
        plot(rows, args.figure)
        _print_table(rows)
        return
    opts = {
        "threads": args.threads,
        "workers": args.workers,
        "device": args.device,
        "settings": args.settings,
        "progress": args.progress,
    }
    rows = previous = read_rows(args.out)
    new = []  # every row of this run, all sizes
    commit, date = _commit(), datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ")
    for n in args.sizes:
        path = args.data_dir / f"atlas_{n}_{args.genes}.h5ad"
        data = generate(path, n, n_genes=args.genes, progress=args.progress)
        print(json.dumps(data), flush=True)
        model_dir = args.data_dir / f"model_{n}_{args.genes}"
        plan = [(step, mode) for step in STEPS if step in args.steps for mode in args.modes]
        if "denoise" in args.steps and ("fit", "backed") not in plan and not (model_dir / "config.json").exists():
            plan.insert(0, ("fit", "backed"))  # every denoise uses the model of the backed fit
        for step, mode in plan:
            for repeat in range(args.repeats):
                record = run_step(step, mode, path, model_dir, opts)
                record.update(
                    date=date,
                    commit=commit,
                    n_genes=args.genes,
                    nnz=data["nnz"],
                    file_mb=round(data["file_mb"], 1),
                    settings=args.settings if step == "denoise" else "-",
                    repeat=repeat,
                    n_workers=args.workers if mode == "dask" else 1,
                    threads=args.threads,
                )
                print(json.dumps(record), flush=True)
                new.append(record)
                rows = _merge(previous, new, append=args.append)
                write_rows(args.out, rows)
                plot(rows, args.figure)
        if not args.keep_data:
            path.unlink()
    _print_table(rows)


def _print_table(rows: list[dict]) -> None:
    print(
        f"{'cells':>10} {'step':>8} {'mode':>7} {'settings':>8} {'wall (s)':>10} {'cells/s':>9} {'peak RSS (MB)':>14}"
    )
    for r in rows:
        print(
            f"{int(r['n_cells']):>10,} {r['step']:>8} {r['mode']:>7} {r['settings']:>8} {float(r['wall_s']):>10.1f} "
            f"{float(r['cells_per_s']):>9,.0f} {float(r['peak_rss_mb']):>14.0f}"
        )


if __name__ == "__main__":
    main()
