"""Uncertainty and the coupling strength rho (paper appendix E), measured against the exact posterior.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \
        .venv/bin/python benchmarks/uncertainty_rho.py [--parts spread,coverage,e2] [--seed 0] [--quick]
        [--coverage-cells N] [--coverage-samples S] [--coverage-settings 0,1,...]

Each part writes its CSV (``results/synthetic_uncertainty_{part}.csv``); ``results/synthetic_uncertainty.md``
renders every part CSV present.

Three experiments (rho is always the package's *relative* rho, in units of the noise sd sigma; the absolute
value in latent units is ``rho * sigma`` and is printed beside it):

``spread`` (appendix E.1)
    Setup 1 prior. Fixed inputs pushed through the true model without noise: the Cluster 2 centre
    (``x = V 0``) and the midpoint of the two centres (``x = V 0.5 1``). For each rho, 500 chains of the
    Gibbs sampler (10 strided prior steps, constant rho, 50 iterations) and of the direct sampler, with
    sigma^2 fixed to the reference's estimate (``noise_var="reference"``; a single noiseless cell has no
    residual to estimate it from). Reported: the spread of the samples (root mean over the 15 dimensions of
    the across-sample variance, latent units), the spread of the exact posterior at the noise variance the
    sampler targets (raw noise variance x (1 + rho^2)), their ratio, and the fraction of samples whose
    Bayes-classified component is Cluster 2.
``coverage``
    Setup 1 query (400 cells, or the first ``--coverage-cells``). Each setting draws 100 samples per
    cell; the credible region of nominal mass ``level`` is the Mahalanobis ellipsoid with centre and
    covariance from the even-numbered samples and squared radius the ``level`` quantile of the
    odd-numbered samples' distances (held out, so the radius is not biased low). Coverage = fraction of
    cells whose clean latent (embedding coordinates) falls inside; ``cov90_draw`` uses one exact-posterior
    draw per cell instead (same expectation). The same construction on exact-posterior samples is the
    control (it shows the construction's own small bias). ``spread_ratio``: median over cells of DICE
    sample sd / exact posterior sd (root mean over dims); ``mean_shift``: root mean square over cells and
    dims of (DICE mean - exact mean) / exact sd.
``e2`` (appendix E.2)
    Five training clusters (8000 reference cells, 200 genes), query of 1000 cells: ``e2_novel`` (half the
    cells from an unseen sixth cluster) and ``e2_single`` (all cells from training cluster 1). For each rho
    the Gibbs sampler (10 strided prior steps, constant rho, 20 iterations, 5 chains); also the default
    preset. A point is *in training cluster j* when its squared Mahalanobis distance to the centre of the
    reference cells of cluster j (pooled within-cluster covariance of the reference PCA scores) is at most
    the 99th percentile of the reference cells' own distances (calibrated on the reference). Reported for
    posterior means and for individual samples.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic import _early_threads

_THREADS = _early_threads(sys.argv) if __name__ == "__main__" else 1

import argparse  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from typing import Any  # noqa: E402

import anndata as ad  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from synthetic import RESULTS, embedding_map_kwargs, posterior_settings, quiet_denoise, set_threads  # noqa: E402
from synthetic import train as train_prior  # noqa: E402

SPREAD_RHOS = (0.1, 0.5, 1.0, 5.0, 10.0, 20.0)
E2_RHOS = (0.5, 1.0, 2.0, 4.0, 8.0, 20.0, 50.0)

#: Coverage settings: name -> (base settings, changed fields) of ``dice.tl.PosteriorSettings`` (n_samples is
#: set by the experiment). The Gibbs rows spell out the sampler that was the default until Nov 25
#: (BENCHMARKS.md), so they keep their meaning now that the default is the direct sampler.
_OLD_GIBBS: dict[str, Any] = {
    "sampler": "gibbs",
    "prior_step": "strided",
    "n_prior_steps": 10,
    "rho": 5.0,
    "rho_end": 0.5,
    "rho_schedule": "linear",
    "n_iter": 20,
    "mean_estimate": "samples",
}

COVERAGE_SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "default (Gibbs strided, rho 5→0.5 linear, 20 it)": ("default", _OLD_GIBBS),
    "Gibbs strided, rho 5→0.1 linear, 20 it": ("default", {**_OLD_GIBBS, "rho_end": 0.1}),
    "Gibbs strided, rho 5→0.1 linear, 50 it": ("default", {**_OLD_GIBBS, "rho_end": 0.1, "n_iter": 50}),
    "Gibbs ancestral, rho 5→0.5 linear, 20 it": ("default", {**_OLD_GIBBS, "prior_step": "ancestral"}),
    "direct, rho 0 (strided 10)": ("default", {**_OLD_GIBBS, "sampler": "direct", "rho": 0.0}),
    "direct, rho 0.5 (strided 10)": ("default", {**_OLD_GIBBS, "sampler": "direct", "rho": 0.5}),
    "paper synthetic (sigma²=1, rho 20 const, ancestral, 1 it)": (
        "paper",
        {"rho": 20.0, "rho_schedule": "constant", "n_iter": 1},
    ),
    "current default (direct, ancestral draws, Tweedie mean)": ("default", {}),
    # index 8: the default before the gene-weighted likelihood (Nov 25, 06:40); index 7 is gene-weighted since
    "current default, isotropic likelihood": ("default", {"likelihood": "isotropic"}),
}


def _train(ref: ad.AnnData, seed: int, n_steps: int):
    """The Setup prior (k = 15, ``n_steps`` gradient updates, batches of 512) and its training time."""
    started = time.perf_counter()
    model = train_prior(ref, seed=seed, n_updates=n_steps)
    return model, time.perf_counter() - started


def _rms_sd(samples: np.ndarray) -> np.ndarray:
    """Root mean over dimensions of the across-sample variance; ``samples`` is cells x samples x k."""
    return np.sqrt(samples.var(axis=1, ddof=1).mean(axis=-1))


def _component_log_density(points: np.ndarray, means: np.ndarray, covs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``log w_j N(point; mean_j, cov_j)`` for points (..., k) and components j: (..., K)."""
    out = []
    for mean, cov, weight in zip(means, covs, weights):
        chol = np.linalg.cholesky(cov)
        solved = np.linalg.solve(chol, (points - mean).reshape(-1, len(mean)).T).T
        logdet = 2 * np.log(np.diag(chol)).sum()
        out.append(np.log(weight) - 0.5 * (solved**2).sum(-1) - 0.5 * logdet)
    return np.stack(out, axis=-1).reshape(*points.shape[:-1], len(means))


# ---------------------------------------------------------------------------------------------- spread
def spread_vs_rho(
    seed: int = 0,
    *,
    rhos: Sequence[float] = SPREAD_RHOS,
    n_samples: int = 500,
    n_iter: int = 50,
    sizes: dict[str, int] | None = None,
    n_steps: int = 4000,
    model=None,
) -> pd.DataFrame:
    """Appendix E.1: the spread of repeated runs on a fixed input as rho grows (see the module docstring)."""
    import dice

    ref, _ = dice.datasets.synthetic("1", seed=seed, **(sizes or {}))
    if model is None:
        model, _ = _train(ref, seed, n_steps)
    info = ref.uns["synthetic"]
    true_loadings = np.asarray(info["loadings"])
    means = np.asarray(info["means"])  # component 0: Cluster 1 (centre 1), component 1: Cluster 2 (centre 0)
    inputs = {"cluster 2 centre": means[1], "midpoint of centres": 0.5 * (means[0] + means[1])}
    mapping = embedding_map_kwargs(ref, model)
    A, b = dice.datasets.embedding_affine_map(**mapping)
    comp_means = means @ A.T + b
    comp_covs = np.einsum("ak,jkl,bl->jab", A, np.asarray(info["covariances"]), A)
    weights = np.asarray(info["weights"])
    sigma = float(np.sqrt(model.embedding.noise_var))
    params = dice.datasets.posterior_parameters(ref)
    rows = []
    for input_name, latent in inputs.items():
        x = (true_loadings @ latent)[None, :].astype(np.float32)
        # two identical rows (denoise needs at least two cells); their chains are pooled
        cell = ad.AnnData(X=np.repeat(x, 2, axis=0), var=pd.DataFrame(index=ref.var_names))
        cell.obs_names = ["input_a", "input_b"]
        for sampler in ("gibbs", "direct"):
            for rho in rhos:
                changes: dict[str, Any] = {
                    "sampler": sampler,
                    "rho": rho,
                    "n_samples": n_samples // 2,
                    "noise_var": "reference",
                }
                if sampler == "gibbs":
                    changes.update(rho_schedule="constant", n_iter=n_iter)
                seconds, clamped = quiet_denoise(
                    cell, model, posterior_settings(**changes), store_samples=True, seed=seed
                )
                samples = np.asarray(cell.obsm["X_dice_samples"], dtype=np.float64)
                samples = samples.reshape(1, -1, samples.shape[-1])
                start = np.asarray(cell.obsm["X_dice_pca"], dtype=np.float64)[0]
                exact_mean, exact_cov, _ = dice.datasets.exact_posterior(
                    x, **{**params, "noise_var": params["noise_var"] * (1 + rho**2)}
                )
                mean_e, cov_e = dice.datasets.to_embedding_coords(exact_mean, exact_cov, **mapping)
                exact_sd = float(np.sqrt(np.trace(cov_e[0]) / cov_e.shape[-1]))
                dice_sd = float(_rms_sd(samples)[0])
                component = _component_log_density(samples[0], comp_means, comp_covs, weights).argmax(-1)
                rows.append(
                    {
                        "input": input_name,
                        "sampler": sampler,
                        "rho": rho,
                        "rho_abs": rho * sigma,
                        "rho_network_units": rho * sigma / model.latent_scale,
                        "dice_sd": dice_sd,
                        "exact_sd": exact_sd,
                        "sd_ratio": dice_sd / exact_sd,
                        "dist_mean_to_input": float(np.linalg.norm(samples[0].mean(0) - start)),
                        "dist_exact_mean_to_input": float(np.linalg.norm(mean_e[0] - start)),
                        "frac_cluster2": float(np.mean(component == 1)),
                        "seconds": seconds,
                        "n_clamped": clamped,
                    }
                )
                print(rows[-1], flush=True)
    return pd.DataFrame(rows)


# -------------------------------------------------------------------------------------------- coverage
def region_coverage(samples: np.ndarray, targets: np.ndarray, levels: Sequence[float]) -> dict[float, float]:
    """Coverage of sample-based Mahalanobis credible regions.

    Parameters
    ----------
    samples
        Cells x samples x k. Even-numbered samples give each cell's centre and covariance, odd-numbered
        ones the squared-radius quantile (held out).
    targets
        Cells x k points to test (true latents, or one exact-posterior draw per cell).
    levels
        Nominal masses, e.g. ``(0.5, 0.9)``.

    Returns
    -------
    ``{level: fraction of cells whose target lies inside}``.
    """
    shape, radius = samples[:, ::2], samples[:, 1::2]
    centre = shape.mean(1)
    centred = shape - centre[:, None]
    cov = np.einsum("nsk,nsl->nkl", centred, centred) / (shape.shape[1] - 1)
    precision = np.linalg.inv(cov)
    radius_d = np.einsum("nsk,nkl,nsl->ns", radius - centre[:, None], precision, radius - centre[:, None])
    target_d = np.einsum("nk,nkl,nl->n", targets - centre, precision, targets - centre)
    return {level: float(np.mean(target_d <= np.quantile(radius_d, level, axis=1))) for level in levels}


def coverage_study(
    seed: int = 0,
    *,
    settings: dict[str, tuple[str, dict[str, Any]]] | None = None,
    n_samples: int = 100,
    n_cells: int | None = None,
    sizes: dict[str, int] | None = None,
    n_steps: int = 4000,
    model=None,
) -> pd.DataFrame:
    """Credible-region coverage and spread of DICE samples against the exact posterior (Setup 1).

    ``n_cells`` keeps the first cells of the query only (cost); ``None`` keeps all.
    """
    import dice

    settings = COVERAGE_SETTINGS if settings is None else settings
    ref, query = dice.datasets.synthetic("1", seed=seed, **(sizes or {}))
    if n_cells is not None:
        query = query[:n_cells].copy()
    if model is None:
        model, _ = _train(ref, seed, n_steps)
    mapping = embedding_map_kwargs(query, model)
    params = dice.datasets.posterior_parameters(query)
    clean = dice.datasets.latents_to_embedding_coords(query.obsm["X_true_latent"], **mapping)
    mean, cov, _ = dice.datasets.exact_posterior(query.X, **params)
    exact_mean, exact_cov = dice.datasets.to_embedding_coords(mean, cov, **mapping)
    exact_sd = np.sqrt(np.trace(exact_cov, axis1=1, axis2=2) / exact_cov.shape[-1])
    draws = dice.datasets.sample_exact_posterior(query.X, **params, n_samples=n_samples + 1, seed=seed + 7)
    draws = dice.datasets.latents_to_embedding_coords(draws, **mapping)  # (S + 1) x cells x k
    one_draw, exact_samples = draws[0], np.transpose(draws[1:], (1, 0, 2))
    bayes_mse = dice.metrics.latent_error(exact_mean, clean)

    def summarise(name: str, samples: np.ndarray, seconds: float, clamped: int) -> dict[str, Any]:
        cov_truth = region_coverage(samples, clean, (0.5, 0.9))
        cov_draw = region_coverage(samples, one_draw, (0.5, 0.9))
        sample_mean = samples.mean(1)
        return {
            "setting": name,
            "cov50": cov_truth[0.5],
            "cov90": cov_truth[0.9],
            "cov50_draw": cov_draw[0.5],
            "cov90_draw": cov_draw[0.9],
            "spread_ratio": float(np.median(_rms_sd(samples) / exact_sd)),
            "mean_shift": float(np.sqrt(np.mean(((sample_mean - exact_mean) / exact_sd[:, None]) ** 2))),
            "mse": dice.metrics.latent_error(sample_mean, clean),
            "bayes_mse": bayes_mse,
            "seconds": seconds,
            "n_clamped": clamped,
            "n_samples": samples.shape[1],
        }

    rows = [summarise("exact posterior samples (control)", exact_samples, 0.0, 0)]
    print(rows[-1], flush=True)
    for name, (base, changes) in settings.items():
        seconds, clamped = quiet_denoise(
            query, model, posterior_settings(base, **changes, n_samples=n_samples), store_samples=True, seed=seed
        )
        rows.append(summarise(name, np.asarray(query.obsm["X_dice_samples"], np.float64), seconds, clamped))
        rows[-1]["sigma"] = float(np.sqrt(query.uns["dice"]["noise_var_mean"]))
        print(rows[-1], flush=True)
    frame = pd.DataFrame(rows)
    frame["exact_sd_median"] = float(np.median(exact_sd))
    return frame


# -------------------------------------------------------------------------------------------------- E.2
def training_clusters(ref: ad.AnnData, model, *, quantile: float = 0.99) -> dict[str, Any]:
    """Centres, pooled within-cluster precision and Mahalanobis threshold of the reference clusters."""
    scores = model.embedding.project(model.embedding.standardize(np.asarray(ref.X, dtype=np.float64)))
    labels = ref.obs["label"].to_numpy().astype(str)
    names = sorted(set(labels))
    centres = np.stack([scores[labels == n].mean(0) for n in names])
    residual = scores - centres[np.searchsorted(names, labels)]
    precision = np.linalg.inv(np.cov(residual.T))
    own = np.einsum("nk,kl,nl->n", residual, precision, residual)
    return {"names": names, "centres": centres, "precision": precision, "threshold": float(np.quantile(own, quantile))}


def assign(points: np.ndarray, clusters: dict[str, Any]) -> np.ndarray:
    """Name of the training cluster each point (..., k) lies in, or ``"none"``."""
    diff = points[..., None, :] - clusters["centres"]
    d2 = np.einsum("...jk,kl,...jl->...j", diff, clusters["precision"], diff)
    nearest = d2.argmin(-1)
    inside = np.take_along_axis(d2, nearest[..., None], -1)[..., 0] <= clusters["threshold"]
    return np.where(inside, np.asarray(clusters["names"])[nearest], "none")


def e2_study(
    seed: int = 0,
    *,
    rhos: Sequence[float] = E2_RHOS,
    n_query: int = 1000,
    n_iter: int = 20,
    n_samples: int = 5,
    sizes: dict[str, int] | None = None,
    n_steps: int = 4000,
) -> pd.DataFrame:
    """Appendix E.2: where query cells land (training cluster or not) as a function of rho."""
    import dice

    sizes = dict(sizes or {})
    sizes.setdefault("n_query", n_query)
    ref, novel = dice.datasets.synthetic("e2_novel", seed=seed, **sizes)
    _, single = dice.datasets.synthetic("e2_single", seed=seed, query_cluster=1, **sizes)
    model, train_seconds = _train(ref, seed, n_steps)
    clusters = training_clusters(ref, model)
    print(
        f"E.2 prior trained in {train_seconds:.0f} s; Mahalanobis^2 threshold {clusters['threshold']:.1f}", flush=True
    )
    # name -> changes to the default PosteriorSettings (None: the undenoised projection)
    runs: list[tuple[str, dict[str, Any] | None]] = [("PCA (no denoising)", None)]
    runs += [
        (f"Gibbs rho={rho:g}", {"sampler": "gibbs", "rho": rho, "rho_schedule": "constant", "n_iter": n_iter})
        for rho in rhos
    ]
    runs.append(("default preset (direct, rho 0)", {}))
    rows = []
    for experiment, query in (("e2_novel", novel), ("e2_single", single)):
        novel_mask = query.obs["novel"].to_numpy() if experiment == "e2_novel" else None
        source = "cluster_1"
        for name, changes in runs:
            if changes is not None:
                seconds, clamped = quiet_denoise(
                    query, model, posterior_settings(**changes, n_samples=n_samples), store_samples=True, seed=seed
                )
                means = np.asarray(query.obsm["X_dice"], np.float64)
                samples = np.asarray(query.obsm["X_dice_samples"], np.float64)
                sigma = float(np.sqrt(query.uns["dice"]["noise_var_mean"]))
            else:
                quiet_denoise(query, model, posterior_settings(n_iter=1, n_samples=1), seed=seed)
                means = np.asarray(query.obsm["X_dice_pca"], np.float64)
                samples, seconds, clamped = means[:, None], 0.0, 0
                sigma = float(np.sqrt(query.uns["dice"]["noise_var_mean"]))
            where_mean, where_samples = assign(means, clusters), assign(samples, clusters)
            rho = (changes or {}).get("rho", float("nan"))
            row: dict[str, Any] = {
                "experiment": experiment,
                "run": name,
                "rho": rho,
                "rho_abs": rho * sigma,
                "sigma": sigma,
                "seconds": seconds,
                "n_clamped": clamped,
            }
            if experiment == "e2_novel":
                for group, mask in (("novel", novel_mask), ("known", ~novel_mask)):
                    row[f"{group}_mean_in_training"] = float(np.mean(where_mean[mask] != "none"))
                    row[f"{group}_sample_in_training"] = float(np.mean(where_samples[mask] != "none"))
                truth = query.obs["label"].to_numpy().astype(str)
                own = where_mean[~novel_mask] == truth[~novel_mask]
                row["known_mean_in_own_cluster"] = float(np.mean(own))
            else:
                row["mean_in_source"] = float(np.mean(where_mean == source))
                row["mean_in_other"] = float(np.mean((where_mean != source) & (where_mean != "none")))
                row["mean_outside"] = float(np.mean(where_mean == "none"))
                row["sample_in_source"] = float(np.mean(where_samples == source))
                row["sample_in_other"] = float(np.mean((where_samples != source) & (where_samples != "none")))
            rows.append(row)
            print(row, flush=True)
    frame = pd.DataFrame(rows)
    frame["threshold"] = clusters["threshold"]
    frame["latent_scale"] = model.latent_scale
    return frame


# ------------------------------------------------------------------------------------------------- main
def _markdown(frame: pd.DataFrame, columns: Sequence[str], digits: int = 3) -> str:
    head = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---" if frame[c].dtype == object else "---:" for c in columns) + "|"
    lines = [head, rule]
    for _, row in frame.iterrows():
        cells = []
        for c in columns:
            value = row[c]
            cells.append(f"{value:.{digits}f}" if isinstance(value, float) else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="spread,coverage,e2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for testing")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tag", default="")
    parser.add_argument("--coverage-cells", type=int, default=None, help="first query cells only (cost)")
    parser.add_argument("--coverage-samples", type=int, default=100)
    parser.add_argument("--coverage-settings", default="", help="indices into COVERAGE_SETTINGS (default: all)")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = args.tag or ("_quick" if args.quick else "")
    parts = [p for p in args.parts.split(",") if p]
    quick = args.quick
    two_cluster = {"n_reference": 120, "n_query": 40, "n_genes": 80} if quick else None
    n_steps = 30 if quick else 4000
    timings: dict[str, float] = {}
    model = None
    if "spread" in parts or "coverage" in parts:
        import dice

        ref, _ = dice.datasets.synthetic("1", seed=args.seed, **(two_cluster or {}))
        model, timings["train (Setup 1 prior)"] = _train(ref, args.seed, n_steps)
    if "spread" in parts:
        started = time.perf_counter()
        frame = spread_vs_rho(
            args.seed, sizes=two_cluster, model=model, n_samples=40 if quick else 500, n_iter=3 if quick else 50
        )
        frame.to_csv(out / f"synthetic_uncertainty_spread{tag}.csv", index=False)
        timings["spread"] = time.perf_counter() - started
    if "coverage" in parts:
        started = time.perf_counter()
        settings = None
        if args.coverage_settings:
            names = list(COVERAGE_SETTINGS)
            settings = {names[int(i)]: COVERAGE_SETTINGS[names[int(i)]] for i in args.coverage_settings.split(",")}
        frame = coverage_study(
            args.seed,
            sizes=two_cluster,
            model=model,
            settings=settings,
            n_samples=40 if quick else args.coverage_samples,
            n_cells=args.coverage_cells,
        )
        frame.to_csv(out / f"synthetic_uncertainty_coverage{tag}.csv", index=False)
        timings["coverage"] = time.perf_counter() - started
    if "e2" in parts:
        started = time.perf_counter()
        e2_sizes = {"n_reference": 200, "n_query": 60, "n_genes": 60} if quick else None
        frame = e2_study(args.seed, sizes=e2_sizes, n_steps=n_steps, n_iter=2 if quick else 20)
        frame.to_csv(out / f"synthetic_uncertainty_e2{tag}.csv", index=False)
        timings["e2"] = time.perf_counter() - started
    text = render_markdown(out, tag)
    text += "\nWall times of this run: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
    text += f" ({_THREADS} thread(s)).\n"
    (out / f"synthetic_uncertainty{tag}.md").write_text(text)
    print(text)


def render_markdown(out: Path, tag: str = "") -> str:
    """Markdown tables from whichever part CSVs exist in ``out``."""
    text = ["### Uncertainty and rho", ""]
    spread = out / f"synthetic_uncertainty_spread{tag}.csv"
    if spread.exists():
        frame = pd.read_csv(spread)
        text += [
            "#### E.1 spread of repeated runs on a fixed input",
            "",
            _markdown(
                frame,
                [
                    "input",
                    "sampler",
                    "rho",
                    "rho_abs",
                    "rho_network_units",
                    "dice_sd",
                    "exact_sd",
                    "sd_ratio",
                    "dist_mean_to_input",
                    "dist_exact_mean_to_input",
                    "frac_cluster2",
                    "seconds",
                ],
            ),
            "",
        ]
    coverage = out / f"synthetic_uncertainty_coverage{tag}.csv"
    if coverage.exists():
        frame = pd.read_csv(coverage)
        text += [
            "#### Credible-region coverage on Setup 1 (nominal 0.5 and 0.9)",
            "",
            _markdown(
                frame,
                [
                    "setting",
                    "cov50",
                    "cov90",
                    "cov50_draw",
                    "cov90_draw",
                    "spread_ratio",
                    "mean_shift",
                    "mse",
                    "bayes_mse",
                    "seconds",
                    "n_clamped",
                ],
            ),
            "",
        ]
    e2 = out / f"synthetic_uncertainty_e2{tag}.csv"
    if e2.exists():
        frame = pd.read_csv(e2)
        novel = frame[frame["experiment"] == "e2_novel"]
        single = frame[frame["experiment"] == "e2_single"]
        text += [
            "#### E.2 novel cluster (half the query cells from an unseen cluster)",
            "",
            _markdown(
                novel,
                [
                    "run",
                    "rho",
                    "rho_abs",
                    "novel_mean_in_training",
                    "novel_sample_in_training",
                    "known_mean_in_training",
                    "known_mean_in_own_cluster",
                    "seconds",
                ],
            ),
            "",
            "#### E.2 single cluster (every query cell from training cluster 1)",
            "",
            _markdown(
                single,
                [
                    "run",
                    "rho",
                    "rho_abs",
                    "mean_in_source",
                    "mean_in_other",
                    "mean_outside",
                    "sample_in_source",
                    "sample_in_other",
                    "seconds",
                ],
            ),
            "",
        ]
    return "\n".join(text)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")
    main()
