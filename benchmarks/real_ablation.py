"""Ablation of DICE's settings on real data: why does (or doesn't) DICE beat PCA on CBMC / PBMC?

::

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \\
        DICE_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/real_ablation.py \\
        [--tasks cbmc] [--seeds 0,1,2] [--groups rho,noise,...] [--priors DIR] [--resume]

Same tasks, preprocessing and metrics as ``benchmarks/real.py`` (see ``_real_tasks.py``). One seed = one
split, one trained prior per training configuration, one sampler seed. Every row changes ONE thing from the
base configuration (package defaults: k = task default, D = 64, M = 2, 4000 updates, no mixup; sampler: the
default :class:`dice.tl.PosteriorSettings` as the package defines it when the script runs -- at the time of
writing: ``direct``
sampler, ancestral prior steps, rho = 0 (the posterior under the estimated noise variance), 10 samples,
Tweedie mean, ``noise_var="dataset"``). Sampler rows that name ``gibbs`` spell out every setting of the
previous default (Gibbs, 10 strided steps, rho 5 → 0.5 linear over 20 iterations, 10 samples) and change
one; ``direct rho R`` rows keep the current default and set rho. The PCA rows are ``obsm["X_dice_pca"]``.

Groups (in the default order, most likely to matter first):

``rho``      previous default (Gibbs 5 → 0.5) and Gibbs at constant 0.5 / 1 / 2 and linear 5 → 2; the direct
             sampler at rho 0.5 / 1 / 2 (relative to sigma; target noise variance sigma^2 (1 + rho^2))
``noise``    ``noise_var`` = ``"cell"``, 1.0 (the paper's fixed sigma^2 per standardised gene, which only the
             isotropic likelihood has: that row also sets ``likelihood="isotropic"``)
``mixup``    same-label mixup on the reference labels (p = 0.9, the paper's augmentation)
``k``        latent dimension 15, 50 and the elbow rule (new prior each)
``sampler``  20 strided prior steps instead of ancestral; 1 sample
``capacity`` network width D = 128, M = 4 blocks
``steps``    2000 and 10000 training steps (gradient updates, ``TrainSettings.n_updates``)

``--priors DIR`` reuses the base priors saved by ``real.py --save-priors DIR`` (``{task}_seed{seed}``).
Writes ``real_ablation_records.csv`` and ``real_ablation.md`` (mean ± sd over seeds, and the paired
difference to the base configuration) in ``--out``.
"""

from __future__ import annotations

import os
import sys

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _real_tasks import TASKS, RealTask, prepare_task  # noqa: E402

RESULTS = HERE / "results"


@dataclass(frozen=True)
class Config:
    """One ablation row: a change of the prior's training and / or of the sampler.

    ``train``: ``n_comps`` and ``labels_key`` of :func:`dice.tl.train_prior`, the rest fields of
    :class:`dice.tl.TrainSettings`; ``denoise``: fields of :class:`dice.tl.PosteriorSettings` changed from its
    default.
    """

    name: str
    group: str
    train: dict[str, Any] = field(default_factory=dict)
    denoise: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def train_key(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(self.train.items())) or "base"


#: The previous default preset (until 2026-11-25 04:21), spelled out so it does not depend on the preset.
GIBBS = {
    "sampler": "gibbs",
    "prior_step": "strided",
    "n_prior_steps": 10,
    "rho": 5.0,
    "rho_end": 0.5,
    "rho_schedule": "linear",
    "n_iter": 20,
    "n_samples": 10,
    "noise_var": "dataset",
}
BASE = Config("base (mode='default')", "base")  # the default PosteriorSettings (label kept from earlier records)
CONFIGS: tuple[Config, ...] = (
    BASE,
    Config("gibbs 5→0.5 (previous default)", "rho", denoise=GIBBS),
    Config("gibbs const 0.5", "rho", denoise={**GIBBS, "rho": 0.5, "rho_schedule": "constant"}),
    Config("gibbs const 1", "rho", denoise={**GIBBS, "rho": 1.0, "rho_schedule": "constant"}),
    Config("gibbs const 2", "rho", denoise={**GIBBS, "rho": 2.0, "rho_schedule": "constant"}),
    Config("gibbs linear 5→2", "rho", denoise={**GIBBS, "rho_end": 2.0}),
    Config("direct rho 0.5", "rho", denoise={"rho": 0.5}),
    Config("direct rho 1", "rho", denoise={"rho": 1.0}),
    Config("direct rho 2", "rho", denoise={"rho": 2.0}),
    Config("noise_var cell", "noise", denoise={"noise_var": "cell"}),
    # a number is a per-gene sigma^2, which only the isotropic likelihood uses (the gene-weighted one refuses it)
    Config("noise_var 1.0 (paper)", "noise", denoise={"noise_var": 1.0, "likelihood": "isotropic"}),
    Config("mixup p=0.9 (reference labels)", "mixup", train={"labels_key": "__labels__"}),
    Config("k = 15", "k", train={"n_comps": 15}),
    Config("k = 50", "k", train={"n_comps": 50}),
    Config("k = elbow", "k", train={"n_comps": None}),
    Config("prior_step strided 20", "sampler", denoise={"prior_step": "strided", "n_prior_steps": 20}),
    Config("n_samples 1", "sampler", denoise={"n_samples": 1}),
    Config("D = 128", "capacity", train={"hidden_dim": 128}),
    Config("M = 4 blocks", "capacity", train={"n_blocks": 4}),
    Config("2000 steps", "steps", train={"n_updates": 2000}),
    Config("10000 steps", "steps", train={"n_updates": 10000}),
)
GROUPS: tuple[str, ...] = ("rho", "noise", "mixup", "k", "sampler", "capacity", "steps")
METRICS: tuple[tuple[str, str], ...] = (
    ("leiden_oracle_ari", "ARI oracle"),
    ("leiden_oracle_nmi", "NMI oracle"),
    ("leiden_stable_ari", "ARI stable"),
    ("leiden_stable_nmi", "NMI stable"),
    ("silhouette", "silhouette"),
    ("clisi", "cLISI"),
    ("knn_accuracy", "kNN acc"),
    ("shrink", "spread ratio"),
    ("cpu_seconds", "CPU s"),
)


def spread_ratio(embedding: np.ndarray, scores: np.ndarray) -> float:
    """Total variance of the embedding over that of the PCA scores (1 = no shrinkage; << 1 = collapse)."""
    return float(np.var(embedding, axis=0).sum() / max(np.var(scores, axis=0).sum(), 1e-12))


def _train(task: RealTask, config: Config, seed: int, priors: Path | None):
    import dice

    train = dict(config.train)
    k = train.pop("n_comps", task.spec.n_comps)
    labels_key = train.pop("labels_key", None)
    if not config.train and priors is not None:
        path = priors / f"{task.spec.name}_seed{seed}"
        if path.exists():
            try:
                return dice.models.DicePrior.load(path, device="cpu"), 0.0
            except Exception as error:  # being written by real.py: train instead
                print(f"could not load {path} ({error!r}); training", flush=True)
    ref = task.ref
    if labels_key == "__labels__":
        ref = task.ref.copy()
        ref.obs["__labels__"] = pd.Series(task.ref.obs[task.spec.label_key].astype(str).to_numpy(), index=ref.obs_names)
    cpu = time.process_time()
    model = dice.tl.train_prior(
        ref, n_comps=k, labels_key=labels_key, settings=dice.tl.TrainSettings(**train), seed=seed, progress=False
    )
    return model, time.process_time() - cpu


def _one(task: RealTask, config: Config, model, train_cpu: float, seed: int) -> list[dict[str, Any]]:
    """Denoise the query with one configuration; its record, plus a PCA record when k is not the task's."""
    import dice

    query = task.query.copy()
    cpu = time.process_time()
    settings = dice.tl.PosteriorSettings(**config.denoise)
    dice.tl.denoise(query, model=model, settings=settings, seed=seed, progress=False)
    cpu = time.process_time() - cpu
    scores, emb = query.obsm["X_dice_pca"], query.obsm["X_dice"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = dice.metrics.evaluate(emb, task.query_labels, seed=seed)
    base = {
        "task": task.spec.name,
        "seed": seed,
        "k": model.embedding.n_comps,
        "noise_var_mean": float(query.uns["dice"]["noise_var_mean"]),
    }
    out = [
        {
            **base,
            "config": config.name,
            "group": config.group,
            "cpu_seconds": cpu,
            "train_cpu_seconds": train_cpu,
            "shrink": spread_ratio(emb, scores),
            **metrics,
        }
    ]
    if config is BASE or "n_comps" in config.train:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pm = dice.metrics.evaluate(scores, task.query_labels, seed=seed)
        label = "PCA" if config is BASE else f"PCA, {config.name}"
        out.append(
            {
                **base,
                "config": label,
                "group": "pca" if config is BASE else config.group,
                "cpu_seconds": 0.0,
                "train_cpu_seconds": 0.0,
                "shrink": 1.0,
                **pm,
            }
        )
    return out


def run(
    tasks: Sequence[str],
    seeds: Sequence[int],
    groups: Sequence[str],
    out: Path,
    *,
    priors: Path | None = None,
    resume: bool = False,
) -> pd.DataFrame:
    """Run the selected ablation groups; append records to ``out/real_ablation_records.csv``."""
    import torch

    torch.set_num_threads(1)
    csv = out / "real_ablation_records.csv"
    done: set[tuple[str, int, str]] = set()
    if resume and csv.exists():
        old = pd.read_csv(csv)
        done = set(zip(old["task"], old["seed"].astype(int), old["config"], strict=True))
    elif csv.exists():
        csv.unlink()
    started = time.perf_counter()
    task_cache: dict[tuple[str, int], RealTask] = {}
    models: dict[tuple[str, int, str], tuple[Any, float]] = {}
    # group by group (each over every seed), so that a cut-short run still has all seeds of the first groups
    passes = [("base", [BASE])] + [(g, [c for c in CONFIGS if c.group == g]) for g in groups]
    for name in tasks:
        for _, configs in passes:
            for seed in seeds:
                todo = [c for c in configs if (name, seed, c.name) not in done]
                if not todo:
                    continue
                if (name, seed) not in task_cache:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        task_cache[(name, seed)] = prepare_task(name, seed)
                task = task_cache[(name, seed)]
                for config in todo:
                    key = (name, seed, config.train_key())
                    if key not in models:
                        models[key] = _train(task, config, seed, priors)
                    model, train_cpu = models[key]
                    records = _one(task, config, model, train_cpu, seed)
                    done.update((name, seed, r["config"]) for r in records)
                    r = records[0]
                    print(
                        f"[{time.perf_counter() - started:6.0f}s] {name} s{seed} {config.name:32s} "
                        f"ARI {r['leiden_oracle_ari']:.3f} NMI {r['leiden_oracle_nmi']:.3f} "
                        f"stable {r['leiden_stable_ari']:.3f} sil {r['silhouette']:.3f} "
                        f"knn {r['knn_accuracy']:.3f} shrink {r['shrink']:.2f} "
                        f"cpu {r['cpu_seconds']:.1f}s",
                        flush=True,
                    )
                    frame = pd.DataFrame(records)
                    if csv.exists():
                        frame = pd.concat([pd.read_csv(csv), frame], ignore_index=True)
                    frame.to_csv(csv, index=False)
    return pd.read_csv(csv)


def _fmt(mean: float, sd: float, digits: int = 3) -> str:
    if pd.isna(mean):
        return "–"
    return f"{mean:.{digits}f}" if pd.isna(sd) else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def report(records: pd.DataFrame, path: Path, header: str = "") -> None:
    """Write the ablation tables: per task, config x metric (mean ± sd) and the paired Δ to the base."""
    lines = [header.rstrip(), ""] if header else []
    for name in [t for t in TASKS if t in set(records["task"])]:
        frame = records[records["task"] == name]
        seeds = sorted(set(frame["seed"]))
        lines += [
            f"## {name} (seeds {seeds})",
            "",
            "| config | n | " + " | ".join(h for _, h in METRICS) + " | ΔARI vs base | ΔNMI vs base |",
            "|" + "---|" * (len(METRICS) + 4),
        ]
        rest = [c for c in dict.fromkeys(frame["config"]) if c not in ("PCA", BASE.name)]
        order = ["PCA", BASE.name, *rest]
        base = frame[frame["config"] == BASE.name].set_index("seed")
        for config in order:
            sub = frame[frame["config"] == config]
            if sub.empty:
                continue
            cells = [config, str(len(sub))]
            for key, _ in METRICS:
                digits = 1 if key == "cpu_seconds" else 3
                cells.append(_fmt(sub[key].mean(), sub[key].std(ddof=1), digits))
            s = sub.set_index("seed")
            for key in ("leiden_oracle_ari", "leiden_oracle_nmi"):
                d = (s[key] - base[key]).dropna() if not base.empty else pd.Series(dtype=float)
                cells.append("–" if d.empty or config == BASE.name else _fmt(d.mean(), d.std(ddof=1)))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    path.write_text("\n".join(lines).rstrip() + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="cbmc")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--groups", default=",".join(GROUPS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--priors", type=Path, default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--header", default=None)
    args = parser.parse_args(argv)
    groups = [g for g in args.groups.split(",") if g]
    for g in groups:
        if g not in GROUPS:
            parser.error(f"unknown group {g!r}; choose from {GROUPS}")
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.report_only:
        records = pd.read_csv(args.out / "real_ablation_records.csv")
    else:
        records = run(
            args.tasks.split(","),
            [int(s) for s in args.seeds.split(",")],
            groups,
            args.out,
            priors=args.priors,
            resume=args.resume,
        )
    header = (
        args.header
        if args.header is not None
        else (
            "# DICE ablation on real data\n\nGenerated by `benchmarks/real_ablation.py` (see its docstring). "
            "Raw records: `real_ablation_records.csv`. `spread ratio` = total variance of the embedding / that "
            "of the PCA scores (shrinkage; 1 = none). Δ columns: paired by seed, mean ± sd.\n\n"
            f"This run took {(time.perf_counter() - started) / 60:.1f} min wall."
        )
    )
    report(records, args.out / "real_ablation.md", header)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
