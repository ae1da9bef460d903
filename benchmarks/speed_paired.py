"""Paired timing of the count likelihood's cost: ``denoise`` with counts against ``likelihood="gene_weighted"``.

The same trained model and 10,000 query cells as ``benchmarks/speed.py`` (CBMC, k = 25), the settings
interleaved round by round in one process, so the machine's drift (20 % between hours on the 2-core box)
cancels out of each round's ratio. Issue 11's target: the count likelihood at most 2x the gene-weighted time.
``--before`` adds a third arm: the same ``denoise`` with another version's Newton solver, loaded from a file::

    git show 579faaa:src/dice/likelihood/_newton.py > /tmp/newton_before.py
    python benchmarks/speed_paired.py --threads 2 --rounds 8 --before /tmp/newton_before.py
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time


def load_module(path, name: str = "newton_before"):
    """A Python module loaded from ``path`` (another version's solver, or a patched copy of this one)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--n-cells", type=int, default=10_000)
    parser.add_argument("--before", help="path of another version's src/dice/likelihood/_newton.py")
    parser.add_argument(
        "--count-loadings-width", help="the model's TrainSettings.count_loadings_width ('none': PCA's V)"
    )
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import numpy as np
    import torch

    import dice
    import dice.likelihood._counts as counts_module

    torch.set_num_threads(args.threads)
    adata = dice.pp.recipe_paper(dice.datasets.cbmc(), copy=True)
    rng = np.random.default_rng(0)
    reference = adata[rng.integers(0, adata.n_obs, args.n_cells)].copy()
    query = adata[rng.integers(0, adata.n_obs, args.n_cells)].copy()
    reference.obs_names_make_unique()
    query.obs_names_make_unique()
    settings = dice.tl.TrainSettings()
    if args.count_loadings_width is not None:
        width = None if args.count_loadings_width.lower() == "none" else float(args.count_loadings_width)
        settings = settings.replace(count_loadings_width=width)
    model = dice.tl.train_prior(reference, n_comps=25, settings=settings, seed=0, progress=False)

    current = counts_module.newton_modes
    arms = {"counts": (dice.tl.PosteriorSettings(), current)}
    if args.before:
        arms["counts_before"] = (dice.tl.PosteriorSettings(), load_module(args.before).newton_modes)
    arms["gene_weighted"] = (dice.tl.PosteriorSettings(likelihood="gene_weighted"), current)
    times: dict[str, list[float]] = {key: [] for key in arms}
    for round_ in range(args.rounds):
        for key, (settings, solver) in arms.items():
            counts_module.newton_modes = solver
            target = query.copy()
            started = time.perf_counter()
            dice.tl.denoise(target, model=model, settings=settings, seed=round_, progress=False)
            times[key].append(time.perf_counter() - started)
    counts_module.newton_modes = current
    base = np.array(times["gene_weighted"])
    for key, values in times.items():
        ratio = np.array(values) / base
        print(
            f"{key:>14}: median {np.median(values):.2f} s, mean {np.mean(values):.2f} ± {np.std(values, ddof=1):.2f} s;"
            f" x gene-weighted {ratio.mean():.2f} ± {ratio.std(ddof=1):.2f}  ({np.round(values, 2).tolist()})"
        )


if __name__ == "__main__":
    main()
