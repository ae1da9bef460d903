"""How much of the count likelihood's cost is the distance from the solve's start to the mode?

Issue 11 asks the count likelihood to cost at most 2x the gene-weighted ``denoise``. The count solve
(``dice.likelihood._newton.newton_modes``) starts each cell from the reference's start map and takes
Newton steps until the next one would gain less than a tolerance. This script asks what a better start,
for instance a learned encoder, could save at most: it first solves every cell to a tight tolerance,
then times ``denoise`` with the solve started at the mode itself (the algorithm's floor: one information,
one free step) and at ``delta`` posterior sd from it (a random direction per cell, scaled to Mahalanobis
length ``delta`` under the information at the mode plus the prior's precision), paired round by round
with the default start and with ``likelihood="gene_weighted"`` in one process. The default start's own
distance is printed in the same units. ``--tols`` adds arms from the default start with a looser
stopping tolerance (``newton_modes``' ``tol``, default 1e-3), each with its accuracy against the tight
solve, measured once outside the timing: mode error in posterior sd and the relative error of the noise
variance ``trace(H^-1) / k``. Data: as ``benchmarks/speed_paired.py`` (CBMC, 10,000 reference and
10,000 query cells, k = 25); the prior is trained for ``--updates`` steps only, which does not change the
solve. Run::

    DICE_DATA_DIR=../shared/data .venv/bin/python benchmarks/start_distance.py --threads 2 --rounds 6
    DICE_DATA_DIR=../shared/data .venv/bin/python benchmarks/start_distance.py --threads 2 --rounds 6 \
        --deltas 0 --tols 3e-3 1e-2 3e-2 1e-1
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
import warnings


def offset(mode, information, prior_var, delta: float, seed: int):
    """``mode`` moved by ``delta`` along a random direction per cell, in Mahalanobis units of
    ``information + diag(1 / prior_var)`` (so ``sqrt(d^T (H + P) d) = delta`` for every cell)."""
    import numpy as np

    precision = information + np.diag(1.0 / np.asarray(prior_var, dtype=np.float64))
    lower = np.linalg.cholesky(precision)
    z = np.random.default_rng(seed).normal(size=mode.shape)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    direction = np.linalg.solve(np.swapaxes(lower, 1, 2), z[..., None])[..., 0]  # L^-T z
    return mode + delta * direction


def mahalanobis(points, mode, information, prior_var):
    """Each cell's distance from ``points`` to ``mode`` in posterior sd (as :func:`offset` measures it)."""
    import numpy as np

    precision = information + np.diag(1.0 / np.asarray(prior_var, dtype=np.float64))
    d = points - mode
    return np.sqrt(np.einsum("ni,nij,nj->n", d, precision, d))


def accuracy(mode, information, tight_mode, tight_information, prior_var) -> dict:
    """A looser solve against the tight one: mode error in posterior sd, relative error of ``trace(H^-1)``."""
    import numpy as np

    error = mahalanobis(mode, tight_mode, tight_information, prior_var)
    trace = np.trace(np.linalg.inv(information), axis1=1, axis2=2)
    tight = np.trace(np.linalg.inv(tight_information), axis1=1, axis2=2)
    relative = np.abs(trace / tight - 1.0)
    return {
        "mode_p50": float(np.median(error)),
        "mode_p99": float(np.quantile(error, 0.99)),
        "mode_max": float(error.max()),
        "noise_p99": float(np.quantile(relative, 0.99)),
        "noise_max": float(relative.max()),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--updates", type=int, default=300, help="prior training steps (the solve does not use them)")
    parser.add_argument("--deltas", type=float, nargs="+", default=[0.0, 0.3, 1.0, 2.0])
    parser.add_argument("--tols", type=float, nargs="*", default=[], help="looser stopping tolerances to time")
    args = parser.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import numpy as np
    import torch

    import dice
    import dice.likelihood._counts as counts_module

    torch.set_num_threads(args.threads)
    adata = dice.pp.recipe_paper(dice.datasets.cbmc(), copy=True)
    rng = np.random.default_rng(0)
    reference = adata[rng.integers(0, adata.n_obs, 10_000)].copy()
    query = adata[rng.integers(0, adata.n_obs, 10_000)].copy()
    reference.obs_names_make_unique()
    query.obs_names_make_unique()
    settings = dice.tl.TrainSettings(n_updates=args.updates)
    model = dice.tl.train_prior(reference, n_comps=25, settings=settings, seed=0, progress=False)

    solve = counts_module.newton_modes
    modes: dict[str, tuple] = {}  # each block's tight mode and information, by its counts
    distances = []

    def started_at(delta: float):
        def newton_modes(counts, present, embedding, ref, n_iter, u0, **kwargs):
            key = hashlib.sha1(np.ascontiguousarray(counts).tobytes()).hexdigest()
            if key not in modes:
                mode, information = solve(counts, present, embedding, ref, 50, None, tol=1e-8)
                start, _ = solve(counts, present, embedding, ref, 0, None, information_at_mode=False)  # no step
                distances.append(mahalanobis(start, mode, information, ref.prior_var))
                # a unit offset per cell, computed once: the timed solves only add it
                unit = offset(mode, information, ref.prior_var, 1.0, len(modes)) - mode
                modes[key] = (mode, unit, information)
            mode, unit, _ = modes[key]
            return solve(counts, present, embedding, ref, n_iter, mode + delta * unit, **kwargs)

        return newton_modes

    counts_settings = dice.tl.PosteriorSettings()
    arms = {"counts (default start)": (counts_settings, solve)}
    arms |= {f"counts, start {d:g} sd from the mode": (counts_settings, started_at(d)) for d in args.deltas}
    errors: dict[float, list] = {tol: [] for tol in args.tols}

    def stopping_at(tol: float, record: bool = False):
        def newton_modes(counts, present, embedding, ref, n_iter, u0, **kwargs):
            mode, information = solve(counts, present, embedding, ref, n_iter, u0, **(kwargs | {"tol": tol}))
            if record:
                key = hashlib.sha1(np.ascontiguousarray(counts).tobytes()).hexdigest()
                tight_mode, _, tight_information = modes[key]
                errors[tol].append((mode, information, tight_mode, tight_information, ref.prior_var))
            return mode, information

        return newton_modes

    arms |= {f"counts, tol {t:g} (default 1e-3)": (counts_settings, stopping_at(t)) for t in args.tols}
    arms["gene_weighted"] = (dice.tl.PosteriorSettings(likelihood="gene_weighted"), solve)
    times: dict[str, list[float]] = {name: [] for name in arms}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            counts_module.newton_modes = started_at(0.0)
            dice.tl.denoise(query, model, progress=False)  # solves every block tightly, once
            for tol in args.tols:  # the looser solves' accuracy, once, untimed
                counts_module.newton_modes = stopping_at(tol, record=True)
                dice.tl.denoise(query, model, progress=False)
            distance = np.concatenate(distances)
            print(f"default start: median {np.median(distance):.2f}, p90 {np.quantile(distance, 0.9):.2f} posterior sd")
            for _ in range(args.rounds):
                for name, (posterior, newton_modes) in arms.items():
                    counts_module.newton_modes = newton_modes
                    started = time.perf_counter()
                    dice.tl.denoise(query, model, settings=posterior, progress=False)
                    times[name].append(time.perf_counter() - started)
        finally:
            counts_module.newton_modes = solve
    base = np.asarray(times["gene_weighted"])
    for name, values in times.items():
        ratio = np.asarray(values) / base
        print(
            f"{name}: median {np.median(values):.3f} s; x gene-weighted {ratio.mean():.2f} ± {ratio.std(ddof=1):.2f}",
            flush=True,
        )

    for tol, parts in errors.items():
        joined = [np.concatenate(a) for a in zip(*[p[:4] for p in parts], strict=True)]
        found = accuracy(*joined, parts[0][4])
        print(
            f"tol {tol:g}: mode error median {found['mode_p50']:.3f}, p99 {found['mode_p99']:.3f}, max "
            f"{found['mode_max']:.3f} sd; noise variance p99 {100 * found['noise_p99']:.2f} %, max "
            f"{100 * found['noise_max']:.2f} %"
        )


if __name__ == "__main__":
    main()
