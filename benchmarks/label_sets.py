"""Per-label reliability of ``transfer_labels``: does the held-out report predict the query, and what do
label-conditional conformal sets buy over the pooled ones?

For each task (CBMC, PBMC3k -> PBMC4k and worm, split as in ``benchmarks/depth.py``), seed and depth
fraction ``f``: a DICE prior trained on the reference (default settings), the query thinned to ``f``
(``depth.shallow_query``, the same seeds as ``depth.py``), then ``transfer_labels`` with
``set_method="class_conformal"``. The probabilities do not depend on the set method, so the pooled
(default) sets are rebuilt from the pooled threshold in ``uns`` and both are scored on the same cells.

Records, per task, seed and f:

* ``held_out`` rows: each label with at least 10 held-out and 10 query cells, its held-out recall (the
  report in ``uns["dice_label_transfer"]["held_out"]``) beside its recall among the query's cells;
* ``sets`` rows, for the pooled and the label-conditional sets (each label's own threshold, never above
  the pooled one; before Dec 7, 11:00 the label's own threshold alone, whose rows are in git): coverage
  (true label in the set), the worst label's and the mean label's coverage (labels with at least 10
  query cells), mean set size, the share of singleton sets, and the share of the confidently wrong cells
  (wrong, confidence > 0.5) whose set holds the true label.

Run (the package's own environment is enough; ``DICE_DATA_DIR`` points at the shared data)::

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 DICE_DATA_DIR=../shared/data \\
        python benchmarks/label_sets.py --tasks cbmc pbmc3k_to_4k worm --seeds 0 1 2 3 4

Records go to ``results/label_sets.csv`` (a rerun of the same task and seed replaces its rows);
``--report`` rewrites ``results/label_sets.md`` from the CSV.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

# the package's rule for a warning (labels with MIN_CELLS held-out cells or more, recall below MIN_RECALL);
# MIN_CELLS also sets which labels the coverage and recall rows count
from dice.tl._confidence import label_sets  # the package's threshold sets, float ties included
from dice.tl._label_report import MIN_CELLS, MIN_RECALL

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

RESULTS = HERE / "results" / "label_sets.csv"
REPORT = HERE / "results" / "label_sets.md"
FRACTIONS = (1.0, 0.2, 0.05)
LABEL = "_sets_label"


def set_metrics(probabilities: np.ndarray, thresholds: np.ndarray, codes: np.ndarray, confident_wrong) -> dict:
    """Coverage and size of threshold label sets (``probabilities >= thresholds``, one threshold per label)
    for cells with true label ``codes`` (-1: a label the reference lacks, left out of the coverage)."""
    thresholds = np.asarray(thresholds)
    mask = label_sets(probabilities, thresholds, len(thresholds), "class_conformal", alpha=0.0)  # alpha: unused
    known = codes >= 0
    covered = mask[np.flatnonzero(known), codes[known]]
    per_label = [covered[codes[known] == c].mean() for c in np.unique(codes[known]) if (codes == c).sum() >= MIN_CELLS]
    size = mask.sum(axis=1)
    wrong = np.asarray(confident_wrong)[known]
    return {
        "coverage": float(covered.mean()),
        "worst_label_coverage": float(np.min(per_label)),
        "mean_label_coverage": float(np.mean(per_label)),
        "set_size": float(size.mean()),
        "singletons": float(np.mean(size == 1)),
        "confident_wrong": float(np.mean(np.asarray(confident_wrong))),
        "confident_wrong_covered": float(covered[wrong].mean()) if wrong.any() else np.nan,
    }


def recall_rows(held_out: dict, classes, truth: np.ndarray, predicted: np.ndarray) -> list[dict]:
    """Held-out recall beside query recall, per label with enough cells on both sides."""
    rows = []
    for i, name in enumerate(classes):
        own = truth == name
        if own.sum() >= MIN_CELLS and held_out["n_cells"][i] >= MIN_CELLS:
            rows.append(
                {
                    "label": name,
                    "n_query": int(own.sum()),
                    "n_held_out": int(held_out["n_cells"][i]),
                    "held_out_recall": float(held_out["recall"][i]),
                    "query_recall": float(np.mean(predicted[own] == name)),
                }
            )
    return rows


def run_task(name: str, seed: int, fractions) -> list[dict]:
    import _real_tasks as rt
    import depth
    import dice

    task = depth.prepare(name, seed)
    ref, query = task.ref, task.query
    ref.obs[LABEL] = pd.Categorical(task.ref_labels)
    model = dice.tl.train_prior(ref, n_comps=rt.TASKS[name].n_comps, seed=seed, progress=False)
    evaluated = ~pd.isna(task.query_labels)
    truth = np.asarray(task.query_labels)[evaluated].astype(str)
    records = []
    for f in fractions:
        q = depth.shallow_query(query, f, seed=[seed, round(f * 1e4)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dice.tl.transfer_labels(
                q,
                ref,
                model,
                labels_key=LABEL,
                seed=seed,
                progress=False,
                transfer=dice.tl.TransferSettings(set_method="class_conformal"),
            )
        info = q.uns["dice_label_transfer"]
        classes = [str(c) for c in info["classes"]]
        probabilities = q.obsm["dice_label_probabilities"].to_numpy()[evaluated][:, : len(classes)]
        predicted = q.obs["dice_label"].astype(str).to_numpy()[evaluated]
        confidence = q.obs["dice_label_confidence"].to_numpy()[evaluated]
        codes = np.array([classes.index(t) if t in classes else -1 for t in truth])
        wrong = (predicted != truth) & (confidence > 0.5)
        key = {"task": name, "seed": seed, "f": f}
        pooled = np.full(len(classes), info["conformal_threshold"])
        for method, thresholds in (("pooled", pooled), ("class_conformal", np.asarray(info["conformal_thresholds"]))):
            records.append(
                {**key, "kind": "sets", "sets": method, **set_metrics(probabilities, thresholds, codes, wrong)}
            )
        records += [
            {**key, "kind": "held_out", **row} for row in recall_rows(info["held_out"], classes, truth, predicted)
        ]
        print(f"{name} seed {seed} f={f}: done", flush=True)
    return records


def save(records: list[dict], path: Path = RESULTS) -> pd.DataFrame:
    """Append ``records``, replacing earlier rows of the same task and seed."""
    new = pd.DataFrame(records)
    if path.exists():
        old = pd.read_csv(path)
        done = set(zip(new["task"], new["seed"], strict=True))
        old = old[[(t, s) not in done for t, s in zip(old["task"], old["seed"], strict=True)]]
        new = pd.concat([old, new], ignore_index=True)
    new.to_csv(path, index=False)
    return new


def report(path: Path = RESULTS, out: Path = REPORT) -> str:
    """Markdown tables: the sets (mean ± sd over seeds) and the held-out recall's error on the query."""
    df = pd.read_csv(path)
    lines = [
        "# Per-label reliability of transfer_labels: the held-out report and label-conditional sets",
        "",
        "`benchmarks/label_sets.py` (protocol in its docstring). Mean ± sd over seeds.",
        "",
        '## Label sets: pooled (default) against label-conditional (`set_method="class_conformal"`)',
        "",
        "| task | f | seeds | sets | coverage | worst label's coverage | mean label coverage | set size | "
        "singletons | confidently wrong | ... whose set holds the truth |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    sets = df[df["kind"] == "sets"]
    metrics = (
        "coverage",
        "worst_label_coverage",
        "mean_label_coverage",
        "set_size",
        "singletons",
        "confident_wrong",
        "confident_wrong_covered",
    )
    for (task, f, method), rows in sets.groupby(["task", "f", "sets"], sort=True):
        cells = " | ".join(f"{rows[m].mean():.3f} ± {rows[m].std(ddof=1) if len(rows) > 1 else 0:.3f}" for m in metrics)
        lines.append(f"| {task} | {f:g} | {rows['seed'].nunique()} | {method} | {cells} |")
    held = df[df["kind"] == "held_out"].copy()
    held["error"] = held["held_out_recall"] - held["query_recall"]
    held["warned"] = held["held_out_recall"] < MIN_RECALL
    lines += [
        "",
        "## Does the held-out recall predict the query's? (labels with ≥ 10 cells on both sides)",
        "",
        "| task | f | labels × seeds | mean abs. error | correlation | warned (held-out < 0.5) | "
        "... of which query recall < 0.5 | not warned, query recall < 0.5 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (task, f), rows in held.groupby(["task", "f"], sort=True):
        warned = rows[rows["warned"]]
        missed = rows[~rows["warned"] & (rows["query_recall"] < 0.5)]
        corr = rows["held_out_recall"].corr(rows["query_recall"]) if len(rows) > 2 else np.nan
        lines.append(
            f"| {task} | {f:g} | {len(rows)} | {rows['error'].abs().mean():.3f} | {corr:.2f} | {len(warned)} "
            f"({', '.join(sorted(set(warned['label'])))}) | {int((warned['query_recall'] < 0.5).sum())} | "
            f"{len(missed)} ({', '.join(sorted(set(missed['label'])))}) |"
        )
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    return text


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["cbmc", "pbmc3k_to_4k", "worm"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--fractions", nargs="+", type=float, default=list(FRACTIONS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--report", action="store_true", help="only rewrite the report from the CSV")
    args = parser.parse_args(argv)
    if not args.report:
        import torch

        torch.set_num_threads(1)
        for name in args.tasks:
            for seed in args.seeds:
                save(run_task(name, seed, args.fractions), args.out)
    print(report(args.out, args.out.with_suffix(".md")))


if __name__ == "__main__":
    main()
