"""Reproduce the paper's synthetic study (section 4, Table 1) with fidelity and seed spread.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \
        .venv/bin/python benchmarks/synthetic.py [--seeds 0,1,2,3,4] [--setups 1,2,3,4] [--quick] [--out DIR]

Protocol (one seed = one dataset draw, one trained prior, one set of sampler seeds):

- Data: :func:`dice.datasets.synthetic` Setups 1–4 (1600 reference / 400 query cells, 2000 genes, k = 15).
  For one seed the reference is the same in all four setups, so one prior serves all four (as in the paper).
- Prior: :func:`dice.tl.train_prior` with ``n_comps=15``, ``TrainSettings(n_updates=4000, batch_size=512)``
  (package defaults otherwise: D = 64, M = 2, T = 512).
- The data are the paper's factor model ``x = V u + e``: signed values, not log-normalised expression. dice
  accepts signed values that are neither centred (scaled) nor shifted zeros as factor-model data (any warning
  about negative values is silenced here). They are not shifted to be non-negative: DICE itself would not
  change (it standardises genes with the reference's statistics), but the exact Bayes posterior and the map of
  the true latents to embedding coordinates are computed on the data as drawn.
- Rows (every embedding is in the DICE embedding coordinates ``W^T x_std``):

  ``PCA``
      ``obsm["X_dice_pca"]``: the query projected on the reference loadings (DICE's starting point).
  ``DICE paper (synthetic)``
      The paper's synthetic protocol: ``settings="paper"`` (sigma^2 = 1 in standardised units, full ancestral
      prior steps), constant rho = 20 (absolute), mean of 10 independent chains. The paper runs 200 Gibbs
      iterations; we run ``--paper-iters`` (default 1). At rho = 20 the likelihood step puts weight
      1 / (1 + 20^2) = 0.0025 on the previous state, so the chain forgets it in one iteration and every
      iteration draws from the same distribution (DESIGN.md lesson 3); ``--check-iters`` measures this.
  ``DICE default``
      ``dice.tl.denoise`` with the default :class:`dice.tl.PosteriorSettings`.
  ``DICE isotropic likelihood``
      The default with ``likelihood="isotropic"`` (every gene equally noisy, ``V^T x`` as the measurement:
      the paper's model and this package's default until Nov 25).
  ``DICE prior-heavy (rho=R)``
      The default settings at a constant relative rho ``R`` (``--heavy-rhos``; 2 iterations when the
      default sampler is the Gibbs one): it targets the posterior under noise variance sigma^2 (1 + R^2),
      i.e. it trusts the prior more than the data warrant. (The default was the Gibbs sampler with 10
      strided prior steps until Nov 25; it is now the direct sampler: see BENCHMARKS.md.)
  ``Bayes posterior mean``
      ``E[u | x]`` under the query's own generative model, mapped to embedding coordinates
      (:func:`dice.datasets.to_embedding_coords`). Exact for Setups 1 and 2. Setups 3 and 4 have Student-t
      noise or a Student-t prior component: there each t is replaced by the Gaussian with the same mean and
      covariance (``posterior_parameters(..., require_exact=False)``), a moment-matched approximation.
  ``Clean latents``
      The true latents themselves in embedding coordinates: the label structure the data really have.

- Metrics: cosine silhouette and cLISI (30 neighbours, plain kNN proportions) on the true labels, MSE to the
  clean latents in embedding coordinates (mean over cells of the squared distance summed over the 15
  dimensions), wall time of the embedding step (prior training is shared and reported separately).
"""

from __future__ import annotations

import argparse
import os
import sys


def _early_threads(argv: list[str]) -> int:
    """Read ``--threads`` before numpy / torch are imported and pin every thread pool to it."""
    threads = 1
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            threads = int(argv[i + 1])
        elif arg.startswith("--threads="):
            threads = int(arg.split("=", 1)[1])
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(threads)
    return threads


_THREADS = _early_threads(sys.argv) if __name__ == "__main__" else 1

import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

#: The paper's Table 1 (PCA, DICE) per setup.
PAPER_TABLE1: dict[str, dict[str, tuple[float, float]]] = {
    "1": {"silhouette": (0.25, 0.37), "clisi": (1.27, 1.17)},
    "2": {"silhouette": (0.24, 0.36), "clisi": (1.27, 1.17)},
    "3": {"silhouette": (0.22, 0.34), "clisi": (1.32, 1.18)},
    "4": {"silhouette": (0.22, 0.28), "clisi": (1.35, 1.27)},
}

FULL_SIZES: dict[str, Any] = {"n_reference": 1600, "n_query": 400, "n_genes": 2000, "n_steps": 4000}
QUICK_SIZES: dict[str, Any] = {"n_reference": 120, "n_query": 60, "n_genes": 80, "n_steps": 30}

METHOD_ORDER = (
    "PCA",
    "DICE paper (synthetic)",
    "DICE default",
    "DICE isotropic likelihood",
    "DICE prior-heavy",
    "Bayes posterior mean",
    "Clean latents",
)


def set_threads(n: int = 1) -> None:
    """Pin BLAS/OpenMP (environment, for child libraries loaded later) and torch to ``n`` threads."""
    import torch

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(n)
    torch.set_num_threads(n)


def _silence_signed_data() -> None:
    """Inside a ``warnings.catch_warnings()`` block: the synthetic data are signed on purpose (module docstring)."""
    warnings.filterwarnings("ignore", message=".*negative values.*")


def posterior_settings(base: str = "default", **changes: Any):
    """``dice.tl.PosteriorSettings`` ``"default"`` or ``"paper"`` with some fields changed."""
    from dice.tl import PosteriorSettings

    return PosteriorSettings.resolve(base).replace(**changes)


def train(ref, *, seed: int, n_updates: int, n_comps: int = 15):
    """The synthetic studies' prior: :func:`dice.tl.train_prior` with ``n_updates`` and mini-batches of 512."""
    import dice

    with warnings.catch_warnings():
        _silence_signed_data()
        return dice.tl.train_prior(
            ref,
            n_comps=n_comps,
            settings=dice.tl.TrainSettings(n_updates=n_updates, batch_size=512),
            seed=seed,
            progress=False,
        )


def quiet_denoise(query, model, settings=None, **kwargs: Any) -> tuple[float, int]:
    """Run :func:`dice.tl.denoise` with ``settings`` (no progress bar, expected warnings silenced).

    Returns
    -------
    Wall seconds and the number of clamped prior steps (rho beyond the diffusion schedule's reach).
    """
    import dice

    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*__version__.*")
        warnings.filterwarnings("ignore", message=".*prior steps asked for a noise level.*")
        _silence_signed_data()
        dice.tl.denoise(query, model=model, settings=settings, progress=False, **kwargs)
    return time.perf_counter() - started, int(query.uns["dice"]["n_clamped_prior_steps"])


def embedding_map_kwargs(query, model) -> dict[str, np.ndarray]:
    """Keyword arguments that map true-latent quantities into the model's embedding coordinates."""
    return {
        "true_loadings": np.asarray(query.uns["synthetic"]["loadings"]),
        "gene_mean": model.embedding.mean,
        "gene_std": model.embedding.std,
        "loadings": model.embedding.loadings,
    }


def clean_embedding(query, model) -> np.ndarray:
    """The query's true latents ``u`` mapped to embedding coordinates ``A u + b``."""
    import dice

    return dice.datasets.latents_to_embedding_coords(query.obsm["X_true_latent"], **embedding_map_kwargs(query, model))


def bayes_posterior(query, model, *, prior_from=None) -> tuple[np.ndarray, np.ndarray, str]:
    """Posterior mean and covariance of the embedded clean signal, and which posterior it is.

    Exact when the dataset has Gaussian prior components and Gaussian noise; otherwise every Student-t is
    moment-matched by a Gaussian (``require_exact=False``).
    """
    import dice

    try:
        params = dice.datasets.posterior_parameters(query, prior_from=prior_from, require_exact=True)
        kind = "exact"
    except ValueError:
        params = dice.datasets.posterior_parameters(query, prior_from=prior_from, require_exact=False)
        kind = "moment-matched"
    mean, cov, _ = dice.datasets.exact_posterior(query.X, **params)
    mean_e, cov_e = dice.datasets.to_embedding_coords(mean, cov, **embedding_map_kwargs(query, model))
    return mean_e, cov_e, kind


def score(embedding: np.ndarray, labels: np.ndarray, clean: np.ndarray) -> dict[str, float]:
    """Cosine silhouette, cLISI (30 neighbours) and MSE to the clean latents."""
    import dice

    return {
        "silhouette": dice.metrics.silhouette(embedding, labels, metric="cosine"),
        "clisi": dice.metrics.clisi(embedding, labels, n_neighbors=30),
        "mse": dice.metrics.latent_error(embedding, clean),
    }


def run_seed(
    seed: int,
    setups: Sequence[str] = ("1", "2", "3", "4"),
    *,
    sizes: dict[str, Any] | None = None,
    paper_iters: int = 1,
    heavy_rhos: Sequence[float] = (20.0,),
    verbose: bool = True,
) -> list[dict[str, Any]]:
    """All rows of the table for one seed (data, prior training and sampling all use ``seed``).

    Parameters
    ----------
    seed
        Seed of the data draw, the prior's training and every sampler.
    setups
        Setups among ``"1"``–``"4"``.
    sizes
        ``n_reference``, ``n_query``, ``n_genes`` and the prior's ``n_steps`` (gradient updates; default
        :data:`FULL_SIZES`).
    paper_iters
        Gibbs iterations of the paper-protocol row (the paper: 200; see the module docstring).
    heavy_rhos
        Relative rho of the prior-heavy rows.
    verbose
        Print one line per row.

    Returns
    -------
    One record per (setup, method): ``setup``, ``method``, ``seed``, ``silhouette``, ``clisi``, ``mse``,
    ``seconds``, ``train_seconds``, ``sigma`` (noise sd per latent dimension estimated by the default
    sampler, standardised units), ``latent_scale``, ``n_clamped``, ``mse_to_bayes``, ``posterior``.
    """
    import dice

    sizes = dict(FULL_SIZES if sizes is None else sizes)
    n_steps = sizes.pop("n_steps")
    records: list[dict[str, Any]] = []
    model = None
    train_seconds = float("nan")
    for setup in setups:
        ref, query = dice.datasets.synthetic(setup, seed=seed, **sizes)
        if model is None:  # the reference is the same for Setups 1-4 at a given seed
            started = time.perf_counter()
            model = train(ref, seed=seed, n_updates=n_steps)
            train_seconds = time.perf_counter() - started
        labels = query.obs["label"].to_numpy().astype(str)
        clean = clean_embedding(query, model)

        started = time.perf_counter()
        bayes_mean, _, kind = bayes_posterior(query, model)
        bayes_seconds = time.perf_counter() - started

        rows: list[tuple[str, np.ndarray, float, int, float]] = []
        seconds, clamped = quiet_denoise(query, model, "default", seed=seed)
        sigma = float(np.sqrt(query.uns["dice"]["noise_var_mean"]))
        pca = np.asarray(query.obsm["X_dice_pca"], dtype=np.float64)
        rows.append(("PCA", pca, 0.0, 0, float("nan")))
        default = np.asarray(query.obsm["X_dice"], dtype=np.float64)
        seconds_paper, clamped_paper = quiet_denoise(
            query,
            model,
            posterior_settings("paper", rho=20.0, rho_schedule="constant", n_iter=paper_iters, n_samples=10),
            seed=seed,
        )
        rows.append(
            ("DICE paper (synthetic)", np.asarray(query.obsm["X_dice"], np.float64), seconds_paper, clamped_paper, 20.0)
        )
        rows.append(("DICE default", default, seconds, clamped, float("nan")))
        seconds_iso, clamped_iso = quiet_denoise(query, model, posterior_settings(likelihood="isotropic"), seed=seed)
        rows.append(
            (
                "DICE isotropic likelihood",
                np.asarray(query.obsm["X_dice"], np.float64),
                seconds_iso,
                clamped_iso,
                float("nan"),
            )
        )
        for rho in heavy_rhos:
            seconds_heavy, clamped_heavy = quiet_denoise(
                query, model, posterior_settings(rho=rho, rho_schedule="constant", n_iter=2), seed=seed
            )
            name = "DICE prior-heavy" if len(heavy_rhos) == 1 else f"DICE prior-heavy (rho={rho:g})"
            rows.append((name, np.asarray(query.obsm["X_dice"], np.float64), seconds_heavy, clamped_heavy, rho * sigma))
        rows.append(("Bayes posterior mean", bayes_mean, bayes_seconds, 0, float("nan")))
        rows.append(("Clean latents", clean, 0.0, 0, float("nan")))

        for method, emb, secs, n_clamped, rho_abs in rows:
            record = {
                "setup": setup,
                "method": method,
                "seed": seed,
                **score(emb, labels, clean),
                "seconds": secs,
                "train_seconds": train_seconds,
                "sigma": sigma,
                "latent_scale": model.latent_scale,
                "n_clamped": n_clamped,
                "rho_abs": rho_abs,
                "mse_to_bayes": dice.metrics.latent_error(emb, bayes_mean),
                "posterior": kind,
            }
            records.append(record)
            if verbose:
                print(
                    f"seed {seed} setup {setup} {method:<28} sil {record['silhouette']:.3f} "
                    f"cLISI {record['clisi']:.3f} mse {record['mse']:.3f} "
                    f"mse->bayes {record['mse_to_bayes']:.3f} {secs:6.1f}s clamped {n_clamped}",
                    flush=True,
                )
    return records


def method_sort_key(method: str) -> int:
    """Row order of the tables (prior-heavy variants after the default)."""
    for i, name in enumerate(METHOD_ORDER):
        if method.startswith(name):
            return i
    return len(METHOD_ORDER)


def results_markdown(records: pd.DataFrame, *, title: str = "Synthetic Setups 1–4") -> str:
    """Markdown: per-setup mean ± sd table beside the paper's Table 1, plus a compact comparison."""
    import dice

    lines = [f"### {title}", ""]
    seeds = sorted(records["seed"].unique())
    lines.append(
        f"{len(seeds)} seeds ({', '.join(map(str, seeds))}); mean ± sd over seeds. MSE: mean squared "
        "distance to the clean latents in embedding coordinates (sum over 15 dims); "
        "seconds: embedding step only."
    )
    lines.append("")
    for setup in sorted(records["setup"].unique()):
        sub = records[records["setup"] == setup].copy()
        sub["order"] = sub["method"].map(method_sort_key)
        sub = sub.sort_values(["order"], kind="stable")  # variants keep their run order
        summary = dice.metrics.summarize(
            sub, by="method", metrics=["silhouette", "clisi", "mse", "mse_to_bayes", "seconds"]
        )
        paper = PAPER_TABLE1.get(str(setup))
        train = sub["train_seconds"].mean()
        sigma = sub["sigma"].mean()
        scale = sub["latent_scale"].mean()
        kind = sub["posterior"].iloc[0]
        lines.append(
            f"**Setup {setup}** (Bayes row: {kind} posterior; noise sd per latent dim sigma = {sigma:.3f}, "
            f"latent scale {scale:.2f}; prior training {train:.0f} s"
            + (
                f"; paper PCA → DICE: silhouette {paper['silhouette'][0]:.2f} → {paper['silhouette'][1]:.2f}, "
                f"cLISI {paper['clisi'][0]:.2f} → {paper['clisi'][1]:.2f})"
                if paper
                else ")"
            )
        )
        lines.append("")
        lines.append(dice.metrics.format_mean_sd(summary, index_name="method"))
        clamped = sub.groupby("method", sort=False)["n_clamped"].sum()
        if (clamped > 0).any():
            lines.append("")
            lines.append(
                "Clamped prior steps (rho beyond the schedule's reach): "
                + ", ".join(f"{m}: {int(c)}" for m, c in clamped.items() if c > 0)
            )
        lines.append("")

    # compact side-by-side table
    lines.append("**Side by side with the paper's Table 1** (ours: mean ± sd over seeds)")
    lines.append("")
    lines.append(
        "| setup | paper sil PCA → DICE | sil PCA | sil DICE paper | sil DICE default | sil Bayes | "
        "sil clean | paper cLISI PCA → DICE | cLISI PCA | cLISI DICE paper | cLISI DICE default | "
        "cLISI Bayes |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for setup in sorted(records["setup"].unique()):
        sub = records[records["setup"] == setup]

        def cell(method: str, metric: str, sub: pd.DataFrame = sub) -> str:
            values = sub.loc[sub["method"] == method, metric].to_numpy(dtype=float)
            if values.size == 0:
                return "–"
            sd = values.std(ddof=1) if values.size > 1 else float("nan")
            return f"{values.mean():.3f}" + ("" if np.isnan(sd) else f" ± {sd:.3f}")

        paper = PAPER_TABLE1.get(str(setup), {"silhouette": (np.nan, np.nan), "clisi": (np.nan, np.nan)})
        lines.append(
            f"| {setup} | {paper['silhouette'][0]:.2f} → {paper['silhouette'][1]:.2f} | "
            f"{cell('PCA', 'silhouette')} | {cell('DICE paper (synthetic)', 'silhouette')} | "
            f"{cell('DICE default', 'silhouette')} | {cell('Bayes posterior mean', 'silhouette')} | "
            f"{cell('Clean latents', 'silhouette')} | {paper['clisi'][0]:.2f} → {paper['clisi'][1]:.2f} | "
            f"{cell('PCA', 'clisi')} | {cell('DICE paper (synthetic)', 'clisi')} | "
            f"{cell('DICE default', 'clisi')} | {cell('Bayes posterior mean', 'clisi')} |"
        )
    lines.append("")
    lines.append("**Fidelity**: MSE to the clean latents, and its ratio to the Bayes mean's (per seed, then mean ± sd)")
    lines.append("")
    fid = ["PCA", "DICE default", "DICE isotropic likelihood", "DICE paper (synthetic)"]
    lines.append(
        "| setup | MSE Bayes | "
        + " | ".join(f"MSE {m}" for m in fid)
        + " | "
        + " | ".join(f"{m} ÷ Bayes" for m in fid)
        + " |"
    )
    lines.append("|---|" + "---:|" * (1 + 2 * len(fid)))
    for setup in sorted(records["setup"].unique()):
        sub = records[records["setup"] == setup]
        bayes = sub[sub["method"] == "Bayes posterior mean"].set_index("seed")["mse"]

        def mean_sd(values: np.ndarray, digits: int = 3) -> str:
            values = np.asarray(values, dtype=float)
            if values.size == 0:
                return "–"
            sd = f" ± {values.std(ddof=1):.{digits}f}" if values.size > 1 else ""
            return f"{values.mean():.{digits}f}{sd}"

        mses = [sub[sub["method"] == m].set_index("seed")["mse"] for m in fid]
        ratios = [(m / bayes).dropna().to_numpy() for m in mses]
        lines.append(
            f"| {setup} | {mean_sd(bayes.to_numpy())} | "
            + " | ".join(mean_sd(m.to_numpy()) for m in mses)
            + " | "
            + " | ".join(mean_sd(r) for r in ratios)
            + " |"
        )
    return "\n".join(lines)


def check_iterations(
    seed: int,
    iters: Sequence[int],
    *,
    sizes: dict[str, Any] | None = None,
    setup: str = "1",
    sample_seeds: Sequence[int] = (0, 1, 2),
) -> pd.DataFrame:
    """Paper-protocol row at several Gibbs iteration counts (one dataset, one prior, several sampler seeds).

    Shows whether fewer iterations than the paper's 200 change the numbers beyond sampling noise.
    """
    import dice

    sizes = dict(FULL_SIZES if sizes is None else sizes)
    n_steps = sizes.pop("n_steps")
    ref, query = dice.datasets.synthetic(setup, seed=seed, **sizes)
    model = train(ref, seed=seed, n_updates=n_steps)
    labels = query.obs["label"].to_numpy().astype(str)
    clean = clean_embedding(query, model)
    rows = []
    for n_iter in iters:
        for sample_seed in sample_seeds:
            seconds, clamped = quiet_denoise(
                query,
                model,
                posterior_settings("paper", rho=20.0, rho_schedule="constant", n_iter=n_iter, n_samples=10),
                seed=1000 + sample_seed,
            )
            row = {
                "setup": setup,
                "seed": seed,
                "n_iter": n_iter,
                "sample_seed": sample_seed,
                **score(np.asarray(query.obsm["X_dice"], np.float64), labels, clean),
                "seconds": seconds,
                "n_clamped": clamped,
            }
            print(row, flush=True)
            rows.append(row)
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds")
    parser.add_argument("--setups", default="1,2,3,4", help="comma-separated setups among 1-4")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for testing")
    parser.add_argument("--out", default=str(RESULTS), help="output folder")
    parser.add_argument("--threads", type=int, default=1, help="threads for torch, BLAS, OpenMP, numba")
    parser.add_argument(
        "--paper-iters", type=int, default=1, help="Gibbs iterations of the paper-protocol row (paper: 200)"
    )
    parser.add_argument("--heavy-rhos", default="20", help="relative rho(s) of the prior-heavy row(s)")
    parser.add_argument(
        "--check-iters",
        default="",
        help="instead of the table: paper protocol at these iteration counts on one seed "
        "(first of --seeds) and setup (first of --setups), e.g. 1,10",
    )
    parser.add_argument("--tag", default="", help="suffix of the output file names")
    parser.add_argument(
        "--render", action="store_true", help="only rewrite the markdown table from the existing records CSV"
    )
    args = parser.parse_args(argv)
    set_threads(args.threads)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    tag = args.tag or ("_quick" if args.quick else "")
    started = time.perf_counter()
    if args.render:
        frame = pd.read_csv(out / f"synthetic_records{tag}.csv", dtype={"setup": str})
        text = results_markdown(frame) + "\n"
        (out / f"synthetic_table{tag}.md").write_text(text)
        print(text)
        return
    if args.check_iters:
        iters = [int(i) for i in args.check_iters.split(",")]
        frame = check_iterations(seeds[0], iters, sizes=sizes, setup=setups[0])
        frame.to_csv(out / f"synthetic_check_iters{tag}.csv", index=False)
        summary = frame.groupby("n_iter")[["silhouette", "clisi", "mse", "seconds"]].agg(["mean", "std"])
        print(summary.to_string())
        print(f"total {time.perf_counter() - started:.0f} s")
        return

    records: list[dict[str, Any]] = []
    for seed in seeds:
        records.extend(
            run_seed(
                seed,
                setups,
                sizes=sizes,
                paper_iters=args.paper_iters,
                heavy_rhos=[float(r) for r in args.heavy_rhos.split(",")],
            )
        )
        # write after every seed so a partial run still leaves its numbers
        frame = pd.DataFrame(records)
        frame.to_csv(out / f"synthetic_records{tag}.csv", index=False)
    total = time.perf_counter() - started
    text = results_markdown(frame)
    text += (
        f"\n\nGenerated by `benchmarks/synthetic.py --seeds {args.seeds} --setups {args.setups}"
        f"{' --quick' if args.quick else ''} --paper-iters {args.paper_iters} --heavy-rhos {args.heavy_rhos} "
        f"--threads {args.threads}` in {total:.0f} s.\n"
    )
    (out / f"synthetic_table{tag}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
