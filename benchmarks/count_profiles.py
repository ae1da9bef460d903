"""How many count sub-profiles per label: a screen of ``TransferSettings.count_profiles``, and a held-out choice.

``depth.py``'s tasks, splits and thinning. Per task and seed one prior is trained (package defaults); the
query is thinned to each depth and transferred once per candidate number of sub-profiles, all in one process,
so the candidates are paired. Besides the query's label metrics, each run records two held-out negative
log-likelihoods on the calibration cells (thinned to the query's depth, unseen by the profiles): the stacked
probabilities' (``nll``) and the count expert's alone (``count_nll``). Either could choose the number per
reference without the query's labels; ``--report`` compares those choices with the default. The two values
are read by wrapping the stack fit inside :mod:`dice.tl._transfer` (a benchmark's look inside, nothing
``transfer_labels`` exposes).

Run::

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 DICE_DATA_DIR=../shared/data \\
        .venv/bin/python benchmarks/count_profiles.py --tasks cbmc pbmc3k_to_4k worm --seeds 0 1 2
    .venv/bin/python benchmarks/count_profiles.py --report
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results" / "count_profiles.csv"
CANDIDATES = (1, 2, 4, 8, 16)
FRACTIONS = (1.0, 0.2, 0.05)


def held_out_nll(log_latent, loglik, truth, weights) -> dict:
    """The stacked and the count-only negative log-likelihood of the calibration cells' true labels."""
    from dice.tl._count_evidence import stack

    rows = np.arange(len(truth))
    stacked = stack(log_latent, loglik, weights)[rows, truth]
    counts_only = stack(np.zeros_like(log_latent), loglik, (0.0, 1.0))[rows, truth]
    return {
        "nll": float(-np.mean(np.log(stacked + 1e-300))),
        "count_nll": float(-np.mean(np.log(counts_only + 1e-300))),
    }


def run_task(name: str, seed: int, candidates, captured: dict) -> list[dict]:
    import _real_tasks as rt
    import depth
    import dice

    task = depth.prepare(name, seed)
    ref, query = task.ref, task.query
    ref.obs[depth.LABEL] = pd.Categorical(task.ref_labels)
    evaluated = ~pd.isna(task.query_labels)
    truth = task.query_labels[evaluated].astype(str)
    model = dice.tl.train_prior(ref, n_comps=rt.TASKS[name].n_comps, seed=seed, progress=False)
    records = []
    for f in FRACTIONS:
        q = depth.shallow_query(query, f, seed=[seed, round(f * 1e4)])
        for c in candidates:
            started = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dice.tl.transfer_labels(
                    q,
                    ref,
                    model,
                    labels_key=depth.LABEL,
                    seed=seed,
                    progress=False,
                    transfer=dice.tl.TransferSettings(count_profiles=c),
                )
            seconds = time.perf_counter() - started
            metrics = depth.label_metrics(
                truth,
                q.obs["dice_label"].astype(str).to_numpy()[evaluated],
                q.obs["dice_label_confidence"].to_numpy()[evaluated],
            )
            records.append({"task": name, "seed": seed, "f": f, "c": c, "seconds": seconds, **metrics, **captured})
            print(records[-1], flush=True)
    return records


def report(records: pd.DataFrame, default: int = 2) -> str:
    """Means per candidate, and each held-out choice's paired difference to ``default`` (mean ± sd over seeds)."""
    lines = []
    for task, rows in records.groupby("task", sort=False):
        lines.append(f"## {task}")
        means = rows.pivot_table(index="f", columns="c", values=["accuracy", "confident_wrong", "ece"])
        lines.append(means.sort_index(ascending=False).round(4).to_string())
        base = rows[rows["c"] == default].set_index(["seed", "f"])
        for criterion in ("nll", "count_nll"):
            chosen = rows.loc[rows.groupby(["seed", "f"])[criterion].idxmin()].set_index(["seed", "f"])
            for f in sorted(rows["f"].unique(), reverse=True):
                at = chosen.xs(f, level="f")
                diff = at["accuracy"] - base.xs(f, level="f")["accuracy"]
                wrong = at["confident_wrong"] - base.xs(f, level="f")["confident_wrong"]
                lines.append(
                    f"chosen by {criterion}, f = {f:g}: {at['c'].tolist()}; accuracy {diff.mean():+.4f} ± "
                    f"{diff.std(ddof=1):.4f}, wrong & conf > 0.5 {wrong.mean():+.4f} against {default}"
                )
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["cbmc", "pbmc3k_to_4k", "worm"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--candidates", nargs="+", type=int, default=list(CANDIDATES))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--report", action="store_true", help="only summarise the CSV")
    args = parser.parse_args(argv)
    if not args.report:
        import dice.tl._transfer as transfer

        captured: dict = {}
        fit = transfer.fit_stack

        def recording_fit(log_latent, loglik, truth):
            weights = fit(log_latent, loglik, truth)
            captured.update(held_out_nll(log_latent, loglik, truth, weights))
            return weights

        transfer.fit_stack = recording_fit
        records = [
            r for name in args.tasks for seed in args.seeds for r in run_task(name, seed, args.candidates, captured)
        ]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(records).to_csv(args.out, index=False, float_format="%.5g")
    print(report(pd.read_csv(args.out)))


if __name__ == "__main__":
    main()
