#!/usr/bin/env bash
# GPU check for the moments a CUDA machine is lent (issue 12): run after `make install` with
#
#     bash benchmarks/gpu_check.sh
#
# On CUDA it times, on synthetic Setup 1 data (dice.datasets.synthetic, offline):
#   * train_prior on 10,000 cells (default TrainSettings),
#   * denoise of 100,000 cells (default PosteriorSettings),
#   * the paper protocol (PosteriorSettings.paper()) on 1,000 cells,
# checks that uns["dice"]["device"] records the GPU, runs the CUDA-only sampler tests (no host sync inside the
# reverse diffusion), and denoises the same 5,000 cells with the same model and seed on the CPU and on CUDA:
# the posterior mean X_dice (deterministic, one Tweedie call) must agree to DICE_GPU_TOL (default 1e-4,
# relative to max |X_dice|). It prints a small table and exits 1 on disagreement (or a failed test).
#
# Without CUDA it says so, times a tiny size on the CPU (1,000 training cells with 200 updates, 2,000 denoised,
# 100 with the paper protocol) and exits 0.
#
# Environment: PY (default .venv/bin/python), DICE_GPU_TOL.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
PY="${PY:-.venv/bin/python}"
if [ ! -x "$PY" ]; then
    echo "gpu_check: $PY not found; run 'make install' first" >&2
    exit 2
fi

"$PY" - <<'PYEOF'
import os
import subprocess
import sys
import time

import numpy as np
import torch

import dice

TOL = float(os.environ.get("DICE_GPU_TOL", "1e-4"))
CUDA = torch.cuda.is_available()
if CUDA:
    DEVICE = "cuda"
    SIZES = {"train": 10_000, "denoise": 100_000, "paper": 1_000, "agree": 5_000}
    TRAINING = dice.tl.TrainSettings()
    print(f"gpu_check: CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
else:
    DEVICE = "cpu"
    SIZES = {"train": 1_000, "denoise": 2_000, "paper": 100, "agree": 0}
    TRAINING = dice.tl.TrainSettings(n_updates=200)
    why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
    print(f"gpu_check: no CUDA here ({why}; torch {torch.__version__}): CPU timings of a tiny size only.")

rows = []


def sync():
    if CUDA:
        torch.cuda.synchronize()


def timed(label, n_cells, device, fn):
    sync()
    started = time.perf_counter()
    out = fn()
    sync()
    seconds = time.perf_counter() - started
    rows.append((label, n_cells, device, seconds, n_cells / seconds))
    print(f"  {label}: {seconds:.1f} s", flush=True)
    return out


reference, query = dice.datasets.synthetic(
    "1", n_reference=SIZES["train"], n_query=max(SIZES["denoise"], SIZES["agree"]), seed=0
)
if CUDA:  # CUDA context and kernels start here, not inside the first timing
    warm = query[:256].copy()
    dice.tl.denoise(warm, n_comps=5, training=dice.tl.TrainSettings(n_updates=20), device="cuda", progress=False)

model = timed(
    "train_prior",
    SIZES["train"],
    DEVICE,
    lambda: dice.tl.train_prior(reference, settings=TRAINING, seed=0, device=DEVICE, progress=False),
)
failures = []
if model.config["device"].split(":")[0] != DEVICE:
    failures.append(f"train_prior recorded device {model.config['device']!r}, expected {DEVICE!r}")

big = query[: SIZES["denoise"]].copy()
timed("denoise (default)", big.n_obs, DEVICE, lambda: dice.tl.denoise(big, model, seed=0, progress=False))
if big.uns["dice"]["device"].split(":")[0] != DEVICE:
    failures.append(f"denoise recorded device {big.uns['dice']['device']!r}, expected {DEVICE!r}")

small = query[: SIZES["paper"]].copy()
timed(
    "denoise (paper protocol)",
    small.n_obs,
    DEVICE,
    lambda: dice.tl.denoise(small, model, settings="paper", seed=0, progress=False),
)

agreement = None
if CUDA:
    same = {d: query[: SIZES["agree"]].copy() for d in ("cpu", "cuda")}
    for device in ("cpu", "cuda"):
        timed(
            "denoise (default), agreement set",
            SIZES["agree"],
            device,
            lambda d=device: dice.tl.denoise(same[d], model, seed=0, device=d, progress=False),
        )
    mean_cpu, mean_cuda = same["cpu"].obsm["X_dice"], same["cuda"].obsm["X_dice"]
    scale = max(1.0, float(np.abs(mean_cpu).max()))
    agreement = {
        "X_dice": float(np.abs(mean_cpu - mean_cuda).max()),
        "X_dice_pca": float(np.abs(same["cpu"].obsm["X_dice_pca"] - same["cuda"].obsm["X_dice_pca"]).max()),
    }
    u_cpu, u_cuda = same["cpu"].obs["dice_uncertainty"].to_numpy(), same["cuda"].obs["dice_uncertainty"].to_numpy()
    finite = np.isfinite(u_cpu) & np.isfinite(u_cuda)
    if finite.sum() > 2:  # random probes / draws differ between the devices' generators: information only
        agreement["uncertainty_corr"] = float(np.corrcoef(u_cpu[finite], u_cuda[finite])[0, 1])
    for key in ("X_dice", "X_dice_pca"):
        if agreement[key] > TOL * scale:
            failures.append(f"CPU vs CUDA max |diff| of {key} = {agreement[key]:.3g} > {TOL:g} x {scale:.3g}")
    # the sampler's device tests, the CUDA-only ones included (no host sync inside the reverse diffusion)
    test_file = "tests/models/test_schedule_and_sampler.py"
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_file, "-k", "cuda or device"],
        check=False,
    )
    if tests.returncode != 0:
        failures.append(f"{test_file} (device tests) failed on the CUDA machine (rc {tests.returncode})")

print()
print(f"{'step':<34} {'cells':>8} {'device':>6} {'seconds':>9} {'cells/s':>10}")
for label, n_cells, device, seconds, rate in rows:
    print(f"{label:<34} {n_cells:>8,} {device:>6} {seconds:>9.2f} {rate:>10,.0f}")
if agreement is not None:
    print()
    print("CPU vs CUDA, same model and seed: " + ", ".join(f"{k} {v:.3g}" for k, v in agreement.items()))
    print(f"(max |diff|; tolerance {TOL:g} x max(1, max |X_dice|))")
if failures:
    print()
    for failure in failures:
        print(f"FAIL: {failure}")
    sys.exit(1)
print()
print("gpu_check: OK" if CUDA else "gpu_check: no CUDA, CPU timings only (nothing to compare); OK")
PYEOF
