"""Ambient RNA in the count likelihood: the query's neighbourhood purity and Leiden ARI against its share.

Section 4 of BENCHMARKS.md found the PBMC4k query's DICE embedding less pure with the count likelihood than
with the gene-weighted one, and ``purity_likelihood.py`` placed the loss in the count measurement itself.
PBMC4k is droplet data with a known ambient "soup" (it is SoupX's example): a T cell carries a few counts of
monocyte genes, which a count model without ambient RNA reads as evidence of a monocyte state. Per seed of
a ``_real_tasks`` task (the section-4 split), this script trains one model per ambient fraction
(``TrainSettings(ambient_fraction=...)``, the reference's pooled profile as the ambient one) and reports, on
the query's labelled cells: the 15-NN leave-one-out label accuracy of ``X_dice`` (purity), the oracle and
label-free Leiden ARI, and the median count-noise sd.

One thread; one JSON line per seed, then mean ± sd over seeds and the paired differences against 0::

    DICE_DATA_DIR=../shared/data python benchmarks/ambient.py --task pbmc3k_to_4k --fractions 0 0.1 0.2 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

METRICS = ("purity", "ari", "ari_stable", "noise_sd")


def run(task, seed: int, fractions: list[float]) -> dict:
    """Each ambient fraction's metrics on one prepared task."""
    import numpy as np
    import pandas as pd

    import dice
    from dice.metrics import evaluate, knn_accuracy

    labels = pd.Series(task.query_labels)
    keep = ~labels.isna().to_numpy()
    codes = pd.factorize(labels[keep])[0]
    out: dict = {"seed": seed}
    for fraction in fractions:
        settings = dice.tl.TrainSettings(ambient_fraction=fraction)
        model = dice.tl.train_prior(task.ref, seed=seed, settings=settings, progress=False)
        query = task.query.copy()
        dice.tl.denoise(query, model, seed=seed, progress=False)
        embedding = np.asarray(query.obsm["X_dice"])[keep]
        scores = evaluate(embedding, labels[keep].to_numpy(), seed=seed)
        out[str(fraction)] = {
            "purity": knn_accuracy(embedding, codes, n_neighbors=15),
            "ari": scores["leiden_oracle_ari"],
            "ari_stable": scores["leiden_stable_ari"],
            "noise_sd": float(np.median(query.obs["dice_noise_sd"])),
        }
    return out


def summary(rows: list[dict], fractions: list[float]) -> str:
    import numpy as np

    def sd(values):
        return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0

    lines = []
    base = str(fractions[0])
    for fraction in map(str, fractions):
        for metric in METRICS:
            values = np.array([r[fraction][metric] for r in rows])
            text = f"rho {fraction:>5} {metric:>10}: {values.mean():.3f} ± {sd(values):.3f}"
            if fraction != base:
                diff = values - np.array([r[base][metric] for r in rows])
                text += f"   paired vs rho {base}: {diff.mean():+.3f} ± {sd(diff):.3f}"
            lines.append(text)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="pbmc3k_to_4k")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.0, 0.1])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = "1"
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _real_tasks import run_seeds

    rows = run_seeds(args.task, args.seeds, lambda task, seed: run(task, seed, args.fractions))
    print(summary(rows, args.fractions))


if __name__ == "__main__":
    main()
