"""The purity split of benchmarks/purity_likelihood.py: its summary and its paired differences."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
purity = pytest.importorskip("purity_likelihood")


def _row(seed, counts, weighted, pca, refit_projection, pca_projection, query_scale):
    return {
        "seed": seed,
        "refit_counts": counts,
        "refit_counts_query_scale": query_scale,
        "refit_gene_weighted": weighted,
        "refit_projection": refit_projection,
        "pca_counts": pca,
        "pca_projection": pca_projection,
    }


def test_summary_pairs_the_arms_by_seed():
    rows = [_row(0, 0.80, 0.90, 0.85, 0.91, 0.90, 0.81), _row(1, 0.90, 0.96, 0.93, 0.95, 0.93, 0.90)]
    text = purity.summary(rows).splitlines()
    assert "refit_counts: 0.850 ± 0.071" in text[0]
    # paired: -0.10 and -0.06 -> mean -0.08, sd 0.028 (unpaired sds would be 0.07 and 0.04)
    assert text[-4] == "refit_counts - refit_gene_weighted: -0.080 ± 0.028"
    assert text[-3] == "refit_counts - pca_counts: -0.040 ± 0.014"
    assert text[-2] == "refit_projection - pca_projection: +0.015 ± 0.007"
    assert text[-1] == "refit_counts_query_scale - refit_counts: +0.005 ± 0.007"
