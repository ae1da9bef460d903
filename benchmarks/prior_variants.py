"""Attempts at the shallow-reference clustering gap of issue 11 (worm, PBMC at 20 %), each against the default.

On the worm task (a 72-UMI reference) DICE's Leiden ARI stays at or below PCA's at every depth, and on
PBMC3k -> PBMC4k at 20 % PCA is above it (BENCHMARKS.md section 7). Each variant runs against the default on
the same split, thinning and Leiden seed (``benchmarks/depth.py``'s protocol):

``refine``  the prior is too blurred because it learns from draws under a Gaussian prior. Fix tried: draw
            each reference cell's count posterior again under the trained diffusion prior and train a new
            prior on those draws (one or two rounds; a data-augmentation step of density deconvolution).
            Rows ``refine1`` and ``refine2``.
``aniso``   the isotropic noise level wastes the count posterior's shape (per cell its covariance's
            eigenvalues span a factor of about 30 on worm). Fix tried: split the covariance into
            ``tau^2 I`` (``tau^2 = c`` x its smallest eigenvalue) and the rest ``Delta``; find the mode of
            ``p_tau(v) N(y; v, Delta)`` with the prior's score at level ``tau`` (ten Newton steps from the cell's
            measurement), then take the prior's Tweedie mean at ``v``. Rows ``aniso0.5``,
            ``aniso0.9`` (``c``).
``loadings`` the linear loadings are the weak part: PCA of a shallow reference's log-normalised values.
            Fix tried: refit them to the reference's counts (GLM-PCA style: loadings, cells' states and
            genes' scales moved together by Adam under the count model), orthonormalise, then fit the count
            reference and train the prior anew on them. Row ``loadings``.
``shrunk``  the same refit with a Gaussian penalty that keeps each loading within ``--shrink`` times an
            orthonormal loading's typical size (``1 / sqrt(genes)``) of its PCA value. Rows ``shrunk0.5``, ...
            Both now call the package's refit (:func:`dice.models._loadings.refit_loadings`, which became
            ``TrainSettings.count_loadings_width``); the records were made with this script's earlier copy of
            the same computation. The baseline ``base`` keeps PCA's loadings whatever the package default.

Run (records in ``results/prior_variants.csv``, paired summary in ``results/prior_variants.md``; two
processes side by side, each with its own record file, then merged)::

    export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 DICE_DATA_DIR=../shared/data
    python benchmarks/prior_variants.py --variant aniso --tasks worm --seeds 0 1 2 3 4 --out /tmp/aniso.csv
    python benchmarks/prior_variants.py --variant refine --tasks worm pbmc3k_to_4k --seeds 0 1 2 --out /tmp/refine.csv
    python benchmarks/prior_variants.py --variant loadings --tasks worm --seeds 0 1 2 --out /tmp/load_worm.csv
    python benchmarks/prior_variants.py --variant loadings --tasks pbmc3k_to_4k --seeds 0 1 2 --out /tmp/load_pbmc.csv
    python benchmarks/prior_variants.py --variant shrunk --tasks worm pbmc3k_to_4k --seeds 0 1 2 3 4 --out /tmp/shr.csv
    python benchmarks/prior_variants.py --variant shrunk --tasks cbmc --seeds 0 1 2 --out /tmp/shr_cbmc.csv
    python benchmarks/prior_variants.py --variant shrunk --shrink 1.5 --tasks worm pbmc3k_to_4k --seeds 0 1 2 3 4 \\
        --out /tmp/s15.csv
    python benchmarks/prior_variants.py --variant shrunk --shrink 1.5 --tasks cbmc --seeds 0 1 2 --out /tmp/s15_cbmc.csv
    python benchmarks/prior_variants.py --variant shrunk --shrink 3 --tasks worm pbmc3k_to_4k --seeds 0 1 2 3 4 \\
        --out /tmp/s3.csv
    python benchmarks/prior_variants.py --merge /tmp/aniso.csv /tmp/refine.csv /tmp/load_worm.csv \\
        /tmp/load_pbmc.csv /tmp/shr.csv /tmp/shr_cbmc.csv /tmp/s15.csv /tmp/s15_cbmc.csv /tmp/s3.csv
    python benchmarks/prior_variants.py --anisotropy --tasks worm cbmc --seeds 0   # the covariances' shape
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

RESULTS = HERE / "results" / "prior_variants.csv"


def tweedie(model, z: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """The prior's posterior mean ``E[u | z]`` under isotropic noise of sd ``sd`` per cell."""
    import torch

    from dice.models._sampler import prior_step

    scale = model.latent_scale
    with torch.no_grad():
        u, _ = prior_step(
            model.network,
            model.schedule,
            torch.as_tensor(z / scale, dtype=torch.float32),
            torch.as_tensor(sd / scale, dtype=torch.float32)[:, None],
            torch.Generator(),
            method="tweedie",
        )
    return u.numpy().astype(np.float64) * scale


def anisotropic_mean(model, y: np.ndarray, cov: np.ndarray, c: float, n_iter: int = 10) -> np.ndarray:
    """Posterior mean under ``N(y; u, cov)`` and the diffusion prior, through the split described above.

    Newton steps on ``log p_tau(v) - (v - y)^T Delta^-1 (v - y) / 2``: the prior's score is
    ``(D(v) - v) / tau^2`` with ``D`` its Tweedie mean at level ``tau``, and its curvature is taken as
    ``(1 - j) / tau^2`` with ``j`` the mean diagonal of ``D``'s Jacobian, from one finite-difference probe
    per step (exact for a Gaussian prior, where one step lands on the mode; where the prior's log density
    is not concave the step follows the measurement).
    """
    lam, rot = np.linalg.eigh(cov)
    tau2 = c * lam[:, :1]
    tau = np.sqrt(tau2[:, 0])
    delta = lam - tau2  # eigenvalues of Delta = cov - tau^2 I
    probes = np.random.default_rng(0).standard_normal((n_iter, *y.shape))
    eps = 0.05 * tau[:, None]  # the finite-difference step of the curvature probe

    def to_eigen(x):
        return np.einsum("ckj,ck->cj", rot, x)

    def from_eigen(x):
        return np.einsum("cjk,ck->cj", rot, x)

    y_e, v = to_eigen(y), y.copy()
    for probe in probes:
        denoised = tweedie(model, v, tau)
        moved = tweedie(model, v + eps * probe, tau) - denoised
        slope = np.sum(probe * moved, axis=1, keepdims=True) / np.sum(eps * probe * probe, axis=1, keepdims=True)
        curvature = np.maximum((1.0 - np.maximum(slope, 0.0)) / tau2, 1e-6)  # not concave: trust y
        v_e = to_eigen(v)
        grad = to_eigen(denoised - v) / tau2 - (v_e - y_e) / delta
        v = from_eigen(v_e + grad / (1.0 / delta + curvature))
    return tweedie(model, v, tau)


def refined_models(base, ref, seed: int, rounds: int) -> dict:
    """``refine1..rounds``: priors retrained on posterior draws under the previous prior."""
    from dice.likelihood._counts import count_measurement
    from dice.models import DicePrior
    from dice.models._posterior import sample_posterior
    from dice.tl import PosteriorSettings

    measured = count_measurement(ref.layers["counts"], base.embedding, base.count_reference)
    draw = PosteriorSettings(n_samples=1, uncertainty="none", mean_estimate="samples")
    models, current = {}, base
    for r in range(rounds):
        post = sample_posterior(
            current.network,
            current.schedule,
            measured.scores,
            measured.noise_var,
            current.latent_scale,
            draw,
            seed=seed + 100 + r,
            keep_samples=True,
            progress=False,
        )
        current = DicePrior.fit(
            base.embedding,
            post.samples[:, 0, :],
            seed=seed,
            progress=False,
            count_reference=base.count_reference,
            latents_kind="counts_posterior_draw_refined",
        )
        models[f"refine{r + 1}"] = current
    return models


def anisotropy(name: str, seed: int, n_cells: int = 3000) -> str:
    """How far each reference cell's count covariance ``H^-1`` is from isotropic, before and after the one
    noise-whitening shared by all cells: quantiles of the ratio of its largest to smallest eigenvalue."""
    import scipy.sparse as sp

    import _real_tasks as rt
    import depth
    from dice.likelihood._counts import count_measurement, fit_count_reference
    from dice.pp._linear import LinearEmbedding
    from dice.tl._latent import reference_latents

    ref = depth.prepare(name, seed).ref
    embedding = LinearEmbedding.fit(ref.X, ref.var_names, n_comps=rt.TASKS[name].n_comps)
    counts = sp.csr_matrix(ref.layers["counts"], dtype=np.float64)
    reference = fit_count_reference(counts, embedding, latents=reference_latents(embedding, ref.X))
    cov = count_measurement(counts[:n_cells], embedding, reference, return_covariance=True).covariance
    shape = cov / (np.trace(cov, axis1=1, axis2=2) / cov.shape[1])[:, None, None]
    values, vectors = np.linalg.eigh(shape.mean(axis=0))
    whiten = vectors @ np.diag(values**-0.5) @ vectors.T
    before, after = np.linalg.eigvalsh(shape), np.linalg.eigvalsh(whiten @ shape @ whiten)
    q = [np.quantile(e[:, -1] / e[:, 0], [0.5, 0.9]) for e in (before, after)]
    return (
        f"{name} seed {seed}, {len(cov)} reference cells, k = {cov.shape[1]}: eigenvalue ratio of H^-1 median "
        f"{q[0][0]:.1f}, p90 {q[0][1]:.1f}; after a shared whitening median {q[1][0]:.1f}, p90 {q[1][1]:.1f}"
    )


def loadings_model(base, ref, seed: int, shrink: float | None = None):
    """A prior on the count-fitted loadings: count reference, count latents and network trained anew."""
    import scipy.sparse as sp

    from dice.models import DicePrior
    from dice.models._loadings import refit_loadings
    from dice.tl._latent import reference_latents
    from dice.tl._train import _count_latents

    counts = sp.csr_matrix(ref.layers["counts"], dtype=np.float64)
    start = reference_latents(base.embedding, ref.X)
    embedding, _ = refit_loadings(base.embedding, counts, width=shrink, latents=start)
    latents = reference_latents(embedding, ref.X)
    reference, draws, _ = _count_latents(embedding, counts, latents, seed=seed)
    return DicePrior.fit(
        embedding, draws, seed=seed, progress=False, count_reference=reference, latents_kind="counts_posterior_draw"
    )


def run(name: str, seed: int, args) -> list[dict]:
    import _real_tasks as rt
    import depth
    import dice
    from dice.likelihood._counts import count_measurement

    task = depth.prepare(name, seed)
    evaluated = ~pd.isna(task.query_labels)
    truth = task.query_labels[evaluated].astype(str)
    pca_loadings = dice.tl.TrainSettings(count_loadings_width=None)  # the screen's baseline: PCA's V
    base = dice.tl.train_prior(
        task.ref, n_comps=rt.TASKS[name].n_comps, settings=pca_loadings, seed=seed, progress=False
    )
    models = {"base": base}
    if args.variant == "refine":
        models.update(refined_models(base, task.ref, seed, args.rounds))
    if args.variant == "loadings":
        models["loadings"] = loadings_model(base, task.ref, seed)
    if args.variant == "shrunk":
        models[f"shrunk{args.shrink:g}"] = loadings_model(base, task.ref, seed, shrink=args.shrink)
    rows, full = [], {}
    for f in args.fractions:
        q = depth.shallow_query(task.query, f, seed=[seed, round(f * 1e4)])
        out = {}
        for key, model in models.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dice.tl.denoise(q, model=model, seed=seed, progress=False)
            out[key] = np.asarray(q.obsm["X_dice"], dtype=np.float64)
        if args.variant == "aniso":
            m = count_measurement(
                q.layers["counts"], base.embedding, base.count_reference, level="mean_var", return_covariance=True
            )
            some = np.asarray(q.layers["counts"].sum(axis=1)).ravel() > 0  # empty cells keep the default
            for c in (0.5, 0.9):
                mean = out["base"].copy()
                mean[some] = anisotropic_mean(base, m.scores[some], m.covariance[some], c)
                out[f"aniso{c}"] = mean
        for key, embedding in out.items():
            if f == 1.0:
                full[key] = embedding
            metrics = depth.cluster_metrics(embedding[evaluated], truth, seed)
            row = {"task": name, "seed": seed, "f": f, "variant": key, "ari": metrics["ari"]}
            row.update(ari_stable=metrics["ari_stable"], fidelity=depth.fidelity(embedding, full[key]))
            rows.append(row)
            print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    return rows


def report(records: pd.DataFrame) -> str:
    """Paired differences to the default (mean ± sd over seeds) per task, depth and variant."""
    lines = [
        "# Prior, posterior and loadings variants (issue 11)",
        "",
        "`benchmarks/prior_variants.py`; paired by seed against the default (`base`) on the same split.",
        "",
        "| task | f | variant | seeds | ARI default | ARI variant | paired ΔARI | fidelity default | variant |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (task, f), group in records.groupby(["task", "f"], sort=True):
        ari = group.pivot(index="seed", columns="variant", values="ari")
        fid = group.pivot(index="seed", columns="variant", values="fidelity")
        for variant in [v for v in ari.columns if v != "base"]:
            both = ari[[variant, "base"]].dropna()
            diff = both[variant] - both["base"]
            lines.append(
                f"| {task} | {f:g} | {variant} | {len(both)} | {both['base'].mean():.3f} | {both[variant].mean():.3f} "
                f"| {diff.mean():+.3f} ± {diff.std(ddof=1):.3f} | {fid.loc[both.index, 'base'].mean():.3f} "
                f"| {fid.loc[both.index, variant].mean():.3f} |"
            )
    return "\n".join(lines) + "\n"


def store(frames: list[pd.DataFrame], out: Path, *, replace: bool = False) -> None:
    """Write ``frames`` to ``out`` (a row replaces an earlier one with the same task, seed, f and variant;
    ``replace``: ``out``'s old rows are dropped), then the paired report beside it, and print it."""
    if out.exists() and not replace:
        frames = [pd.read_csv(out), *frames]
    records = pd.concat(frames, ignore_index=True).drop_duplicates(["task", "seed", "f", "variant"], keep="last")
    records.sort_values(["task", "variant", "f", "seed"]).to_csv(out, index=False)
    table = report(records)
    out.with_suffix(".md").write_text(table)
    print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=("refine", "aniso", "loadings", "shrunk"))
    parser.add_argument("--shrink", type=float, default=0.5, help="--variant shrunk: the loadings' penalty width")
    parser.add_argument("--anisotropy", action="store_true", help="print the count covariances' anisotropy, stop")
    parser.add_argument("--merge", nargs="+", type=Path, help="merge these record files into --out, report, stop")
    parser.add_argument("--tasks", nargs="+", default=["worm"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--fractions", nargs="+", type=float, default=[1.0, 0.2, 0.05])
    parser.add_argument("--rounds", type=int, default=2, help="refinement rounds (--variant refine)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.merge:  # runs side by side write their own files; their "base" rows are the same computation
        store([pd.read_csv(path) for path in args.merge], args.out, replace=True)
        return
    if args.anisotropy:
        for name in args.tasks:
            print(anisotropy(name, args.seeds[0]), flush=True)
        return
    if args.variant is None:
        parser.error("--variant is required (unless --merge or --anisotropy)")
    if args.fractions[0] != 1.0:
        parser.error("--fractions must start with 1 (the full-depth embedding is the fidelity reference)")
    import torch

    torch.set_num_threads(1)
    for name in args.tasks:
        for seed in args.seeds:  # written after every seed: a long run that stops keeps what it measured
            store([pd.DataFrame(run(name, seed, args))], args.out)


if __name__ == "__main__":
    main()
