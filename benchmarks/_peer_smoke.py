"""Smoke run of every peer in ``benchmarks/peers.py`` on CBMC CITE-seq (500 genes, 13 types).

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \
        .venv-peers/bin/python benchmarks/_peer_smoke.py [--methods pca,knn10,...] [--seed 0]

Protocol: raw counts -> normalize_total(1e4) + log1p -> stratified 90/10 split (reference / query) -> genes
standardised with reference statistics (clip 10) -> reference PCA, k=25 -> each peer embeds the query ->
KMeans with the true class count (n_init=10) on the embedding -> ARI. One seed: a smoke test, not a benchmark.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import anndata as ad  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "src/dice/datasets/data/cbmc_citeseq_500genes.h5ad"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--methods", default=",".join(peers.EMBEDDERS))
    p.add_argument("--transfers", default=",".join(peers.TRANSFERS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--k", type=int, default=25)
    args = p.parse_args()
    peers.set_single_thread()

    a = ad.read_h5ad(DATA)
    counts = np.asarray(a.X.toarray() if hasattr(a.X, "toarray") else a.X, dtype=np.float32)
    y = np.asarray(a.obs["label"]).astype(str)
    idx_r, idx_q = train_test_split(np.arange(a.n_obs), test_size=0.1, stratify=y, random_state=args.seed)
    ref, query = peers.prepare_split(
        counts[idx_r],
        counts[idx_q],
        n_comps=args.k,
        genes=a.var_names,
        ref_labels=y[idx_r],
        query_labels=y[idx_q],
    )
    yq = y[idx_q]
    n_cls = len(np.unique(yq))
    print(
        f"CBMC: {len(idx_r)} reference / {len(idx_q)} query cells, {a.n_vars} genes, {n_cls} query classes, k={args.k}"
    )
    print(f"{'method':<14}{'dims':>6}{'seconds':>10}{'ARI(KMeans)':>13}")
    for name in [m for m in args.methods.split(",") if m]:
        t0 = time.perf_counter()
        try:
            E = peers.EMBEDDERS[name](ref, query, n_comps=args.k, seed=args.seed)
        except Exception as e:  # report and go on: a smoke run
            print(f"{name:<14} FAILED: {type(e).__name__}: {e}")
            continue
        dt = time.perf_counter() - t0
        lab = KMeans(n_clusters=n_cls, n_init=10, random_state=args.seed).fit_predict(E)
        print(f"{name:<14}{E.shape[1]:>6}{dt:>10.1f}{adjusted_rand_score(yq, lab):>13.3f}", flush=True)

    # label transfer: AnnData with log-normalised X
    ra = ad.AnnData(ref.lognorm, obs={"label": y[idx_r]})
    qa = ad.AnnData(query.lognorm, obs={"label": yq})
    ra.var_names = qa.var_names = list(a.var_names)
    ra.obs_names = [f"r{i}" for i in range(ra.n_obs)]
    qa.obs_names = [f"q{i}" for i in range(qa.n_obs)]
    print(f"{'transfer':<14}{'seconds':>10}{'accuracy':>10}{'mean conf':>11}")
    for name in [m for m in args.transfers.split(",") if m]:
        try:
            res = (
                peers.TRANSFERS[name](ra, qa, "label", n_comps=args.k, seed=args.seed)
                if name != "celltypist"
                else peers.TRANSFERS[name](ra, qa, "label", seed=args.seed)
            )
        except Exception as e:
            print(f"{name:<14} FAILED: {type(e).__name__}: {e}")
            continue
        acc = float(np.mean(res.labels == yq))
        conf = "n/a" if res.confidence is None else f"{np.mean(res.confidence):.3f}"
        print(f"{name:<14}{res.seconds:>10.1f}{acc:>10.3f}{conf:>11}", flush=True)


if __name__ == "__main__":
    main()
