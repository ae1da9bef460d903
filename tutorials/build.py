"""Build the tutorial notebooks from their sources and execute them, so the stored outputs are fresh.

::

    python tutorials/build.py                  # all notebooks
    python tutorials/build.py 02_label_transfer  # one (name without .py)

Each notebook ``tutorials/<name>.ipynb`` is generated from ``tutorials/src/<name>.py``, a py:percent file:
``# %%`` starts a code cell, ``# %% [markdown]`` a markdown cell whose lines are ``#``-commented. The sources
are the ones to edit; the notebooks are written only by this script (``tests/test_tutorials.py`` checks
that they match their sources).

Execution uses the ``python3`` kernel of the interpreter that runs this script, in ``tutorials/``. Thread
counts default to 2 (``OMP_NUM_THREADS`` etc., unless already set), and ``DICE_DATA_DIR`` defaults to
``../shared/data`` beside the repository when that folder exists (the PBMC datasets are not shipped in the
package; see ``docs/tutorials.md``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "src"
REPO = HERE.parent
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
KERNEL = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def default_data_dir() -> Path | None:
    """``$DICE_DATA_DIR``, else ``../shared/data`` beside the repository when it exists, else ``None``."""
    if os.environ.get("DICE_DATA_DIR"):
        return Path(os.environ["DICE_DATA_DIR"])
    beside = REPO.parent / "shared" / "data"
    return beside if beside.is_dir() else None


def kernel_env(threads: int = 2) -> dict[str, str]:
    """Environment for the kernel: the current one, with thread counts and the data folder defaulted."""
    env = dict(os.environ)
    for var in THREAD_VARS:
        env.setdefault(var, str(threads))
    data_dir = default_data_dir()
    if data_dir is not None:
        env["DICE_DATA_DIR"] = str(data_dir)
    env.setdefault("JUPYTER_PLATFORM_DIRS", "1")  # jupyter_core's path-migration notice
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # debugpy's frozen-modules notice in the kernel
    return env


def parse_cells(text: str) -> list[tuple[str, str]]:
    """Split a py:percent source into ``(kind, source)`` cells, kind ``"code"`` or ``"markdown"``."""
    cells: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("# %%"):
            kind = "markdown" if "[markdown]" in line else "code"
            cells.append((kind, []))
        elif cells:
            cells[-1][1].append(line)
        elif line.strip() and not line.startswith("#"):
            raise ValueError("a py:percent source must start with a '# %%' cell marker")
    out = []
    for kind, lines in cells:
        if kind == "markdown":
            lines = [line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines]
        source = "\n".join(lines).strip("\n")
        if source:
            out.append((kind, source))
    return out


def notebook_from_source(path: Path) -> nbformat.NotebookNode:
    """An unexecuted notebook holding the cells of the py:percent file ``path``."""
    nb = nbformat.v4.new_notebook()
    make = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell}
    nb.cells = [make[kind](source) for kind, source in parse_cells(path.read_text(encoding="utf-8"))]
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"  # stable ids: rebuilding does not churn the diff
    nb.metadata["kernelspec"] = dict(KERNEL)
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def execute(nb: nbformat.NotebookNode, *, cwd: Path, timeout: int = 600, env: dict | None = None):
    """Run every cell of ``nb`` in a fresh kernel (in place); raises on the first failing cell."""
    from nbclient import NotebookClient

    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
        record_timing=True,
    )
    client.execute(env=env if env is not None else kernel_env(), cwd=str(cwd))
    return nb


def cell_seconds(nb: nbformat.NotebookNode) -> list[tuple[int, float]]:
    """``(cell index, seconds)`` of the executed code cells, and the timing metadata removed (clean diffs)."""
    from datetime import datetime

    out = []
    for i, cell in enumerate(nb.cells):
        timing = cell.get("metadata", {}).pop("execution", None)
        if timing and "iopub.execute_input" in timing and "shell.execute_reply" in timing:
            start, end = (
                datetime.fromisoformat(timing[k].rstrip("Z")) for k in ("iopub.execute_input", "shell.execute_reply")
            )
            out.append((i, (end - start).total_seconds()))
    return out


def build(name: str) -> tuple[float, list[tuple[int, float]]]:
    """Regenerate and execute ``tutorials/<name>.ipynb``; returns the seconds it took, and per code cell."""
    nb = notebook_from_source(SOURCES / f"{name}.py")
    started = time.perf_counter()
    execute(nb, cwd=HERE)
    seconds = time.perf_counter() - started
    per_cell = cell_seconds(nb)
    nb.metadata["language_info"] = {"name": "python", "version": ".".join(map(str, sys.version_info[:3]))}
    nbformat.validate(nb)
    nbformat.write(nb, HERE / f"{name}.ipynb")
    return seconds, per_cell


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebooks to build (default: all sources in tutorials/src)")
    names = parser.parse_args(argv).names or sorted(p.stem for p in SOURCES.glob("*.py"))
    for name in names:
        seconds, per_cell = build(name)
        slowest = ", ".join(f"cell {i}: {s:.0f} s" for i, s in sorted(per_cell, key=lambda c: -c[1])[:3])
        print(f"{name}.ipynb: executed in {seconds:.0f} s (slowest {slowest})")


if __name__ == "__main__":
    main()
