"""Which part of the default lowers a query's neighbourhood purity: the count likelihood or the refitted loadings.

Section 4 of BENCHMARKS.md found the leave-one-out 15-NN label accuracy within the PBMC4k query's DICE
embedding lower with the Dec 6 default (count likelihood, loadings refitted to the counts) than with the
Dec 1 one (log-normalised data, PCA's loadings). This script separates the two, per seed of a
``_real_tasks`` task (the section-4 split):

- ``refit_counts``: the default (``TrainSettings(count_loadings_width=1.5)``, count likelihood);
- ``refit_gene_weighted``: the same model, ``PosteriorSettings(likelihood="gene_weighted")``;
- ``pca_counts``: PCA's loadings (``count_loadings_width=None``), count likelihood;
- ``*_projection``: the undenoised projection ``V^T x`` (``obsm["X_dice_pca"]``) of each model;
- ``refit_counts_query_scale``: the default model with its per-gene count scales refitted on the query's own
  counts (two moment steps, as :func:`dice.likelihood.fit_count_reference` fits them on the reference): does
  a gene captured differently by the query's chemistry explain the loss?

One thread; prints one JSON line per seed, then mean ± sd over seeds and the paired differences::

    DICE_DATA_DIR=../shared/data python benchmarks/purity_likelihood.py --task pbmc3k_to_4k --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

PAIRS = (
    ("refit_counts", "refit_gene_weighted"),
    ("refit_counts", "pca_counts"),
    ("refit_projection", "pca_projection"),
    ("refit_counts_query_scale", "refit_counts"),
)


def query_scaled(model, query):
    """A shallow copy of ``model`` whose count reference's gene scales are refitted on ``query``'s counts."""
    import copy

    import numpy as np
    import scipy.sparse as sp

    from dice.likelihood._counts import count_moments

    columns = query.var_names.get_indexer(model.embedding.genes)
    if (columns < 0).any():
        raise ValueError("the query lacks some of the model's genes")
    counts = sp.csr_matrix(query.layers["counts"])[:, columns]
    reference = copy.deepcopy(model.count_reference)
    for _ in range(2):  # the scale steps of dice.likelihood.fit_count_reference, started from the reference's
        observed, expected, _, _ = count_moments(counts, model.embedding, reference)
        reference.gene_scale = reference.gene_scale + np.log((observed + 1e-3) / (expected + 1e-3))
    scaled = copy.copy(model)
    scaled.count_reference = reference
    return scaled


def purity(task, seed: int) -> dict:
    """The 15-NN leave-one-out label accuracy of each arm on the query's labelled cells."""
    import numpy as np
    import pandas as pd

    import dice
    from dice.metrics import knn_accuracy

    labels = pd.Series(task.query_labels)
    keep = ~labels.isna().to_numpy()
    codes = pd.factorize(labels[keep])[0]
    out: dict = {"seed": seed}
    for name, width in (("refit", 1.5), ("pca", None)):
        settings = dice.tl.TrainSettings(count_loadings_width=width)
        model = dice.tl.train_prior(task.ref, seed=seed, settings=settings, progress=False)
        for likelihood in ("counts", "gene_weighted") if name == "refit" else ("counts",):
            query = task.query.copy()
            posterior = dice.tl.PosteriorSettings(likelihood=likelihood)
            dice.tl.denoise(query, model, settings=posterior, seed=seed, progress=False)
            out[f"{name}_{likelihood}"] = knn_accuracy(np.asarray(query.obsm["X_dice"])[keep], codes, n_neighbors=15)
        out[f"{name}_projection"] = knn_accuracy(np.asarray(query.obsm["X_dice_pca"])[keep], codes, n_neighbors=15)
        if name == "refit":
            query = task.query.copy()
            dice.tl.denoise(query, query_scaled(model, task.query), seed=seed, progress=False)
            out["refit_counts_query_scale"] = knn_accuracy(
                np.asarray(query.obsm["X_dice"])[keep], codes, n_neighbors=15
            )
    return out


def summary(rows: list[dict]) -> str:
    import numpy as np

    lines = []
    for key in [k for k in rows[0] if k != "seed"]:
        values = np.array([r[key] for r in rows])
        lines.append(f"{key:>22}: {values.mean():.3f} ± {values.std(ddof=1) if len(rows) > 1 else 0.0:.3f}")
    for a, b in PAIRS:
        diff = np.array([r[a] - r[b] for r in rows])
        lines.append(f"{a} - {b}: {diff.mean():+.3f} ± {diff.std(ddof=1) if len(rows) > 1 else 0.0:.3f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="pbmc3k_to_4k")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = "1"
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _real_tasks import run_seeds

    rows = run_seeds(args.task, args.seeds, purity)
    print(summary(rows))


if __name__ == "__main__":
    main()
