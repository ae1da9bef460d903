"""Count evidence for label transfer: label profiles, the stacked weights, and the AnnData path."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from dice.pp._align import align_genes
from dice.tl._count_evidence import CountProfiles, fit_stack, stack


def _profiles_data(seed: int = 0, n_cells: int = 300, n_genes: int = 40, depth: int = 30):
    rng = np.random.default_rng(seed)
    profiles = rng.dirichlet(np.full(n_genes, 0.5), size=3)
    codes = rng.integers(0, 3, n_cells)
    counts = np.stack([rng.multinomial(depth, profiles[c]) for c in codes]).astype(np.float64)
    return counts, codes, profiles


def test_profiles_classify_shallow_counts_and_ignore_missing_genes():
    import pandas as pd

    counts, codes, _ = _profiles_data()
    genes = pd.Index([f"g{i}" for i in range(counts.shape[1])])
    alignment = align_genes(genes, genes, min_shared=0.0)
    present = np.ones(len(genes), dtype=bool)
    present[:5] = False  # genes the query lacks take no part
    fitted = CountProfiles(sp.csr_matrix(counts), alignment, present, np.arange(200), codes[:200], 3)
    assert fitted.log_profiles.shape == (3, 35)
    np.testing.assert_allclose(np.exp(fitted.log_profiles).sum(axis=1), 1.0)
    loglik = fitted.loglik(counts[200:])
    assert np.allclose(loglik.max(axis=1), 0.0)
    assert np.mean(loglik.argmax(axis=1) == codes[200:]) > 0.9
    moved = counts[200:].copy()
    moved[:, :5] += 100.0  # counts in absent genes change nothing
    np.testing.assert_allclose(fitted.loglik(moved), loglik)


def test_stack_weights_follow_the_informative_expert():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3, 600)
    informative = np.where(np.arange(3)[None] == truth[:, None], 0.0, -3.0) + rng.normal(0, 1.0, (600, 3))
    noise = rng.normal(0, 1.0, (600, 3))
    to_log = lambda z: np.log(stack(z, None, (1.0, 0.0)))  # noqa: E731
    # latent uninformative, counts informative: the counts get the weight
    w = fit_stack(to_log(noise), informative - informative.max(axis=1, keepdims=True), truth)
    assert w[1] > 0.3 and w[0] < 0.3, w
    # counts pure noise: their weight stays near zero and the stacked NLL is no worse than the latent alone
    w = fit_stack(to_log(informative), noise, truth)
    assert w[1] < 0.1, w
    p = stack(to_log(informative), noise, w)
    alone = stack(to_log(informative), None, (w[0], 0.0))
    rows = np.arange(600)
    assert -np.log(p[rows, truth]).mean() <= -np.log(alone[rows, truth]).mean() + 1e-6


def test_stack_without_counts_is_a_temperature():
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.ones(4), size=50)
    tempered = stack(np.log(p), None, (0.5, 0.0))
    expected = p**0.5 / (p**0.5).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(tempered, expected)


@pytest.mark.parametrize("bad", [1, "yes", None])
def test_count_evidence_must_be_a_bool(bad):
    import dice
    from dice._validation import DiceInputError

    with pytest.raises(DiceInputError, match="count_evidence"):
        dice.tl.TransferSettings(count_evidence=bad)
