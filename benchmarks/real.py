"""Real-data benchmark: DICE against peer denoising / embedding tools on reference → query tasks.

One command (offline; peers need the ``.venv-peers`` environment built by ``benchmarks/install_peers.sh``)::

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \\
        DICE_DATA_DIR=/work/shared/data .venv-peers/bin/python benchmarks/real.py

Options: ``--tasks cbmc,pbmc3k_to_4k,cellbench,worm`` ``--methods pca,knn5,...`` ``--seeds 0,1,2,3,4``
``--out DIR`` ``--resume`` (skip (task, seed, method) already in the CSV) ``--report-only`` (rebuild the
markdown from the CSV) ``--quick`` (smoke run: small reference, short training, few iterations; numbers
meaningless). Peers whose package is missing in the running environment are skipped with a note.

Protocol (one seed = one split where the task has one, one query subsample where it has one, one trained
prior, one set of sampler / peer seeds; see ``_real_tasks.py`` for tasks and preprocessing):

- Every method embeds the **query** cells only, using the reference (loadings, statistics, prior, model)
  where the method has a reference step; k = the task's latent dimension (CBMC 25 as in the paper,
  otherwise DICE's elbow rule) for every method except scVI (10 latent factors, the paper's choice) and
  ALRA (its own top-k PCs of the imputed matrix, k the same).
- ``pca``: ``V^T x`` with the reference loadings (identical to DICE's ``obsm["X_dice_pca"]``).
  ``knn5/10/15``, ``magic``, ``alra``, ``nmf``, ``scvi``, ``harmony``: ``benchmarks/peers.py`` (module
  docstring there lists every choice). ``harmony`` only where a technology separates reference and query.
- ``dice_default``: :func:`dice.tl.train_prior` (package defaults; no labels, so no mixup) +
  :func:`dice.tl.denoise` with the default :class:`dice.tl.PosteriorSettings`. ``dice_isotropic``: the same
  prior and sampler with ``likelihood="isotropic"`` (ablation of the gene-weighted likelihood). ``dice_paper``
  (opt-in, slow): the same prior, ``settings="paper"`` (split Gibbs, full ancestral prior steps, rho 5 → 0.5
  over 100 iterations, sigma^2 = 1, one sample). Their wall time includes the prior's training (reported
  separately as ``train_seconds``).
- The default run (no ``--methods``) is every peer plus ``dice_default`` and ``dice_isotropic``;
  ``--jobs 2`` (default) runs two (task, seed) units at once, one thread each.
- Metrics: :func:`dice.metrics.evaluate` on the query's labelled cells (unlabelled / excluded cells are
  embedded but not scored): Leiden on a 15-NN graph of the embedding over a 15-value resolution grid,
  ``oracle`` (best ARI) and ``stable`` (label-free: most stable across Leiden seeds and neighbouring
  resolutions) choices; ARI, NMI (arithmetic = V-measure), cosine silhouette, cLISI (30 NN), 15-NN
  leave-one-out accuracy. ``seconds`` = wall time of the embedding step, ``cpu_seconds`` = its process CPU
  time (one thread: the wall time on an idle core).

Outputs in ``--out`` (default ``benchmarks/results``): ``real_records.csv`` (one row per task, seed,
method) and ``real.md`` (mean ± sd tables per task, DICE-vs-peer comparisons).
"""

from __future__ import annotations

import os
import sys

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import functools  # noqa: E402
import importlib.util  # noqa: E402
import multiprocessing  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from concurrent.futures import ProcessPoolExecutor, as_completed  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _real_tasks import TASKS, RealTask, build_peer_splits, prepare_task  # noqa: E402

RESULTS = HERE / "results"
RECORDS_NAME = "real_records.csv"
REPORT_NAME = "real.md"

#: Methods in report order.
METHODS: tuple[str, ...] = (
    "pca",
    "knn5",
    "knn10",
    "knn15",
    "magic",
    "alra",
    "nmf",
    "scvi",
    "harmony",
    "dice_default",
    "dice_isotropic",
    "dice_gibbs",
    "dice_paper",
)
#: Peer methods -> (peers.EMBEDDERS key, python module the peer needs).
PEERS: dict[str, tuple[str, str | None]] = {
    "pca": ("pca", None),
    "knn5": ("knn5", None),
    "knn10": ("knn10", None),
    "knn15": ("knn15", None),
    "magic": ("magic", "magic"),
    "alra": ("alra", "halra"),
    "nmf": ("nmf", None),
    "scvi": ("scvi", "scvi"),
    "harmony": ("harmony", "harmonypy"),
}
DICE_METHODS = ("dice_default", "dice_isotropic", "dice_gibbs", "dice_paper")
#: What a run without ``--methods`` embeds: every peer and the DICE default. The paper-exact row
#: (``dice_paper``, 2-8 CPU-minutes per task and seed) and the previous default (``dice_gibbs``) are opt-in,
#: so that the full run fits 30 minutes on two cores.
DEFAULT_METHODS: tuple[str, ...] = tuple(m for m in METHODS if m not in ("dice_gibbs", "dice_paper"))
#: ``dice_isotropic`` (the default with the paper's isotropic likelihood, the default until Nov 25) is in the
#: default run: it is the ablation of the gene-weighted likelihood, at the cost of one more sampler call.
#: ``dice.tl.denoise`` settings of each DICE row: ``"default"``, ``"paper"`` or the changes to the default
#: :class:`dice.tl.PosteriorSettings`. ``dice_gibbs`` spells out the package's previous default (until
#: 2026-11-25 04:21; the current default is the direct sampler at rho = 0).
DICE_SETTINGS: dict[str, str | dict[str, Any]] = {
    "dice_default": "default",
    "dice_isotropic": {"likelihood": "isotropic"},
    "dice_gibbs": {
        "sampler": "gibbs",
        "prior_step": "strided",
        "n_prior_steps": 10,
        "rho": 5.0,
        "rho_end": 0.5,
        "rho_schedule": "linear",
        "n_iter": 20,
        "n_samples": 10,
        "noise_var": "dataset",
    },
    "dice_paper": "paper",
}
LABELS: dict[str, str] = {
    "pca": "PCA (reference loadings)",
    "knn5": "kNN smoothing (k=5)",
    "knn10": "kNN smoothing (k=10)",
    "knn15": "kNN smoothing (k=15)",
    "magic": "MAGIC",
    "alra": "ALRA",
    "nmf": "NMF",
    "scvi": "scVI (10 latent)",
    "harmony": "Harmony",
    "dice_default": "DICE default",
    "dice_isotropic": "DICE isotropic likelihood",
    "dice_gibbs": "DICE Gibbs 5→0.5 (prev. default)",
    "dice_paper": "DICE paper-exact",
}
#: Metric columns of the report tables: (record key, header, higher is better).
TABLE_METRICS: tuple[tuple[str, str, bool], ...] = (
    ("leiden_oracle_ari", "ARI oracle", True),
    ("leiden_oracle_nmi", "NMI oracle", True),
    ("leiden_oracle_v_measure", "V oracle", True),
    ("leiden_stable_ari", "ARI stable", True),
    ("leiden_stable_nmi", "NMI stable", True),
    ("leiden_stable_v_measure", "V stable", True),
    ("clisi", "cLISI", False),
    ("silhouette", "silhouette", True),
    ("knn_accuracy", "kNN acc", True),
    ("seconds", "wall s", False),
    ("cpu_seconds", "CPU s", False),
)
QUICK = {"max_ref_cells": 600, "max_query_cells": 200, "n_steps": 150, "paper_n_iter": 3, "scvi_epochs": 2}


def set_threads() -> None:
    """Pin torch to one thread (the environment variables are set at import)."""
    import torch

    torch.set_num_threads(1)


def available(method: str) -> bool:
    """Whether the package a method needs is importable in the running environment."""
    module = PEERS.get(method, (None, None))[1]
    return module is None or importlib.util.find_spec(module) is not None


def applicable(method: str, task: RealTask) -> bool:
    """Harmony only applies where a batch (technology) separates reference and query."""
    return method != "harmony" or task.spec.batch


def posterior_settings(method: str, *, paper_n_iter: int | None = None):
    """The :class:`dice.tl.PosteriorSettings` of a DICE row (``paper_n_iter`` shortens the paper sampler)."""
    from dice.tl import PosteriorSettings

    spec = DICE_SETTINGS[method]
    settings = PosteriorSettings.resolve(spec) if isinstance(spec, str) else PosteriorSettings(**spec)
    if method == "dice_paper" and paper_n_iter is not None:
        settings = settings.replace(n_iter=paper_n_iter)
    return settings


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def run_task_seed(
    task: RealTask,
    methods: Sequence[str],
    *,
    n_steps: int | None = None,
    paper_n_iter: int | None = None,
    scvi_epochs: int | None = None,
    save_priors: Path | None = None,
    load_priors: Path | None = None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Embed the query of one prepared task with every method and score it.

    Parameters
    ----------
    task
        A prepared task (:func:`_real_tasks.prepare_task`); ``task.seed`` seeds everything.
    methods
        Names from :data:`METHODS`; inapplicable or unavailable ones are skipped (logged).
    n_steps, paper_n_iter, scvi_epochs
        Overrides for smoke runs (``None``: the package / peer defaults); ``n_steps`` is the prior's number of
        gradient updates (``TrainSettings.n_updates``).
    save_priors
        Folder where the trained DICE prior is saved as ``{task}_seed{seed}`` (reused by
        ``real_ablation.py --priors``).
    load_priors
        Folder of priors saved by ``save_priors``; a prior found there is loaded instead of trained
        (its training time is then not measured: ``train_seconds`` is NaN).
    log
        Where progress lines go.

    Returns
    -------
    One record per method: task, seed, method, sizes, k, timings and every key of
    :func:`dice.metrics.evaluate` (or ``error`` when the method failed).
    """
    import dice
    import peers
    from dice.pp._linear import LinearEmbedding

    seed = task.seed
    k_spec = task.spec.n_comps
    # PCA of the standardised reference (train_prior's loadings before their count refit; deterministic)
    embedding = LinearEmbedding.fit(task.ref.X, task.ref.var_names, n_comps=k_spec)
    k = embedding.n_comps
    ref_split, query_split = build_peer_splits(task, embedding)
    base = {
        "task": task.spec.name,
        "seed": seed,
        "k": k,
        "n_ref": task.ref.n_obs,
        "n_query": task.query.n_obs,
        "n_genes": task.ref.n_vars,
    }
    records: list[dict[str, Any]] = []
    model = None
    train_seconds = train_cpu = float("nan")

    def score(method: str, emb: np.ndarray, wall: float, cpu: float, extra: dict | None = None) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            metrics, ev_wall, _ = _timed(lambda: dice.metrics.evaluate(emb, task.query_labels, seed=seed))
        rec = {
            **base,
            "method": method,
            "seconds": wall,
            "cpu_seconds": cpu,
            "eval_seconds": ev_wall,
            "dims": int(emb.shape[1]),
            **(extra or {}),
            **metrics,
        }
        records.append(rec)
        log(
            f"  {task.spec.name} seed {seed} {method:13s} ARI {metrics['leiden_oracle_ari']:.3f} "
            f"NMI {metrics['leiden_oracle_nmi']:.3f} stableARI {metrics['leiden_stable_ari']:.3f} "
            f"({wall:.1f}s, cpu {cpu:.1f}s, eval {ev_wall:.1f}s)"
        )

    for method in methods:
        if not applicable(method, task):
            continue
        if not available(method):
            log(f"  skip {method}: package {PEERS[method][1]!r} not installed in this environment")
            continue
        try:
            if method in PEERS:
                fn = peers.EMBEDDERS[PEERS[method][0]]
                kw: dict[str, Any] = {"n_comps": k, "seed": seed}
                if method == "scvi" and scvi_epochs is not None:
                    kw["max_epochs"] = scvi_epochs
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    emb, wall, cpu = _timed(lambda fn=fn, kw=kw: fn(ref_split, query_split, **kw))
                score(method, np.asarray(emb, dtype=np.float32), wall, cpu)
            elif method in DICE_METHODS:
                saved = None if load_priors is None else load_priors / f"{task.spec.name}_seed{seed}"
                if model is None and saved is not None and saved.exists():
                    model = dice.models.DicePrior.load(saved, device="cpu")
                if model is None:
                    training = None if n_steps is None else dice.tl.TrainSettings(n_updates=n_steps)
                    model, train_seconds, train_cpu = _timed(
                        lambda training=training: dice.tl.train_prior(
                            task.ref, n_comps=k_spec, settings=training, seed=seed, progress=False
                        )
                    )
                    if save_priors is not None:
                        model.save(save_priors / f"{task.spec.name}_seed{seed}", overwrite=True)
                settings = posterior_settings(method, paper_n_iter=paper_n_iter)
                query = task.query.copy()
                _, wall, cpu = _timed(
                    lambda q=query, m=model, settings=settings: dice.tl.denoise(
                        q, model=m, settings=settings, seed=seed, progress=False
                    )
                )
                extra = {
                    "train_seconds": train_seconds,
                    "train_cpu_seconds": train_cpu,
                    "denoise_seconds": wall,
                    "denoise_cpu_seconds": cpu,
                    "noise_var_mean": float(query.uns["dice"]["noise_var_mean"]),
                }
                score(method, query.obsm["X_dice"], train_seconds + wall, train_cpu + cpu, extra)
            else:
                raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
        except Exception as error:  # one failing peer must not stop the benchmark
            log(f"  {method} FAILED: {error!r}")
            log(traceback.format_exc(limit=3))
            records.append({**base, "method": method, "error": repr(error)})
    return records


# ----------------------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------------------
def _fmt(mean: float, sd: float, digits: int = 3) -> str:
    if pd.isna(mean):
        return "–"
    if pd.isna(sd):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def task_table(frame: pd.DataFrame) -> str:
    """Markdown table (methods x metrics, mean ± sd over seeds) for one task's records."""
    ok = frame[frame.get("error", pd.Series(index=frame.index, dtype=object)).isna()]
    order = [m for m in METHODS if m in set(ok["method"])] + sorted(set(ok["method"]) - set(METHODS))
    head = ["method", "n"] + [h for _, h, _ in TABLE_METRICS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    best: dict[str, float] = {}
    for key, _, higher in TABLE_METRICS:
        if key in ("seconds", "cpu_seconds"):
            continue
        means = ok.groupby("method")[key].mean()
        best[key] = means.max() if higher else means.min()
    for method in order:
        sub = ok[ok["method"] == method]
        cells = [LABELS.get(method, method), str(len(sub))]
        for key, _, _ in TABLE_METRICS:
            digits = 1 if key in ("seconds", "cpu_seconds") else 3
            mean, sd = sub[key].mean(), sub[key].std(ddof=1)
            text = _fmt(mean, sd, digits)
            if key in best and np.isclose(mean, best[key]):
                text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison(frame: pd.DataFrame, dice_method: str = "dice_default") -> str:
    """DICE minus each peer, paired by seed, for ARI and NMI (oracle and stable)."""
    ok = frame[frame.get("error", pd.Series(index=frame.index, dtype=object)).isna()]
    if dice_method not in set(ok["method"]):
        return ""
    keys = ("leiden_oracle_ari", "leiden_oracle_nmi", "leiden_stable_ari", "leiden_stable_nmi")
    wide = {key: ok.pivot_table(index="seed", columns="method", values=key) for key in keys}
    lines = [
        f"{LABELS[dice_method]} minus each method, paired by seed (mean ± sd of the per-seed difference); "
        "**bold** where |mean| exceeds both the sd of the paired difference and the larger of the two "
        "methods' seed sd.",
        "",
        "| vs | ΔARI oracle | ΔNMI oracle | ΔARI stable | ΔNMI stable |",
        "|---|---|---|---|---|",
    ]
    others = [m for m in METHODS if m in set(ok["method"]) and m != dice_method]
    for other in others:
        cells = [LABELS[other]]
        for key in keys:
            w = wide[key]
            if other not in w or dice_method not in w:
                cells.append("–")
                continue
            diff = (w[dice_method] - w[other]).dropna()
            mean, sd = diff.mean(), diff.std(ddof=1)
            spread = max(w[dice_method].std(ddof=1), w[other].std(ddof=1))
            text = f"{mean:+.3f} ± {sd:.3f}" if not pd.isna(sd) else f"{mean:+.3f}"
            if len(diff) > 1 and abs(mean) > max(sd, spread if not pd.isna(spread) else 0):
                text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(frame: pd.DataFrame, dice_method: str = "dice_default") -> str:
    """One line: does DICE beat every peer on oracle ARI and NMI by more than the seed spread?"""
    ok = frame[frame.get("error", pd.Series(index=frame.index, dtype=object)).isna()]
    if dice_method not in set(ok["method"]):
        return ""
    parts = []
    for key, name in (("leiden_oracle_ari", "ARI"), ("leiden_oracle_nmi", "NMI")):
        stats = ok.groupby("method")[key].agg(["mean", "std"])
        peers_only = stats.drop(index=[m for m in DICE_METHODS if m in stats.index])
        if peers_only.empty:
            continue
        best = peers_only["mean"].idxmax()
        d, p = stats.loc[dice_method], peers_only.loc[best]
        margin = d["mean"] - p["mean"]
        spreads = [x for x in (d["std"], p["std"]) if not pd.isna(x)]
        spread = max(spreads) if spreads else 0.0
        if margin > spread:
            word = "wins"
        elif margin < -spread:
            word = "loses"
        else:
            word = "ties (difference within the seed spread)"
        parts.append(
            f"{name}: {LABELS[dice_method]} {d['mean']:.3f} vs best peer {LABELS[best]} "
            f"{p['mean']:.3f} (Δ {margin:+.3f}, seed sd ≤ {spread:.3f}) → {word}"
        )
    return "; ".join(parts)


def write_report(records: pd.DataFrame, path: Path, *, header: str = "") -> None:
    """Write ``real.md``: a header (the command and its wall time), then per task a table and comparisons."""
    out = [header.rstrip(), ""] if header else []
    for name in [t for t in TASKS if t in set(records["task"])]:
        frame = records[records["task"] == name]
        spec = TASKS[name]
        first = frame.iloc[0]
        n_scored = int(first["n_cells"]) if not pd.isna(first.get("n_cells")) else "?"
        out += [
            f"## {name}: {spec.title}",
            "",
            f"Seeds {sorted(set(frame['seed']))}; reference {int(first['n_ref'])} cells, query "
            f"{int(first['n_query'])} cells ({n_scored} labelled and scored), {int(first['n_genes'])} genes, "
            f"k = {int(first['k'])}.",
            "",
            task_table(frame),
            "",
        ]
        for dm in DICE_METHODS:
            v = verdict(frame, dm)
            if v:
                out += [f"- {v}"]
        out += [""]
        comp = comparison(frame)
        if comp:
            out += [comp, ""]
        errs = frame[frame.get("error", pd.Series(index=frame.index, dtype=object)).notna()]
        for _, row in errs.iterrows():
            out.append(f"- FAILED: {row['method']} seed {row['seed']}: {row['error']}")
    path.write_text("\n".join(out).rstrip() + "\n")


#: Largest units first, so that two workers finish together.
UNIT_ORDER: tuple[str, ...] = ("worm", "cbmc", "pbmc3k_to_4k", "cellbench")


def run_unit(
    name: str,
    seed: int,
    methods: Sequence[str],
    *,
    quick: dict[str, Any],
    save_priors: Path | None,
    load_priors: Path | None,
    started: float,
) -> list[dict[str, Any]]:
    """Prepare one task for one seed and run :func:`run_task_seed` on it (a worker's unit of work)."""
    set_threads()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        task = prepare_task(
            name, seed, max_ref_cells=quick.get("max_ref_cells"), max_query_cells=quick.get("max_query_cells")
        )
    print(
        f"[{time.perf_counter() - started:7.1f}s] {name} seed {seed}: {task.notes} "
        f"(prepared in {time.perf_counter() - t0:.1f}s)",
        flush=True,
    )
    return run_task_seed(
        task,
        methods,
        n_steps=quick.get("n_steps"),
        paper_n_iter=quick.get("paper_n_iter"),
        scvi_epochs=quick.get("scvi_epochs"),
        save_priors=save_priors,
        load_priors=load_priors,
        log=lambda s: print(s, flush=True),
    )


def _append(csv: Path, records: list[dict[str, Any]]) -> None:
    frame = pd.DataFrame(records)
    if csv.exists():
        frame = pd.concat([pd.read_csv(csv), frame], ignore_index=True)
    frame.to_csv(csv, index=False)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--resume", action="store_true", help="skip (task, seed, method) already recorded")
    parser.add_argument("--report-only", action="store_true", help="rebuild the markdown from the CSV")
    parser.add_argument("--quick", action="store_true", help="smoke run (tiny data, short training)")
    parser.add_argument("--header", default=None, help="text placed at the top of the report")
    parser.add_argument(
        "--load-priors",
        type=Path,
        default=None,
        help="load DICE priors saved by --save-priors instead of training them",
    )
    parser.add_argument(
        "--save-priors",
        type=Path,
        default=None,
        help="save each trained DICE prior here (for real_ablation.py --priors)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="(task, seed) units run at once, one thread each (default 2 = this machine's cores)",
    )
    args = parser.parse_args(argv)

    tasks = [t for t in args.tasks.split(",") if t]
    methods = [m for m in args.methods.split(",") if m]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    for t in tasks:
        if t not in TASKS:
            parser.error(f"unknown task {t!r}; choose from {list(TASKS)}")
    for m in methods:
        if m not in METHODS:
            parser.error(f"unknown method {m!r}; choose from {list(METHODS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    csv = args.out / RECORDS_NAME
    started = time.perf_counter()
    cpu_started = time.process_time()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    children_started = usage.ru_utime + usage.ru_stime

    if not args.report_only:
        set_threads()
        done: set[tuple[str, int, str]] = set()
        if args.resume and csv.exists():
            old = pd.read_csv(csv)
            ok = old[old["error"].isna()] if "error" in old else old
            done = set(zip(ok["task"], ok["seed"].astype(int), ok["method"], strict=True))
        elif csv.exists():
            csv.unlink()
        quick = QUICK if args.quick else {}
        units = [
            (name, seed, [m for m in methods if (name, seed, m) not in done])
            for name in sorted(tasks, key=UNIT_ORDER.index)
            for seed in seeds
        ]
        units = [u for u in units if u[2]]
        run = functools.partial(
            run_unit, quick=quick, save_priors=args.save_priors, load_priors=args.load_priors, started=started
        )
        if args.jobs > 1 and len(units) > 1:
            # spawn, not fork: each worker starts its own torch with one thread
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
                futures = [pool.submit(run, *unit) for unit in units]
                for future in as_completed(futures):
                    _append(csv, future.result())
        else:
            for unit in units:
                _append(csv, run(*unit))
    # the workers' CPU time is counted once they have exited (the pool is closed by now)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started + children.ru_utime + children.ru_stime - children_started
    if not csv.exists():
        print("no records")
        return 1
    records = pd.read_csv(csv)
    header = args.header
    if header is None:
        header = (
            "# Real-data benchmark (reference → query)\n\n"
            "Generated by `benchmarks/real.py` (protocol in its module docstring; tasks and preprocessing in "
            "`benchmarks/_real_tasks.py`). Raw records: `real_records.csv`.\n\n"
            f"This run: `--tasks {','.join(tasks)} --methods {','.join(methods)} "
            f"--seeds {','.join(map(str, seeds))}`{' --quick' if args.quick else ''}: "
            f"wall {wall / 60:.1f} min with --jobs {args.jobs} (one thread per job), "
            f"CPU {cpu / 60:.1f} min."
        )
    write_report(records, args.out / REPORT_NAME, header=header)
    print(f"done in {wall:.0f}s wall, {cpu:.0f}s CPU; wrote {args.out / REPORT_NAME}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
