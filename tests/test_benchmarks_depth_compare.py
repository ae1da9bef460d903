"""The paired comparison of two sets of shallow-query records (benchmarks/depth_compare.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
compare = pytest.importorskip("depth_compare")


def _records(values: dict, method: str = "dice") -> pd.DataFrame:
    rows = []
    for (seed, f), ari in values.items():
        row = {"task": "worm", "seed": seed, "f": f, "method": method, "ari": ari}
        row.update({m: 0.5 for m in compare.METRICS if m != "ari"})
        rows.append(row)
    return pd.DataFrame(rows)


def test_differences_are_paired_by_seed_and_depth():
    before = _records({(0, 1.0): 0.50, (1, 1.0): 0.60, (2, 1.0): 0.40, (0, 0.2): 0.30})
    after = _records({(0, 1.0): 0.55, (1, 1.0): 0.61, (2, 1.0): 0.43, (3, 1.0): 0.99})  # seed 3: no pair
    after = pd.concat([after, _records({(0, 1.0): 0.0}, method="pca")])  # another method: ignored
    table = compare.paired(before, after)
    assert list(table["f"]) == [1.0]  # f = 0.2 has no "after" row
    row = table.iloc[0]
    diffs = np.array([0.05, 0.01, 0.03])
    assert row["seeds"] == 3
    assert row["ari_diff"] == pytest.approx(diffs.mean())
    assert row["ari_sd"] == pytest.approx(diffs.std(ddof=1))
    assert row["ari_before"] == pytest.approx(0.5) and row["ari_after"] == pytest.approx(np.mean([0.55, 0.61, 0.43]))
    text = compare.markdown(table, "t")
    assert f"({diffs.mean():+.3f} ± {diffs.std(ddof=1):.3f})" in text


def test_no_shared_rows_is_an_error():
    with pytest.raises(ValueError, match="no 'dice' rows"):
        compare.paired(_records({(0, 1.0): 0.5}), _records({(1, 1.0): 0.5}))
