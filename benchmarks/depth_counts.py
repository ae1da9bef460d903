"""Shallow queries on CBMC: log-normalised Gaussian measurement vs the count measurement vs naive Bayes.

A stratified 80 / 20 split (per seed) gives a deep reference and a query whose raw counts are binomially
thinned to a fraction ``f`` of their depth. Compared, with the same diffusion-prior machinery:

``lognorm``     today's pipeline: log-normalise the thinned query, standardise, gene-weighted projection
                ``x_std @ G``, noise ``c trace(C) / k`` (``c`` estimated on the query), prior on ``V^T x_std``.
``counts/std``  the count measurement (:func:`dice.likelihood._counts.count_measurement`), prior still on
                ``V^T x_std`` of the reference.
``counts``      the count measurement, prior trained on the reference's own count measurements (measurement
                and prior in the same space). ``counts/poisson``: the same with no dispersion (alpha = 0);
                ``counts/prec``: isotropic level ``k / trace(H)`` instead of ``trace(H^-1) / k``;
                ``counts/matched``: ``trace(H^-1) / k`` with the centre matched under the Gaussian prior.
``naive_bayes`` multinomial naive Bayes on the counts, one profile per reference type.

Metrics on the query (``Unknown`` dropped): label accuracy of a logistic regression and of 15-NN fitted on the
reference cells' posterior means (each method denoises its reference the same way), fidelity (mean per-cell
``||m_f - m_1|| / ||m_1||``, ``m_1`` the same method's full-depth posterior mean) and the mean measurement
noise sd. Posterior means are the Tweedie estimate, identical to the default sampler's mean.

Run: ``OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/depth_counts.py``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier

import dice
from dice.likelihood._counts import CountReference, count_measurement, fit_count_reference
from dice.models import DicePrior
from dice.pp._linear import LinearEmbedding

FRACTIONS = (1.0, 0.5, 0.2, 0.1, 0.05)
RESULTS = Path(__file__).parent / "results" / "depth_counts.md"


def lognorm(counts) -> np.ndarray:
    counts = sp.csr_matrix(counts, dtype=np.float64)
    depth = np.maximum(np.asarray(counts.sum(axis=1)).ravel(), 1.0)
    return np.log1p((sp.diags(1e4 / depth) @ counts).toarray())


def fit_embedding(matrix, genes, seed: int) -> LinearEmbedding:
    """Exact PCA (deterministic: ``seed`` is unused since the fit became exact)."""
    return LinearEmbedding.fit(matrix, genes, n_comps=25)


def fast_settings() -> dice.tl.PosteriorSettings:
    """Posterior mean only (one network call): the default sampler's Tweedie mean, without its draws."""
    return dice.tl.PosteriorSettings(n_samples=1, prior_step="tweedie")


def posterior_mean(model, scores, sigma2, seed: int) -> np.ndarray:
    return model.posterior(
        np.asarray(scores, np.float32), np.asarray(sigma2), fast_settings(), seed=seed, progress=False
    ).mean


def lognorm_measurement(emb, counts):
    """Today's gene-weighted Gaussian measurement of log-normalised counts, noise level fitted on the data."""
    std = emb.standardize(lognorm(counts))
    projector, covariance = emb.weighted_projection()
    scores = std @ projector
    residual = std - scores @ emb.loadings.T
    weighted = np.einsum("ij,ij->i", residual / emb.gene_noise_var, residual) / (emb.n_genes - emb.n_comps)
    return scores, np.full(len(scores), max(weighted.mean(), 1e-6) * np.trace(covariance) / emb.n_comps)


def naive_bayes(ref_counts, ref_labels, query_counts) -> np.ndarray:
    types = np.unique(ref_labels)
    profiles = np.stack([np.asarray(ref_counts[ref_labels == t].sum(axis=0)).ravel() + 1.0 for t in types])
    log_p = np.log(profiles / profiles.sum(axis=1, keepdims=True))
    log_prior = np.log(np.array([np.mean(ref_labels == t) for t in types]))
    return types[np.argmax(sp.csr_matrix(query_counts) @ log_p.T + log_prior, axis=1)]


def classify(ref_means, ref_labels, query_means):
    scale = float(ref_means.std())
    logistic = LogisticRegression(max_iter=5000).fit(ref_means / scale, ref_labels)
    knn = KNeighborsClassifier(15).fit(ref_means, ref_labels)
    return logistic.predict(query_means / scale), knn.predict(query_means)


def run_seed(seed: int, fractions) -> list[dict]:
    adata = dice.datasets.load("cbmc_embedded")
    counts, labels = sp.csr_matrix(adata.X), adata.obs["label"].astype(str).to_numpy()
    ref_idx, query_idx = train_test_split(np.arange(len(labels)), test_size=0.2, stratify=labels, random_state=seed)
    ref_counts, query_counts = counts[ref_idx], counts[query_idx].toarray().astype(np.int64)
    ref_labels, query_labels = labels[ref_idx], labels[query_idx]
    keep_ref, keep_query = ref_labels != "Unknown", query_labels != "Unknown"
    emb = fit_embedding(lognorm(ref_counts), adata.var_names, seed)
    latents = emb.project(emb.standardize(lognorm(ref_counts)))
    started = time.time()
    count_ref = fit_count_reference(ref_counts, emb, latents=latents)
    poisson_ref = CountReference(count_ref.gene_scale, np.zeros_like(count_ref.dispersion), count_ref.prior_var)
    ref_meas = {
        "nb": count_measurement(ref_counts, emb, count_ref),
        "poisson": count_measurement(ref_counts, emb, poisson_ref),
    }
    print(f"seed {seed}: count reference {time.time() - started:.1f} s", flush=True)
    priors = {
        name: DicePrior.fit(emb, lat, seed=seed, progress=False)
        for name, lat in (("std", latents), ("nb", ref_meas["nb"].scores), ("poisson", ref_meas["poisson"].scores))
    }
    rng = np.random.default_rng([seed, 1])
    thinned = {f: query_counts if f == 1 else rng.binomial(query_counts, f) for f in fractions}

    def measure(method, cts):
        if method == "lognorm":
            return lognorm_measurement(emb, cts)
        ref = poisson_ref if method == "counts/poisson" else count_ref
        level = {"counts/prec": "mean_precision", "counts/matched": "matched"}.get(method, "mean_var")
        meas = count_measurement(cts, emb, ref, level=level)
        return meas.scores, meas.noise_var

    prior_of = {
        "lognorm": "std",
        "counts/std": "std",
        "counts": "nb",
        "counts/prec": "nb",
        "counts/matched": "nb",
        "counts/poisson": "poisson",
    }
    rows = []
    for method, prior in prior_of.items():
        model = priors[prior]
        ref_means = posterior_mean(model, *measure(method, ref_counts), seed)
        full = None
        for f, cts in thinned.items():
            started = time.time()
            scores, sigma2 = measure(method, cts)
            means = posterior_mean(model, scores, sigma2, seed)
            full = means if full is None else full
            logistic, knn = classify(ref_means[keep_ref], ref_labels[keep_ref], means[keep_query])
            truth = query_labels[keep_query]
            rows.append(
                {
                    "seed": seed,
                    "f": f,
                    "method": method,
                    "umis": float(cts.sum(axis=1).mean()),
                    "logistic": float(np.mean(logistic == truth)),
                    "knn": float(np.mean(knn == truth)),
                    "rel_error": float(np.mean(np.linalg.norm(means - full, axis=1) / np.linalg.norm(full, axis=1))),
                    "noise_sd": float(np.mean(np.sqrt(sigma2))),
                    "seconds": time.time() - started,
                }
            )
    for f, cts in thinned.items():
        predicted = naive_bayes(ref_counts[keep_ref], ref_labels[keep_ref], cts[keep_query])
        acc = float(np.mean(predicted == query_labels[keep_query]))
        rows.append(
            {
                "seed": seed,
                "f": f,
                "method": "naive_bayes",
                "umis": float(cts.sum(axis=1).mean()),
                "logistic": acc,
                "knn": np.nan,
                "rel_error": np.nan,
                "noise_sd": np.nan,
                "seconds": np.nan,
            }
        )
    return rows


def report(frame: pd.DataFrame) -> str:
    def cell(values):
        values = values.dropna()
        return "" if values.empty else f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0:.3f}"

    order = ["lognorm", "counts/std", "counts", "counts/poisson", "counts/prec", "counts/matched", "naive_bayes"]
    lines = [
        "| f | UMIs | method | logistic acc | kNN acc | rel. error to f=1 | noise sd |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in sorted(frame.f.unique(), reverse=True):
        for method in order:
            sub = frame[(frame.f == f) & (frame.method == method)]
            if sub.empty:
                continue
            lines.append(
                f"| {f} | {sub.umis.mean():.0f} | {method} | {cell(sub.logistic)} | {cell(sub.knn)} | "
                f"{cell(sub.rel_error)} | {cell(sub.noise_sd)} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for seed in args.seeds:
        rows += run_seed(seed, FRACTIONS)
        print(report(pd.DataFrame(rows)), flush=True)
    frame = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out.with_suffix(".csv"), index=False)
    header = (
        f"# Shallow CBMC queries: count measurement vs log-normalised measurement\n\n"
        f"`benchmarks/depth_counts.py`, seeds {args.seeds} (mean ± sd over seeds); 80/20 stratified split, "
        "query counts binomially thinned to f; 12 cell types (`Unknown` dropped), k = 25.\n\n"
    )
    args.out.write_text(header + report(frame) + "\n")


if __name__ == "__main__":
    main()
