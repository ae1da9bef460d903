"""The count model's settings on real data: query purity and Leiden ARI against ambient RNA and dispersion.

Section 4 of BENCHMARKS.md found the PBMC4k query's DICE embedding less pure with the count likelihood than
with the gene-weighted one, and ``purity_likelihood.py`` placed the loss in the count measurement itself.
PBMC4k is droplet data with a known ambient "soup" (it is SoupX's example): a T cell carries a few counts of
monocyte genes, which a count model without ambient RNA reads as evidence of a monocyte state. Per seed of
a ``_real_tasks`` task (the section-4 split), this script trains one model per arm, each ambient fraction
(``TrainSettings(ambient_fraction=...)``, the reference's pooled profile as the ambient one) with each
dispersion (``TrainSettings(count_dispersion=...)``: one per gene or one pooled value), and reports, on the
query's labelled cells: the 15-NN leave-one-out label accuracy of ``X_dice`` (purity), the oracle and
label-free Leiden ARI, and the median count-noise sd.

One thread; one JSON line per seed, then mean ± sd over seeds and the paired differences against the first
arm (the first fraction with the first dispersion)::

    DICE_DATA_DIR=../shared/data python benchmarks/ambient.py --task pbmc3k_to_4k --fractions 0 0.1 0.2 --seeds 0 1 2
    DICE_DATA_DIR=../shared/data python benchmarks/ambient.py --task pbmc3k_to_4k --fractions 0 \
        --dispersions gene pooled --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

METRICS = ("purity", "ari", "ari_stable", "noise_sd")


def arm(fraction: float, dispersion: str = "gene") -> str:
    """An arm's key: the fraction alone with per-gene dispersions (as records before the dispersion arms)."""
    return str(fraction) if dispersion == "gene" else f"{fraction}/{dispersion}"


def run(task, seed: int, fractions: list[float], dispersions: tuple[str, ...] = ("gene",)) -> dict:
    """Each arm's metrics on one prepared task."""
    import numpy as np
    import pandas as pd

    import dice
    from dice.metrics import evaluate, knn_accuracy

    labels = pd.Series(task.query_labels)
    keep = ~labels.isna().to_numpy()
    codes = pd.factorize(labels[keep])[0]
    out: dict = {"seed": seed}
    for fraction, dispersion in [(f, d) for f in fractions for d in dispersions]:
        settings = dice.tl.TrainSettings(ambient_fraction=fraction, count_dispersion=dispersion)
        model = dice.tl.train_prior(task.ref, seed=seed, settings=settings, progress=False)
        query = task.query.copy()
        dice.tl.denoise(query, model, seed=seed, progress=False)
        embedding = np.asarray(query.obsm["X_dice"])[keep]
        scores = evaluate(embedding, labels[keep].to_numpy(), seed=seed)
        out[arm(fraction, dispersion)] = {
            "purity": knn_accuracy(embedding, codes, n_neighbors=15),
            "ari": scores["leiden_oracle_ari"],
            "ari_stable": scores["leiden_stable_ari"],
            "noise_sd": float(np.median(query.obs["dice_noise_sd"])),
        }
    return out


def summary(rows: list[dict], fractions: list[float], dispersions: tuple[str, ...] = ("gene",)) -> str:
    import numpy as np

    def sd(values):
        return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0

    lines = []
    arms = [arm(f, d) for f in fractions for d in dispersions]
    for key in arms:
        for metric in METRICS:
            values = np.array([r[key][metric] for r in rows])
            text = f"rho {key:>5} {metric:>10}: {values.mean():.3f} ± {sd(values):.3f}"
            if key != arms[0]:
                diff = values - np.array([r[arms[0]][metric] for r in rows])
                text += f"   paired vs rho {arms[0]}: {diff.mean():+.3f} ± {sd(diff):.3f}"
            lines.append(text)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="pbmc3k_to_4k")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.0, 0.1])
    parser.add_argument("--dispersions", nargs="+", default=["gene"], choices=["gene", "pooled", "local"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = "1"
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _real_tasks import run_seeds

    dispersions = tuple(args.dispersions)
    rows = run_seeds(args.task, args.seeds, lambda task, seed: run(task, seed, args.fractions, dispersions))
    print(summary(rows, args.fractions, dispersions))


if __name__ == "__main__":
    main()
