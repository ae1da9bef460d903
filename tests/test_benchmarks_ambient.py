"""benchmarks/ambient.py: its summary pairs each arm (ambient fraction, dispersion) with the first, seed by seed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
ambient = pytest.importorskip("ambient")


def _metrics(purity, ari):
    return {"purity": purity, "ari": ari, "ari_stable": ari, "noise_sd": 1.0}


def test_summary_pairs_fractions_by_seed():
    rows = [
        {"seed": 0, "0.0": _metrics(0.80, 0.70), "0.1": _metrics(0.85, 0.70)},
        {"seed": 1, "0.0": _metrics(0.90, 0.60), "0.1": _metrics(0.93, 0.62)},
    ]
    lines = ambient.summary(rows, [0.0, 0.1]).splitlines()
    assert lines[0] == "rho   0.0     purity: 0.850 ± 0.071"
    assert "paired" not in lines[0]
    # paired: +0.05 and +0.03 -> +0.040 ± 0.014 (the unpaired sds are 0.071 and 0.057)
    assert lines[4] == "rho   0.1     purity: 0.890 ± 0.057   paired vs rho 0.0: +0.040 ± 0.014"
    assert lines[5].endswith("paired vs rho 0.0: +0.010 ± 0.014")


def test_summary_pairs_dispersion_arms_with_the_first():
    rows = [
        {"seed": 0, "0.0": _metrics(0.80, 0.70), "0.0/pooled": _metrics(0.82, 0.75)},
        {"seed": 1, "0.0": _metrics(0.90, 0.60), "0.0/pooled": _metrics(0.91, 0.66)},
    ]
    lines = ambient.summary(rows, [0.0], ("gene", "pooled")).splitlines()
    assert [line.split(":")[0] for line in lines[::4]] == ["rho   0.0     purity", "rho 0.0/pooled     purity"]
    assert lines[4].endswith("paired vs rho 0.0: +0.015 ± 0.007")
    assert lines[5].endswith("paired vs rho 0.0: +0.055 ± 0.007")


def test_run_seeds_prepares_each_seed_and_prints_its_row(monkeypatch, capsys):
    import warnings

    tasks = pytest.importorskip("_real_tasks")
    monkeypatch.setattr(tasks, "prepare_task", lambda name, seed: f"{name}-{seed}")

    def measure(task, seed):
        warnings.warn("not what is measured", UserWarning, stacklevel=1)
        return {"seed": seed, "task": task}

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # run_seeds silences the warnings raised inside measure
        rows = tasks.run_seeds("cbmc", [2, 0], measure)
    assert rows == [{"seed": 2, "task": "cbmc-2"}, {"seed": 0, "task": "cbmc-0"}]
    assert capsys.readouterr().out.splitlines() == ['{"seed": 2, "task": "cbmc-2"}', '{"seed": 0, "task": "cbmc-0"}']
