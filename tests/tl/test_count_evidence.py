"""Count evidence for label transfer: label profiles, the stacked weights, and the AnnData path."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from dice.pp._align import align_genes
from dice.tl._count_evidence import CountProfiles, fit_stack, label_subgroups, stack


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


def _two_state_labels(seed: int = 3, n_cells: int = 400, n_genes: int = 60, depth: int = 8):
    """Label 0 holds two distinct states (half its cells each), label 1 one state between them."""
    rng = np.random.default_rng(seed)
    states = rng.dirichlet(np.full(n_genes, 0.3), size=2)
    profiles = np.vstack([states, 0.5 * (states[0] + states[1])])  # state a, state b, label 1
    kind = rng.integers(0, 3, n_cells)  # 0, 1: label 0's states; 2: label 1
    codes = (kind == 2).astype(np.int64)
    counts = np.stack([rng.multinomial(depth, profiles[k]) for k in kind]).astype(np.float64)
    points = np.eye(3)[kind] * 5.0 + rng.normal(0, 0.5, (n_cells, 3))  # an embedding that separates the states
    return counts, codes, kind, points


def test_label_subgroups_split_a_label_by_its_states_and_fit_on_the_given_rows_only():
    _, codes, kind, points = _two_state_labels()
    fit = np.arange(300)
    groups, owner = label_subgroups(points, codes, 2, 2, fit, seed=0)
    np.testing.assert_array_equal(owner, [0, 0, 1, 1])
    assert np.all(owner[groups] == codes)  # every cell stays in its label
    zero = codes == 0
    table = np.array([[np.sum((groups == g) & (kind == k) & zero) for g in (0, 1)] for k in (0, 1)])
    assert table[0].min() == 0 and table[1].min() == 0  # each state of label 0 has a group of its own
    moved = points.copy()
    moved[300:] += 100.0  # cells outside fit_rows do not move the centres
    again, _ = label_subgroups(moved, codes, 2, 2, fit, seed=0)
    np.testing.assert_array_equal(again[:300], groups[:300])
    # one group per min_cells fitted cells: 12 fitted cells of label 0 make one group
    few = np.concatenate([np.flatnonzero(codes == 0)[:12], np.flatnonzero(codes == 1)])
    groups_few, owner_few = label_subgroups(points, codes, 2, 4, few, seed=0)
    np.testing.assert_array_equal(owner_few, [0, 1, 1, 1, 1])
    assert np.all(groups_few[codes == 0] == 0)


def test_mixture_profiles_are_the_closed_form_mixture_and_beat_one_profile():
    import pandas as pd
    from scipy.special import logsumexp

    counts, codes, _, points = _two_state_labels()
    genes = pd.Index([f"g{i}" for i in range(counts.shape[1])])
    alignment = align_genes(genes, genes, min_shared=0.0)
    present = np.ones(len(genes), dtype=bool)
    train = np.arange(300)
    groups, owner = label_subgroups(points, codes, 2, 2, train, seed=0)
    mixture = CountProfiles(sp.csr_matrix(counts), alignment, present, train, codes[train], 2, groups[train], owner)
    single = CountProfiles(sp.csr_matrix(counts), alignment, present, train, codes[train], 2)
    # closed form: each sub-profile from its cells' summed counts + 1, weight from its share of the cells + 1
    query = counts[300:]
    each = []
    for g in range(len(owner)):
        sums = counts[train][groups[train] == g].sum(axis=0) + 1.0
        weight = (np.sum(groups[train] == g) + 1.0) / (len(train) + len(owner))
        each.append(query @ np.log(sums / sums.sum()) + np.log(weight))
    each = np.stack(each, axis=1)
    expected = np.stack([logsumexp(each[:, owner == c], axis=1) for c in range(2)], axis=1)
    expected -= expected.max(axis=1, keepdims=True)
    np.testing.assert_allclose(mixture.loglik(query), expected, atol=1e-9)
    # one group per label is exactly the plain naive Bayes
    plain = CountProfiles(sp.csr_matrix(counts), alignment, present, train, codes[train], 2, codes[train], [0, 1])
    np.testing.assert_allclose(plain.loglik(query), single.loglik(query))
    # label 0's averaged profile sits on label 1's: the mixture tells them apart, one profile cannot
    accuracy = [np.mean(p.loglik(query).argmax(axis=1) == codes[300:]) for p in (single, mixture)]
    assert accuracy[1] > accuracy[0] + 0.1, accuracy


def test_count_profiles_must_be_a_positive_int():
    import dice
    from dice._validation import DiceInputError

    with pytest.raises(DiceInputError, match="count_profiles"):
        dice.tl.TransferSettings(count_profiles=0)


def test_split_profiles_equal_two_separate_builds_from_one_pass():
    import pandas as pd

    counts, codes, _, points = _two_state_labels()
    genes = pd.Index([f"g{i}" for i in range(counts.shape[1])])
    alignment = align_genes(genes, genes, min_shared=0.0)
    present = np.arange(len(genes)) % 5 != 0  # some genes the query lacks
    rows = np.random.default_rng(3).permutation(len(codes))[:350]  # reference positions, not in order
    first = np.flatnonzero(np.arange(len(rows)) % 4 != 0)  # the non-calibration cells among them
    groups, owner = label_subgroups(points[rows], codes[rows], 2, 2, first, seed=0)
    matrix = sp.csr_matrix(counts)
    fit, everyone = CountProfiles.split(matrix, alignment, present, rows, codes[rows], 2, groups, owner, first=first)
    separate = (
        CountProfiles(matrix, alignment, present, rows[first], codes[rows][first], 2, groups[first], owner),
        CountProfiles(matrix, alignment, present, rows, codes[rows], 2, groups, owner),
    )
    for one_pass, own in zip((fit, everyone), separate, strict=True):
        np.testing.assert_allclose(one_pass.log_profiles, own.log_profiles, rtol=0, atol=1e-12)
        np.testing.assert_allclose(one_pass.log_prior, own.log_prior, rtol=0, atol=1e-12)
        np.testing.assert_allclose(one_pass.loglik(counts[:50]), own.loglik(counts[:50]), atol=1e-9)
    assert not np.allclose(fit.log_profiles, everyone.log_profiles)  # the calibration cells make a difference
    # without sub-profiles: one profile per label, as the plain constructor
    plain_fit, _ = CountProfiles.split(matrix, alignment, present, rows, codes[rows], 2, None, None, first=first)
    plain = CountProfiles(matrix, alignment, present, rows[first], codes[rows][first], 2)
    np.testing.assert_allclose(plain_fit.log_profiles, plain.log_profiles, atol=1e-12)
