#!/usr/bin/env bash
# Create (or reuse) a virtualenv with the peer methods of the DICE benchmark.
#
#   bash benchmarks/install_peers.sh [VENV]        # default VENV=.venv-peers (relative to the repo root)
#
# torch is installed FIRST at the pinned CPU build, and every later step runs with
# `-c constraints.txt` (which pins torch==2.13.0), so pip never resolves an open torch
# requirement (that would pull a multi-GB CUDA build). Fix-ups, in order:
#   * magic-impute -> scprep pins pandas<2.1, which cannot import with numpy 2: reinstall pandas==2.3.3
#   * halra 0.1.0 (ALRA port) declares stale deps: install with --no-deps
#   * scanpy.tl.ingest fails with pynndescent 0.7.0: pin pynndescent<0.7
#   * dice itself, editable
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${1:-.venv-peers}"
PY="${PYTHON:-python3}"
CONSTRAINTS="$ROOT/constraints.txt"

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install --upgrade pip
"${PIP[@]}" install "torch==2.13.0" -c "$CONSTRAINTS"
"${PIP[@]}" install -r benchmarks/requirements-peers.txt -c "$CONSTRAINTS"
"${PIP[@]}" install "pandas==2.3.3" -c "$CONSTRAINTS"
"${PIP[@]}" install --no-deps "halra==0.1.0"
"${PIP[@]}" install "pynndescent<0.7" -c "$CONSTRAINTS"   # no-op when the pin above held
"${PIP[@]}" install -e "$ROOT" -c "$CONSTRAINTS"

# Sanity: no CUDA wheels, the pinned torch, and every peer imports.
if "${PIP[@]}" list 2>/dev/null | grep -qi '^nvidia'; then
    echo "ERROR: CUDA (nvidia-*) packages were installed into $VENV" >&2
    exit 1
fi
"$VENV/bin/python" - <<'PY'
import torch
assert torch.__version__.startswith("2.13.0"), torch.__version__
assert not torch.version.cuda, "CUDA build of torch"
import magic, halra, scvi, celltypist, harmonypy, scanpy, pynndescent, pandas, dice  # noqa: F401
print("peers OK: torch", torch.__version__, "scvi", scvi.__version__, "celltypist", celltypist.__version__,
      "magic", magic.__version__, "pandas", pandas.__version__, "pynndescent", pynndescent.__version__)
PY
