"""Shallow queries: a deep reference, a query thinned to a fraction ``f`` of its depth, dice beside its peers.

The protocol of issue 11. For each task and seed a reference and a query are prepared as in
``benchmarks/real.py`` (``_real_tasks``; CBMC and worm split 80 / 20 by label), the query's raw counts are
binomially thinned to ``f`` (seeded by task, seed and ``f``: what a shallower run of the same cells gives)
and re-normalised (``normalize_total(1e4)`` + ``log1p`` over the reference's genes). Everything a method
learns comes from the reference; the thinned query is only mapped.

Methods
-------
``dice``        :func:`dice.tl.train_prior` on the reference (raw counts in ``layers["counts"]``, default
                settings), :func:`dice.tl.transfer_labels` of the query (default settings: count likelihood,
                calibration at the query's depth). Embedding: ``obsm["X_dice"]``.
``pca``         the query projected on the reference's PCA loadings (``V^T x``, fitted as DICE fits them before
                any count refit); labels by 15-NN among the reference's projections.
``knn_smooth``  ``pca`` averaged over each query cell's 10 nearest query neighbours (the paper's kNN peer).
``magic``       MAGIC on the query's reference-loading PCA (the paper's use).
``scarches``    scVI (10-d, ``n_layers=1``) trained on the reference counts (``--scvi-epochs``), the query mapped
                scArches-style: ``SCVI.load_query_data`` (query = a new batch) and ``--query-epochs`` of
                surgery with the reference weights frozen; labels by 15-NN in the latent space.
``ingest``      ``scanpy.tl.ingest`` (labels only).
``celltypist``  CellTypist trained on the reference (labels and probabilities).
``naive_bayes`` multinomial naive Bayes on the raw counts, one expression profile per reference label.

Metrics on the query's labelled cells: label accuracy, macro-F1, ECE (10 bins) and the share of cells wrong
with confidence above 0.5 (methods with probabilities) and the share that those confidences imply, were they
calibrated (``mean((1 - c) [c > 0.5])``: how sharp the method is); label-set coverage and size (dice); Leiden ARI / NMI
of the query embedding at the best resolution (``oracle``) and at the label-free one (``stable``; both from
:func:`dice.metrics.leiden_sweep`); fidelity: ``sum ||e_f - e_1||^2 / sum ||e_1 - mean(e_1)||^2``, each
shallow query cell's embedding against the same cell's full-depth embedding by the same method (thinning
makes the truth known; scale-free, so methods compare).

Run (peer venv, ``bash benchmarks/install_peers.sh``; ``DICE_DATA_DIR`` points at the shared data)::

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 DICE_DATA_DIR=../shared/data \\
        .venv-peers/bin/python benchmarks/depth.py --tasks cbmc pbmc3k_to_4k cellbench worm --seeds 0 1 2 3 4

Records append to ``results/depth.csv`` (one row per task, seed, f and method; a rerun of the same keys
replaces them); ``--report`` rewrites ``results/depth.md`` from the CSV.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from depth_targets import target_lines  # noqa: E402  (the benchmarks folder is on the path only now)

FRACTIONS = (1.0, 0.5, 0.2, 0.1, 0.05)
RESULTS = HERE / "results" / "depth.csv"
REPORT = HERE / "results" / "depth.md"
TASK_NAMES = ("cbmc", "pbmc3k_to_4k", "cellbench", "worm")
LABEL = "_depth_label"
EMBEDDING_METHODS = ("dice", "pca", "knn_smooth", "magic", "scarches")
LABEL_METHODS = ("dice", "pca", "scarches", "ingest", "celltypist", "naive_bayes")


def thin(counts, fraction: float, seed: int | list[int]) -> sp.csr_matrix:
    """Binomial thinning of raw counts (each count kept with probability ``fraction``)."""
    from dice.likelihood import thin_counts

    counts = sp.csr_matrix(counts, dtype=np.float64)
    if fraction >= 1.0:
        return counts
    return thin_counts(counts, fraction, np.random.default_rng(np.random.SeedSequence(seed)))


def shallow_query(query, fraction: float, seed: int | list[int]):
    """The query with its counts thinned and re-normalised (``layers["counts"]`` kept)."""
    import anndata as ad
    import scanpy as sc

    counts = thin(query.layers["counts"], fraction, seed).astype(np.float32)
    out = ad.AnnData(counts, obs=query.obs[[]].copy(), var=query.var[[]].copy())
    out.layers["counts"] = counts.copy()
    sc.pp.normalize_total(out, target_sum=1e4)
    sc.pp.log1p(out)
    return out


def label_metrics(truth, predicted, confidence=None) -> dict:
    from sklearn.metrics import f1_score

    import dice

    right = np.asarray(predicted).astype(str) == truth
    out = {"accuracy": float(right.mean()), "macro_f1": float(f1_score(truth, predicted, average="macro"))}
    if confidence is not None:
        confidence = np.asarray(confidence, dtype=np.float64)
        out.update(
            ece=dice.metrics.expected_calibration_error(confidence, right),
            confidence=float(confidence.mean()),
            confident_wrong=float(np.mean(~right & (confidence > 0.5))),
            # the share that these confidences imply, were they calibrated: how sharp the method is
            confident_wrong_implied=float(np.mean((1.0 - confidence) * (confidence > 0.5))),
        )
    return out


def cluster_metrics(embedding, truth, seed: int) -> dict:
    import dice

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sweep = dice.metrics.leiden_sweep(np.asarray(embedding, dtype=np.float32), truth, seed=seed)
    return {
        "ari": float(sweep.ari[sweep.oracle_index]),
        "nmi": float(sweep.nmi[sweep.oracle_index]),
        "ari_stable": float(sweep.ari[sweep.stable_index]),
        "nmi_stable": float(sweep.nmi[sweep.stable_index]),
    }


def fidelity(embedding, full) -> float:
    embedding, full = np.asarray(embedding, np.float64), np.asarray(full, np.float64)
    return float(np.sum((embedding - full) ** 2) / np.sum((full - full.mean(axis=0)) ** 2))


def knn_labels(ref_embedding, ref_labels, query_embedding, k: int = 15):
    from sklearn.neighbors import KNeighborsClassifier

    clf = KNeighborsClassifier(n_neighbors=k, algorithm="brute").fit(ref_embedding, ref_labels)
    proba = clf.predict_proba(query_embedding)
    return clf.classes_[proba.argmax(axis=1)], proba.max(axis=1)


def naive_bayes(ref_counts, ref_labels, query_counts):
    """Multinomial naive Bayes: one profile per label (pseudo-count 1 per gene), label frequencies as prior."""
    types, codes = np.unique(ref_labels, return_inverse=True)
    ref_counts = sp.csr_matrix(ref_counts, dtype=np.float64)
    member = sp.csr_matrix((np.ones(len(codes)), (codes, np.arange(len(codes)))), shape=(len(types), len(codes)))
    profiles = np.asarray((member @ ref_counts).todense()) + 1.0
    log_p = np.log(profiles / profiles.sum(axis=1, keepdims=True))
    log_prior = np.log(np.bincount(codes) / len(codes))
    scores = sp.csr_matrix(query_counts, dtype=np.float64) @ log_p.T + log_prior
    scores = np.asarray(scores) - np.max(scores, axis=1, keepdims=True)
    proba = np.exp(scores)
    proba /= proba.sum(axis=1, keepdims=True)
    return types[proba.argmax(axis=1)], proba.max(axis=1)


class ScArches:
    """scVI on the reference counts; queries mapped by scArches-style surgery (``load_query_data``)."""

    def __init__(self, ref_counts, *, seed: int, epochs: int, query_epochs: int):
        import scvi
        import torch

        torch.set_num_threads(1)
        scvi.settings.seed = seed
        scvi.settings.dl_num_workers = 0
        scvi.settings.verbosity = 30
        self.seed, self.query_epochs = seed, query_epochs
        self.ref = self._adata(ref_counts, "reference")
        scvi.model.SCVI.setup_anndata(self.ref, batch_key="batch")
        self.model = scvi.model.SCVI(self.ref, n_latent=10, n_layers=1, encode_covariates=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model.train(max_epochs=epochs, accelerator="cpu", devices=1, enable_progress_bar=False)
        self.ref_latent = self.model.get_latent_representation()

    @staticmethod
    def _adata(counts, batch: str):
        import anndata as ad

        a = ad.AnnData(sp.csr_matrix(counts, dtype=np.float32))
        a.var_names = [f"g{j}" for j in range(a.n_vars)]
        a.obs_names = [f"{batch}{i}" for i in range(a.n_obs)]
        a.obs["batch"] = pd.Categorical([batch] * a.n_obs)
        return a

    def map(self, query_counts) -> np.ndarray:
        import scvi

        scvi.settings.seed = self.seed
        q = self._adata(query_counts, "query")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mapped = scvi.model.SCVI.load_query_data(q, self.model)
            mapped.train(
                max_epochs=self.query_epochs,
                accelerator="cpu",
                devices=1,
                enable_progress_bar=False,
                plan_kwargs={"weight_decay": 0.0},
            )
        return mapped.get_latent_representation()


def prepare(name: str, seed: int):
    """The task as this protocol uses it: ``_real_tasks.prepare_task``, stratified splits at 80 / 20."""
    import _real_tasks as rt

    spec = rt.TASKS[name]
    if spec.split == "stratified":
        rt.TASKS[name] = dataclasses.replace(spec, query_fraction=0.2)
    try:
        return rt.prepare_task(name, seed)
    finally:
        rt.TASKS[name] = spec


def train_settings(args):
    """DICE's training settings: the package default, with ``--count-loadings-width``, ``--ambient-fraction``
    and ``--count-dispersion`` when given."""
    import dice

    settings = dice.tl.TrainSettings()
    if args.ambient_fraction is not None:
        settings = settings.replace(ambient_fraction=args.ambient_fraction)
    if args.count_dispersion is not None:
        settings = settings.replace(count_dispersion=args.count_dispersion)
    if args.count_loadings_width is None:
        return settings
    width = None if args.count_loadings_width.lower() == "none" else float(args.count_loadings_width)
    return settings.replace(count_loadings_width=width)


def transfer_settings(args):
    """DICE's label-transfer settings: the package default, with ``--count-profiles`` when given."""
    import dice

    settings = dice.tl.TransferSettings()
    return settings if args.count_profiles is None else settings.replace(count_profiles=args.count_profiles)


def run_task(name: str, seed: int, args) -> list[dict]:
    import _real_tasks as rt
    import dice
    import peers
    from dice.pp._linear import LinearEmbedding

    spec = rt.TASKS[name]
    task = prepare(name, seed)
    ref, query = task.ref, task.query
    ref.obs[LABEL] = pd.Categorical(task.ref_labels)
    labelled = ~pd.isna(task.ref_labels)
    ref_labels = task.ref_labels[labelled].astype(str)
    evaluated = ~pd.isna(task.query_labels)
    truth = task.query_labels[evaluated].astype(str)
    started = time.perf_counter()
    model = dice.tl.train_prior(ref, n_comps=spec.n_comps, settings=train_settings(args), seed=seed, progress=False)
    timings = {"dice_train": time.perf_counter() - started}
    emb = LinearEmbedding.fit(ref.X, ref.var_names, n_comps=spec.n_comps)  # PCA's V, whatever DICE's V became
    ref_pca = emb.project(emb.standardize(rt._dense(ref.X).astype(np.float32)))
    scarches = None
    if "scarches" in args.methods:
        started = time.perf_counter()
        scarches = ScArches(ref.layers["counts"], seed=seed, epochs=args.scvi_epochs, query_epochs=args.query_epochs)
        timings["scarches_train"] = time.perf_counter() - started
    records, full = [], {}
    for fraction in args.fractions:
        q = shallow_query(query, fraction, seed=[seed, round(fraction * 1e4)])
        depth = float(np.median(np.asarray(q.layers["counts"].sum(axis=1)).ravel()))
        embeddings, labels = {}, {}
        timing = {}
        if "dice" in args.methods:
            started = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dice.tl.transfer_labels(
                    q, ref, model, labels_key=LABEL, seed=seed, progress=False, transfer=transfer_settings(args)
                )
            timing["dice"] = time.perf_counter() - started
            embeddings["dice"] = q.obsm["X_dice"]
            sets = q.obs["dice_label_set"].astype(str).to_numpy()[evaluated]
            labels["dice"] = (
                q.obs["dice_label"].astype(str).to_numpy(),
                q.obs["dice_label_confidence"].to_numpy(),
                {
                    "set_coverage": float(np.mean([t in s.split("|") for t, s in zip(truth, sets)])),
                    "set_size": float(q.obs["dice_label_set_size"].to_numpy()[evaluated].mean()),
                    "unassigned": float(np.mean(sets == "unassigned")),
                    "noise_sd": float(q.obs["dice_noise_sd"].mean()),
                    "uncertainty": float(q.obs["dice_uncertainty"].mean()),
                },
            )
        q_pca = emb.project(emb.standardize(rt._dense(q.X).astype(np.float32)))
        embeddings["pca"] = q_pca
        if "pca" in args.methods:
            lab, conf = knn_labels(ref_pca[labelled], ref_labels, q_pca)
            labels["pca"] = (lab, conf, {})
        if "knn_smooth" in args.methods:
            embeddings["knn_smooth"] = _smooth(q_pca)
        if "magic" in args.methods:
            started = time.perf_counter()
            embeddings["magic"] = _magic(q_pca, seed)
            timing["magic"] = time.perf_counter() - started
        if scarches is not None:
            started = time.perf_counter()
            latent = scarches.map(q.layers["counts"])
            timing["scarches"] = time.perf_counter() - started
            embeddings["scarches"] = latent
            lab, conf = knn_labels(scarches.ref_latent[labelled], ref_labels, latent)
            labels["scarches"] = (lab, conf, {})
        if "ingest" in args.methods or "celltypist" in args.methods:
            ref_l = ref[labelled].copy()
            ref_l.obs[LABEL] = ref_l.obs[LABEL].astype(str)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if "ingest" in args.methods:
                    result = peers.transfer_ingest(ref_l, q, LABEL, n_comps=spec.n_comps or 30, seed=seed)
                    labels["ingest"] = (result.labels, None, {})
                if "celltypist" in args.methods:
                    result = peers.transfer_celltypist(ref_l, q, LABEL, seed=seed)
                    labels["celltypist"] = (result.labels, result.confidence, {})
        if "naive_bayes" in args.methods:
            lab, conf = naive_bayes(ref.layers["counts"][np.flatnonzero(labelled)], ref_labels, q.layers["counts"])
            labels["naive_bayes"] = (lab, conf, {})
        if fraction == 1.0:
            full = {m: np.asarray(e) for m, e in embeddings.items()}
        for method in sorted(set(embeddings) | set(labels)):
            if method not in args.methods:
                continue
            row = {"task": name, "seed": seed, "f": fraction, "umis": depth, "method": method}
            if method in labels:
                lab, conf, extra = labels[method]
                row.update(label_metrics(truth, np.asarray(lab)[evaluated], None if conf is None else conf[evaluated]))
                row.update(extra)
            if method in embeddings:
                row.update(cluster_metrics(np.asarray(embeddings[method])[evaluated], truth, seed))
                if method in full:
                    row["fidelity"] = fidelity(embeddings[method], full[method])
            row["seconds"] = timing.get(method, np.nan)
            records.append(row)
        done = [r for r in records if r["f"] == fraction]
        summary = ", ".join(f"{r['method']} {r.get('accuracy', np.nan):.3f}/{r.get('ari', np.nan):.3f}" for r in done)
        print(f"{name} seed {seed} f={fraction} (acc/ARI): {summary}", flush=True)
    for row in records:
        row.update({f"{k}_seconds": v for k, v in timings.items()})
    return records


def _smooth(scores: np.ndarray, k: int = 10) -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(scores))
    _, idx = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(scores).kneighbors(scores)
    return scores[idx].mean(axis=1)


def _magic(scores: np.ndarray, seed: int) -> np.ndarray:
    import magic

    op = magic.MAGIC(knn=5, t=3, decay=1, n_pca=None, solver="exact", n_jobs=1, random_state=seed, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(op.fit_transform(scores.astype(np.float64)), dtype=np.float32)


def save(records: list[dict], path: Path = RESULTS) -> pd.DataFrame:
    new = pd.DataFrame(records)
    if path.exists():
        old = pd.read_csv(path)
        keys = ["task", "seed", "f", "method"]
        merged = old.merge(new[keys].drop_duplicates(), on=keys, how="left", indicator=True)
        old = old[merged["_merge"].to_numpy() == "left_only"]
        new = pd.concat([old, new], ignore_index=True)
    new = new.sort_values(["task", "method", "f", "seed"], ascending=[True, True, False, True])
    path.parent.mkdir(parents=True, exist_ok=True)
    new.to_csv(path, index=False, float_format="%.5g")
    return new


def report(path: Path = RESULTS, out: Path = REPORT) -> str:
    """Markdown tables (mean ± sd over seeds) per task from the CSV."""
    records = pd.read_csv(path)
    columns = [
        ("accuracy", "acc"),
        ("macro_f1", "macro-F1"),
        ("ece", "ECE"),
        ("confident_wrong", "wrong & conf>0.5"),
        ("confident_wrong_implied", "implied by conf."),
        ("set_coverage", "set cov."),
        ("ari", "ARI"),
        ("nmi", "NMI"),
        ("ari_stable", "ARI (label-free)"),
        ("fidelity", "fidelity err."),
    ]
    lines = [
        "# Shallow queries: dice and its peers from full depth to 5 %",
        "",
        "`benchmarks/depth.py` (protocol in its docstring). Mean ± sd over seeds; `n` = seeds. Fidelity: squared",
        "error to the same method's full-depth embedding of the same cells, over that embedding's variance.",
        "",
    ]
    lines += [*summary_lines(records), "", *target_lines(records), ""]
    for task, rows in records.groupby("task", sort=False):
        lines += [f"## {task}", "", "| f | UMIs | method | n | " + " | ".join(c[1] for c in columns) + " |"]
        lines.append("|" + "---|" * (4 + len(columns)))
        for (f, method), g in sorted(rows.groupby(["f", "method"]), key=lambda x: (-x[0][0], x[0][1])):
            cells = []
            for col, _ in columns:
                v = g[col].dropna() if col in g else pd.Series(dtype=float)
                cells.append("" if v.empty else f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f}")
            lines.append(
                f"| {f:g} | {g['umis'].mean():.0f} | {method} | {g['seed'].nunique()} | " + " | ".join(cells) + " |"
            )
        lines.append("")
    text = "\n".join(lines)
    out.write_text(text)
    return text


def summary_lines(records: pd.DataFrame) -> list[str]:
    """One row per task and depth: DICE against the best peer on each metric (means over seeds)."""

    def mean(rows, method, metric):
        v = rows[rows["method"] == method][metric].dropna() if metric in rows else pd.Series(dtype=float)
        return np.nan if v.empty else float(v.mean())

    def best(rows, metric, methods, high=True):
        values = {m: mean(rows, m, metric) for m in methods}
        values = {m: v for m, v in values.items() if not np.isnan(v)}
        if not values:
            return ""
        m = (max if high else min)(values, key=values.get)
        return f"{values[m]:.3f} ({m})"

    peers_label = [m for m in LABEL_METHODS if m != "dice"]
    peers_embed = [m for m in EMBEDDING_METHODS if m != "dice"]
    lines = [
        "## At a glance: DICE against the best peer (means over seeds)",
        "",
        "| task | f | seeds | accuracy DICE | best peer | naive Bayes | ECE DICE | wrong & conf > 0.5 DICE | "
        "ARI DICE | ARI PCA | best peer ARI | fidelity err. DICE | best peer fidelity |",
        "|" + "---|" * 13,
    ]
    for task in records["task"].unique():
        for f in sorted(records[records["task"] == task]["f"].unique(), reverse=True):
            rows = records[(records["task"] == task) & (records["f"] == f)]
            fid = "" if f == 1 else f"{mean(rows, 'dice', 'fidelity'):.3f}"
            fid_peer = "" if f == 1 else best(rows, "fidelity", peers_embed, high=False)
            lines.append(
                f"| {task} | {f:g} | {rows['seed'].nunique()} | {mean(rows, 'dice', 'accuracy'):.3f} | "
                f"{best(rows, 'accuracy', peers_label)} | {mean(rows, 'naive_bayes', 'accuracy'):.3f} | "
                f"{mean(rows, 'dice', 'ece'):.3f} | {mean(rows, 'dice', 'confident_wrong'):.3f} | "
                f"{mean(rows, 'dice', 'ari'):.3f} | {mean(rows, 'pca', 'ari'):.3f} | "
                f"{best(rows, 'ari', peers_embed)} | {fid} | {fid_peer} |"
            )
    return lines


def readme_table(path: Path = RESULTS, task: str = "cbmc") -> str:
    """The README's short table: label accuracy and Leiden ARI of PCA, scArches and DICE from full to 5 % depth."""
    records = pd.read_csv(path)
    rows = records[records["task"] == task]

    def cell(f, method, metric):
        if metric not in rows:
            return ""
        v = rows[(rows["f"] == f) & (rows["method"] == method)][metric].dropna()
        return "" if v.empty else f"{v.mean():.2f}"

    lines = [
        "| depth (UMIs / cell) | label accuracy: PCA / scArches / **DICE** | DICE confidence | "
        "Leiden ARI: PCA / scArches / **DICE** |",
        "|---|---|---|---|",
    ]
    for f in sorted(rows["f"].unique(), reverse=True):
        umis = rows[rows["f"] == f]["umis"].mean()
        acc = " / ".join(cell(f, m, "accuracy") for m in ("pca", "scarches")) + f" / **{cell(f, 'dice', 'accuracy')}**"
        ari = " / ".join(cell(f, m, "ari") for m in ("pca", "scarches")) + f" / **{cell(f, 'dice', 'ari')}**"
        lines.append(f"| {f:.0%} ({umis:,.0f}) | {acc} | {cell(f, 'dice', 'confidence')} | {ari} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASK_NAMES), choices=TASK_NAMES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--fractions", nargs="+", type=float, default=list(FRACTIONS))
    parser.add_argument("--methods", nargs="+", default=sorted(set(EMBEDDING_METHODS) | set(LABEL_METHODS)))
    parser.add_argument("--scvi-epochs", type=int, default=100)
    parser.add_argument("--query-epochs", type=int, default=50)
    parser.add_argument(
        "--count-loadings-width", help="DICE's TrainSettings.count_loadings_width ('none': PCA's V; default: dice's)"
    )
    parser.add_argument(
        "--ambient-fraction", type=float, help="DICE's TrainSettings.ambient_fraction (default: dice's)"
    )
    parser.add_argument(
        "--count-dispersion",
        choices=["gene", "pooled", "local"],
        help="DICE's TrainSettings.count_dispersion (default: dice's)",
    )
    parser.add_argument("--count-profiles", type=int, help="DICE's TransferSettings.count_profiles (default: dice's)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--report", action="store_true", help="only rewrite results/depth.md from the CSV")
    args = parser.parse_args(argv)
    if args.report:
        print(report(args.out, args.out.with_suffix(".md")))
        print(readme_table(args.out))
        return
    if 1.0 not in args.fractions:
        args.fractions = [1.0, *args.fractions]  # the full-depth embedding is the fidelity reference
    args.fractions = sorted(set(args.fractions), reverse=True)
    import peers

    peers.set_single_thread()
    for name in args.tasks:
        for seed in args.seeds:
            started = time.perf_counter()
            records = run_task(name, seed, args)
            save(records, args.out)
            print(f"{name} seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)
    report(args.out, args.out.with_suffix(".md"))


if __name__ == "__main__":
    main()
