"""Uncertainty without sampling (issue 12): second-order Tweedie ("jacobian") against posterior draws.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \
        .venv/bin/python benchmarks/uncertainty_cost.py [--parts coverage,cost] [--seeds 0,1,2,3,4]
        [--threads 1] [--n-cells 10000] [--quick]

``coverage`` (Setup 1, per seed; the prior, data and exact posterior of ``uncertainty_rho.coverage_study``)
    Rows, all at the posterior the draws target (the measurement's noise level, rho 0):

    - ``samples, 100 draws``: the BENCHMARKS.md section 3 construction (:func:`uncertainty_rho.region_coverage`:
      ellipsoid from the even draws, radius from the odd ones);
    - ``jacobian full covariance``: the Gaussian region ``N(Tweedie mean, Cov)`` with ``Cov`` the full
      second-order Tweedie covariance (``2 k`` network calls per cell) and the chi-square radius;
    - ``exact moments (control)``: the same Gaussian region from the exact posterior mean and covariance (what
      a Gaussian region can do on this mixture posterior);
    - the reported per-cell spread for ``samples, 10 draws`` (the old default), ``jacobian, n_probes=P``
      (P = 1, 2, 4, 8) and ``n_probes=k`` (exact trace): ``spread_ratio`` = median over cells of spread / exact
      posterior sd (root mean over dims), its 10-90 % range, the rank correlation with the exact sd, and the
      coverage of the ball ``|target - mean|^2 <= spread^2 chi2_k(level)`` that uses the scalar spread alone
      (with the exact mean and sd as its control).

    Targets are the clean latents (``cov50``/``cov90``) and one exact-posterior draw per cell (``_draw``).
``cost`` (the ``benchmarks/speed.py`` data: CBMC through the paper's recipe, 10,000 reference and query cells)
    One prior (k = 25), then wall time of ``dice.tl.denoise`` for ``uncertainty="samples"`` (10 ancestral
    draws), ``"jacobian"`` with P probes and ``"none"`` (Tweedie mean only), and the agreement of the
    jacobian spread with the spread of 10 and of 100 draws (first 1,000 cells).

Writes ``results/uncertainty_cost_{coverage,cost}.csv`` and ``results/uncertainty_cost.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic import _early_threads

_THREADS = _early_threads(sys.argv) if __name__ == "__main__" else 1

import argparse  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from synthetic import RESULTS, embedding_map_kwargs, posterior_settings, quiet_denoise, set_threads  # noqa: E402
from uncertainty_rho import _rms_sd, _train, region_coverage  # noqa: E402

LEVELS = (0.5, 0.9)
PROBES = (1, 2, 4, 8)


def gaussian_coverage(mean: np.ndarray, cov: np.ndarray, targets: np.ndarray) -> dict[float, float]:
    """Coverage of the Gaussian regions ``(t - mean)^T cov^-1 (t - mean) <= chi2_k(level)`` (cells x k x k)."""
    from scipy.stats import chi2

    diff = targets - mean
    d2 = np.einsum("nk,nk->n", diff, np.linalg.solve(cov, diff[..., None])[..., 0])
    return {level: float(np.mean(d2 <= chi2.ppf(level, mean.shape[1]))) for level in LEVELS}


def ball_coverage(mean: np.ndarray, spread: np.ndarray, targets: np.ndarray) -> dict[float, float]:
    """Coverage of the balls ``|t - mean|^2 <= spread^2 chi2_k(level)``: the scalar spread as the only scale."""
    from scipy.stats import chi2

    d2 = ((targets - mean) ** 2).sum(1) / spread**2
    return {level: float(np.mean(d2 <= chi2.ppf(level, mean.shape[1]))) for level in LEVELS}


def _measure(query, model, settings):
    """Latent measurements (scores, per-cell noise variances) exactly as ``denoise`` forms them."""
    from dice.tl._latent import measure_adata

    measurement = measure_adata(model, query, settings).measurement()
    return np.asarray(measurement.scores, np.float32), np.asarray(measurement.noise_var, np.float64)


def full_jacobian_covariance(model, scores: np.ndarray, sigma2: np.ndarray, rho: float = 0.0) -> np.ndarray:
    """Full second-order Tweedie covariance in latent units (cells x k x k), at the draws' target level."""
    import torch

    from dice.models._covariance import jacobian_covariance
    from dice.models._posterior import _direct_level

    scale = model.latent_scale
    z = torch.as_tensor(scores / scale)
    level = _direct_level(torch.as_tensor(sigma2, dtype=torch.float32)[:, None], rho, scale)
    model.network.eval()
    return jacobian_covariance(model.network, model.schedule, z, level).double().numpy() * scale**2


def coverage_seed(
    seed: int, *, n_steps: int, n_draws: int, sizes: dict[str, int] | None, rhos: Sequence[float] = (0.0,)
) -> list[dict[str, Any]]:
    from scipy.stats import spearmanr

    import dice

    ref, query = dice.datasets.synthetic("1", seed=seed, **(sizes or {}))
    model, train_seconds = _train(ref, seed, n_steps)
    mapping = embedding_map_kwargs(query, model)
    params = dice.datasets.posterior_parameters(query)
    clean = dice.datasets.latents_to_embedding_coords(query.obsm["X_true_latent"], **mapping)
    k = clean.shape[1]
    rows: list[dict[str, Any]] = []
    for rho in rhos:
        # the exact posterior the draws target: noise variance sigma^2 (1 + rho^2)
        target_params = {**params, "noise_var": params["noise_var"] * (1 + rho**2)}
        mean, cov, _ = dice.datasets.exact_posterior(query.X, **target_params)
        exact_mean, exact_cov = dice.datasets.to_embedding_coords(mean, cov, **mapping)
        exact_sd = np.sqrt(np.trace(exact_cov, axis1=1, axis2=2) / k)
        one_draw = dice.datasets.latents_to_embedding_coords(
            dice.datasets.sample_exact_posterior(query.X, **target_params, n_samples=1, seed=seed + 7)[0], **mapping
        )
        # clean latents are a valid target of the Bayesian posterior only (rho = 0)
        targets = {"": clean, "_draw": one_draw} if rho == 0 else {"_draw": one_draw}
        base = {"seed": seed, "rho": rho, "n_cells": query.n_obs, "exact_sd_median": float(np.median(exact_sd))}

        def add(name, regions, spread=None, seconds=np.nan, base=base, exact_sd=exact_sd, **extra) -> None:
            row = {**base, "row": name, "seconds": seconds, **extra}
            for suffix, cover in regions.items():
                row[f"cov50{suffix}"], row[f"cov90{suffix}"] = cover[0.5], cover[0.9]
            if spread is not None:
                ratio = spread / exact_sd
                row.update(
                    spread_ratio=float(np.median(ratio)),
                    spread_ratio_p10=float(np.quantile(ratio, 0.1)),
                    spread_ratio_p90=float(np.quantile(ratio, 0.9)),
                    spread_rank_corr=float(spearmanr(spread, exact_sd)[0]),
                )
            rows.append(row)
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)

        add(
            "exact moments, Gaussian region (control)",
            {s: gaussian_coverage(exact_mean, exact_cov, t) for s, t in targets.items()},
        )
        add(
            "exact mean and sd, ball (control)",
            {f"_ball{s}": ball_coverage(exact_mean, exact_sd, t) for s, t in targets.items()},
            spread=exact_sd,
        )
        # draws: the section 3 construction; the first 10 draws give the old default's reported spread
        seconds, _ = quiet_denoise(
            query,
            model,
            posterior_settings(rho=rho, uncertainty="samples", n_samples=n_draws),
            store_samples=True,
            seed=seed,
        )
        samples = np.asarray(query.obsm["X_dice_samples"], np.float64)
        tweedie_mean = np.asarray(query.obsm["X_dice"], np.float64)
        add(
            f"samples, {n_draws} draws",
            {s: region_coverage(samples, t, LEVELS) for s, t in targets.items()},
            spread=_rms_sd(samples),
            seconds=seconds,
        )
        ten = _rms_sd(samples[:, :10])
        add(
            "samples, 10 draws (old default)",
            {f"_ball{s}": ball_coverage(tweedie_mean, ten, t) for s, t in targets.items()},
            spread=ten,
        )
        started = time.perf_counter()
        scores, sigma2 = _measure(query, model, posterior_settings())
        jac_cov = full_jacobian_covariance(model, scores, sigma2, rho)
        add(
            "jacobian full covariance, Gaussian region",
            {s: gaussian_coverage(tweedie_mean, jac_cov, t) for s, t in targets.items()},
            spread=np.sqrt(np.trace(jac_cov, axis1=1, axis2=2) / k),
            seconds=time.perf_counter() - started,
        )
        for n_probes in (*PROBES, k):
            settings = posterior_settings(rho=rho, uncertainty="jacobian", n_probes=n_probes)
            seconds, _ = quiet_denoise(query, model, settings, seed=seed)
            spread = np.asarray(query.obs["dice_uncertainty"], np.float64)
            name = f"jacobian, n_probes={n_probes}" + (" (exact trace)" if n_probes == k else "")
            add(
                name,
                {f"_ball{s}": ball_coverage(tweedie_mean, spread, t) for s, t in targets.items()},
                spread=spread,
                seconds=seconds,
                n_probes=n_probes,
            )
    rows[0]["train_seconds"] = train_seconds
    return rows


def cost_study(n_cells: int, *, seed: int = 0, n_agree: int = 1000) -> list[dict[str, Any]]:
    """Wall time of denoise per uncertainty setting on the speed benchmark's data; agreement of the spreads."""
    import dice

    adata = dice.pp.recipe_paper(dice.datasets.cbmc(), copy=True)
    rng = np.random.default_rng(0)  # the draws of benchmarks/speed.py
    reference = adata[rng.integers(0, adata.n_obs, n_cells)].copy()
    query = adata[rng.integers(0, adata.n_obs, n_cells)].copy()
    reference.obs_names_make_unique()
    query.obs_names_make_unique()
    started = time.perf_counter()
    model = dice.tl.train_prior(reference, n_comps=25, seed=seed, progress=False)
    rows: list[dict[str, Any]] = [{"row": "train_prior", "seconds": time.perf_counter() - started}]
    print(rows[-1], flush=True)
    spreads = {}
    variants: list[tuple[str, dict[str, Any]]] = [
        ("samples (10 ancestral draws)", {"uncertainty": "samples"}),
        *((f"jacobian, n_probes={p}", {"uncertainty": "jacobian", "n_probes": p}) for p in PROBES),
        ("jacobian, n_probes=25 (exact trace)", {"uncertainty": "jacobian", "n_probes": 25}),
        ("none (Tweedie mean only)", {"uncertainty": "none"}),
    ]
    for name, changes in variants:
        target = query.copy()
        settings = dice.tl.PosteriorSettings(**changes)
        started = time.perf_counter()
        dice.tl.denoise(target, model=model, settings=settings, seed=seed, progress=False)
        rows.append({"row": name, "seconds": time.perf_counter() - started, "n_cells": n_cells})
        spreads[name] = np.asarray(target.obs["dice_uncertainty"], np.float64)
        print(rows[-1], flush=True)
    # agreement on the first cells: 100 draws as the reference spread
    subset = query[:n_agree].copy()
    dice.tl.denoise(
        subset, model=model, settings=dice.tl.PosteriorSettings(uncertainty="samples", n_samples=100), seed=seed
    )
    reference_spread = np.asarray(subset.obs["dice_uncertainty"], np.float64)
    exact_trace = spreads["jacobian, n_probes=25 (exact trace)"]
    for row in rows[1:-1]:
        spread = spreads[row["row"]]
        ratio = spread[:n_agree] / reference_spread
        probe_error = np.abs(spread / exact_trace - 1.0)
        row.update(
            ratio_to_100_draws=float(np.median(ratio)),
            ratio_p10=float(np.quantile(ratio, 0.1)),
            ratio_p90=float(np.quantile(ratio, 0.9)),
            corr_to_100_draws=float(np.corrcoef(spread[:n_agree], reference_spread)[0, 1]),
            rel_error_to_exact_trace_median=float(np.median(probe_error)),
            rel_error_to_exact_trace_p90=float(np.quantile(probe_error, 0.9)),
        )
    return rows


def _table(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    present = [c for c in columns if c in frame and frame[c].notna().any()]
    lines = ["| " + " | ".join(present) + " |", "|" + "|".join("---" if c == "row" else "---:" for c in present) + "|"]
    for _, rec in frame.iterrows():
        cells = [rec[c] if c == "row" else ("" if pd.isna(rec[c]) else f"{rec[c]:.3f}") for c in present]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def render(out: Path) -> str:
    lines = ["# Uncertainty without sampling (issue 12)", "", "Generated by `benchmarks/uncertainty_cost.py`.", ""]
    coverage = out / "uncertainty_cost_coverage.csv"
    if coverage.exists():
        frame = pd.read_csv(coverage)
        metrics = [c for c in frame.columns if c.startswith(("cov", "spread_", "seconds"))]
        summary = frame.groupby(["rho", "row"], sort=False)[metrics].agg(["mean", "std"])
        seeds = sorted(int(s) for s in frame["seed"].unique())
        lines += [f"## Setup 1 coverage and spread, seeds {seeds} (mean ± sd over seeds)", ""]
        head = ["rho", "row", *metrics]
        lines += ["| " + " | ".join(head) + " |", "|---:|---|" + "---:|" * len(metrics)]
        for (rho, name), rec in summary.iterrows():
            cells = [
                "" if pd.isna(rec[(m, "mean")]) else f"{rec[(m, 'mean')]:.3f} ± {rec[(m, 'std')]:.3f}" for m in metrics
            ]
            lines.append(f"| {rho:g} | {name} | " + " | ".join(cells) + " |")
        lines.append("")
    cost = out / "uncertainty_cost_cost.csv"
    if cost.exists():
        frame = pd.read_csv(cost)
        lines += ["## Cost of denoise, 10,000 CBMC cells (k = 25)", ""]
        lines += [
            _table(
                frame,
                [
                    "row",
                    "seconds",
                    "ratio_to_100_draws",
                    "ratio_p10",
                    "ratio_p90",
                    "corr_to_100_draws",
                    "rel_error_to_exact_trace_median",
                    "rel_error_to_exact_trace_p90",
                ],
            ),
            "",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="coverage,cost")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-cells", type=int, default=10_000, help="cells for the cost part")
    parser.add_argument("--draws", type=int, default=100, help="draws per cell for the sample regions")
    parser.add_argument("--rhos", default="0,5,20", help="relative rho of the target posteriors (coverage)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for testing")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    set_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = [p for p in args.parts.split(",") if p]
    tag = "_quick" if args.quick else ""
    if "coverage" in parts:
        sizes = {"n_reference": 200, "n_query": 60, "n_genes": 100} if args.quick else None
        rows = []
        for seed in (int(s) for s in args.seeds.split(",")):
            rows += coverage_seed(
                seed,
                n_steps=30 if args.quick else 4000,
                n_draws=40 if args.quick else args.draws,
                sizes=sizes,
                rhos=[float(r) for r in args.rhos.split(",")],
            )
            pd.DataFrame(rows).to_csv(out / f"uncertainty_cost_coverage{tag}.csv", index=False)
    if "cost" in parts:
        rows = cost_study(500 if args.quick else args.n_cells, n_agree=100 if args.quick else 1000)
        frame = pd.DataFrame(rows)
        frame["threads"] = _THREADS
        frame.to_csv(out / f"uncertainty_cost_cost{tag}.csv", index=False)
    if not tag:
        text = render(out)
        (out / "uncertainty_cost.md").write_text(text + "\n")
        print(text)


if __name__ == "__main__":
    main()
