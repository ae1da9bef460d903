"""Counts in label transfer: the reference thinned to the query's depth, and each label's count profile.

:func:`thinned_reference` measures the labelled reference cells after binomially thinning them to depths
drawn from the query's, so that classifier and calibration hold at the query's depth.

The latent classifier sees a cell through its k-dimensional posterior; a shallow reference (tens of counts
per cell) pins that posterior loosely, while the counts themselves still separate the labels well over
thousands of genes. So with counts on both sides, ``transfer_labels`` adds a second expert, a naive
Bayes: the multinomial log-likelihood of the cell's counts under each label's mean profile (the reference's
non-calibration cells of that label, summed, one pseudo-count per gene) plus the log label frequency. The
two are stacked, ``log p(label) = w_latent log p_latent + w_counts log p_counts + const``, with the weights fitted by
held-out likelihood on the calibration cells, which are thinned to the query's depth: where the latent is
sharper the counts get little weight, where the reference is shallow they get more. The weights replace
the temperature (``w_counts = 0`` is the temperature ``1 / w_latent``).

A label is rarely one expression profile (activated and resting cells, neuron classes with subtypes), so a
label may hold a few sub-profiles (:func:`label_subgroups`: k-means of its cells' reference embedding), and
its count likelihood is then the mixture over them, each weighted by its share of the cells: a mixture of
multinomials instead of one multinomial per label.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp

__all__ = ["CountProfiles", "fit_stack", "label_subgroups", "query_loglik", "stack", "thinned_reference"]


class CountProfiles:
    """Each label's log multinomial profile (or mixture of sub-profiles) over the model genes the query measured.

    Parameters
    ----------
    counts
        Raw counts of the reference, read in row blocks.
    alignment
        The reference's :class:`dice.pp._align.GeneAlignment` onto the model genes.
    present
        Bool mask of the model genes used (measured by the query and the reference).
    rows, codes
        Reference positions of the cells whose counts make the profiles, and their label codes.
    n_classes
        Number of labels.
    groups, owner
        Each cell's sub-profile (aligned with ``rows``) and each sub-profile's label code, from
        :func:`label_subgroups`; ``None``: one profile per label. A sub-profile's prior weight is its share
        of the cells (plus one), so a label's prior is about its share of the cells, as with one profile.
    pseudo
        Pseudo-count added to every gene of every (sub-)profile.
    """

    def __init__(self, counts, alignment, present, rows, codes, n_classes: int, groups=None, owner=None, pseudo=1.0):
        groups, owner = _label_groups(codes, n_classes, groups, owner)
        sums = _group_sums(counts, alignment, rows, groups, len(owner))
        self._fit(sums, np.bincount(groups, minlength=len(owner)), present, n_classes, owner, pseudo)

    @classmethod
    def split(cls, counts, alignment, present, rows, codes, n_classes: int, groups, owner, first, pseudo=1.0):
        """The profiles of the cells ``rows[first]`` and those of every cell in ``rows``, in one pass over ``counts``.

        What label transfer needs: profiles that never saw the calibration cells (to score them), and
        profiles of every labelled cell (to score the query). Equal to two :class:`CountProfiles`, each
        built from its own cells, at the cost of one read of the reference counts. ``groups`` and ``owner``
        as in :class:`CountProfiles` (``None``: one profile per label).
        """
        groups, owner = _label_groups(codes, n_classes, groups, owner)
        n_sub = len(owner)
        inside = np.zeros(len(groups), dtype=bool)
        inside[np.asarray(first)] = True
        both = _group_sums(counts, alignment, rows, np.where(inside, groups, groups + n_sub), 2 * n_sub)
        sizes = np.bincount(groups[inside], minlength=n_sub), np.bincount(groups, minlength=n_sub)
        out = []
        for sums, size in zip((both[:n_sub], both[:n_sub] + both[n_sub:]), sizes, strict=True):
            profiles = cls.__new__(cls)
            profiles._fit(sums, size, present, n_classes, owner, pseudo)
            out.append(profiles)
        return tuple(out)

    def _fit(self, sums, sizes, present, n_classes, owner, pseudo) -> None:
        """Log profiles and prior weights from each sub-profile's summed counts and its number of cells."""
        sums = sums[:, present] + pseudo
        self.present = np.asarray(present, dtype=bool)
        self.n_classes = int(n_classes)
        self.owner = owner
        self._starts = np.searchsorted(owner, np.arange(n_classes))  # each label's first sub-profile
        self.log_profiles = np.log(sums / sums.sum(axis=1, keepdims=True))  # sub-profiles x present genes
        frequency = sizes + 1.0
        self.log_prior = np.log(frequency / frequency.sum())  # label frequencies: the expert is naive Bayes

    def loglik(self, counts_model) -> np.ndarray:
        """Naive-Bayes log posterior (up to a per-cell constant) of cells x model-gene counts, per label.

        The multinomial log-likelihood of the counts under each (sub-)profile plus its log prior weight,
        summed over each label's sub-profiles (log-sum-exp), centred per cell (its maximum over labels is 0).
        """
        values = sp.csr_matrix(counts_model, dtype=np.float64)[:, self.present]
        each = np.asarray(values @ self.log_profiles.T) + self.log_prior
        top = np.maximum.reduceat(each, self._starts, axis=1)  # one sub-profile per label: exactly ``each``
        out = top + np.log(np.add.reduceat(np.exp(each - top[:, self.owner]), self._starts, axis=1))
        return out - out.max(axis=1, keepdims=True)


def _label_groups(codes, n_classes: int, groups, owner) -> tuple[np.ndarray, np.ndarray]:
    """``(groups, owner)`` as arrays, checked; ``groups=None`` is one group per label (the label codes)."""
    if groups is None:
        groups, owner = codes, np.arange(n_classes)
    owner = np.asarray(owner)
    if np.any(np.diff(owner) < 0) or not np.array_equal(np.unique(owner), np.arange(n_classes)):
        raise ValueError("owner must list each label's sub-profiles together, in label order, every label once")
    return np.asarray(groups), owner


def _group_sums(counts, alignment, rows, groups, n_groups: int) -> np.ndarray:
    """Summed counts per group over the model genes (groups x genes), reading ``counts`` at ``rows`` in blocks."""
    from .._blocks import block_size_for, iter_row_blocks

    order = np.argsort(rows, kind="stable")  # row blocks are read in increasing row order
    rows, groups = np.asarray(rows)[order], np.asarray(groups)[order]
    sums = np.zeros((n_groups, len(alignment.present)))
    for block in iter_row_blocks(counts, block_size=block_size_for(alignment.n_shared), rows=rows):
        values = sp.csr_matrix(alignment.take_all(block.values), dtype=np.float64)
        member = sp.csr_matrix(
            (np.ones(values.shape[0]), (groups[block.start : block.stop], np.arange(values.shape[0]))),
            shape=(n_groups, values.shape[0]),
        )
        sums += np.asarray((member @ values).todense())
    return sums


def label_subgroups(points, codes, n_classes: int, n_sub: int, fit_rows, seed: int, min_cells: int = 10):
    """Up to ``n_sub`` sub-profiles per label: k-means of the label's cells in ``points`` (seeded).

    The centres are fitted on ``fit_rows`` only (at most 10,000 cells per label, a seeded subsample
    beyond), so cells outside them (the calibration cells) shape neither the groups nor, later, the
    profiles they are scored by; every cell then joins its label's nearest centre. A label gets one
    sub-profile per ``min_cells`` of its fitted cells, at least one. Returns ``(groups, owner)`` for
    :class:`CountProfiles`: each cell's sub-profile and each sub-profile's label.
    """
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    points, codes = np.asarray(points, dtype=np.float64), np.asarray(codes)
    fit_rows = np.asarray(fit_rows)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 29]))
    groups, owner = np.zeros(len(codes), dtype=np.int64), []
    for label in range(n_classes):
        members, fit = np.flatnonzero(codes == label), fit_rows[codes[fit_rows] == label]
        n_groups = int(min(n_sub, max(1, len(fit) // min_cells)))
        if n_groups > 1:
            if len(fit) > 10_000:
                fit = rng.choice(fit, 10_000, replace=False)
            with warnings.catch_warnings():  # fewer distinct cells than groups: the duplicates share one
                warnings.simplefilter("ignore", ConvergenceWarning)
                kmeans = KMeans(n_groups, n_init=3, random_state=int(rng.integers(2**31))).fit(points[fit])
            groups[members] = len(owner) + kmeans.predict(points[members])
        else:
            groups[members] = len(owner)
        owner += [label] * n_groups
    return groups, np.asarray(owner)


def thinned_reference(model, counts, alignment, present, rows, query_cells, pca, seed: int, profiles=None):
    """The reference cells ``rows`` with their counts thinned to the query's depths, measured with counts.

    ``counts`` is the reference's raw-count matrix, ``alignment`` its :class:`dice.pp._align.GeneAlignment`
    onto the model genes and ``present`` the model genes both sides measured. Each reference cell gets a
    target depth drawn from the query's depths and keeps each of its counts with probability
    ``min(1, target / depth)`` (binomial thinning: what a shallower run of the same cell gives); genes the
    query lacks are dropped, as in the query's measurement. Classifier, temperature, novelty scale and
    label-set threshold then all see reference cells as deep as the query. ``pca`` (the cells' ``V^T x`` at
    full depth) is kept as the neighbour index. Returns the measurements, a depth summary and, with
    ``profiles`` (:class:`CountProfiles`), each thinned cell's count log posterior per label (else ``None``).
    """
    from .._blocks import block_size_for, iter_row_blocks
    from ..likelihood import Measurement
    from ..likelihood._counts import count_measurement, thin_counts
    from ._latent import CellMeasurements

    embedding = model.embedding
    rng = np.random.default_rng(np.random.SeedSequence([seed, 17]))
    scores, noise, depth = np.empty((len(rows), embedding.n_comps)), np.empty(len(rows)), np.empty((2, len(rows)))
    loglik = None if profiles is None else np.empty((len(rows), profiles.n_classes))
    for block in iter_row_blocks(counts, block_size=block_size_for(alignment.n_shared), rows=rows):
        cal = sp.csr_matrix(alignment.take_all(block.values) @ sp.diags(present.astype(np.float64)))
        cal.eliminate_zeros()  # the query's missing genes drop out
        before = np.asarray(cal.sum(axis=1)).ravel()
        target = rng.choice(query_cells.depth, size=len(before), replace=True)
        cal = thin_counts(cal, np.minimum(1.0, target / np.maximum(before, 1.0)), rng)
        m = count_measurement(cal, embedding, model.count_reference, present=present)
        scores[block.start : block.stop], noise[block.start : block.stop] = m.scores, m.noise_var
        depth[:, block.start : block.stop] = before, np.asarray(cal.sum(axis=1)).ravel()
        if profiles is not None:
            loglik[block.start : block.stop] = profiles.loglik(cal)
    cells = CellMeasurements(
        scores.astype(np.float32),
        np.zeros(len(rows)),
        pca,
        query_cells.likelihood,
        query_cells.noise_rule,
        Measurement(scores, noise),
        query_cells.counts_layer,
        depth[1],
    )
    return cells, {"median_before": float(np.median(depth[0])), "median_after": float(np.median(depth[1]))}, loglik


def query_loglik(model, var_names, counts, profiles: CountProfiles) -> np.ndarray:
    """Each query cell's count log posterior per label, from its raw ``counts`` (read in row blocks)."""
    from .._blocks import block_size_for, iter_row_blocks
    from ..pp._align import align_genes

    alignment = align_genes(var_names, model.embedding.genes, min_shared=0.0, what="adata")
    out = np.empty((counts.shape[0], profiles.n_classes))
    for block in iter_row_blocks(counts, block_size=block_size_for(alignment.n_shared)):
        out[block.start : block.stop] = profiles.loglik(alignment.take_all(block.values))
    return out


def stack(log_latent: np.ndarray, loglik: np.ndarray | None, weights: tuple[float, float]) -> np.ndarray:
    """Probabilities ``softmax(w_latent log p_latent + w_counts loglik)`` (``loglik=None``: latent only)."""
    logits = weights[0] * log_latent
    if loglik is not None and weights[1] != 0.0:
        logits = logits + weights[1] * loglik
    logits = logits - logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(axis=1, keepdims=True)


def fit_stack(log_latent: np.ndarray, loglik: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """The two non-negative weights of :func:`stack` with the lowest held-out negative log-likelihood.

    A coarse grid (log-spaced latent weights, count weights from 0) then L-BFGS-B from its best point:
    deterministic, and ``w_counts = 0`` stays reachable when the counts add nothing.
    """
    from scipy.optimize import minimize

    rows = np.arange(len(truth))

    def nll(w) -> float:
        return float(-np.mean(np.log(stack(log_latent, loglik, (w[0], w[1]))[rows, truth] + 1e-300)))

    latent_grid = np.exp(np.linspace(np.log(0.2), np.log(5.0), 9))
    count_grid = np.concatenate([[0.0], np.exp(np.linspace(np.log(1e-3), np.log(3.0), 12))])
    start = min(((a, b) for a in latent_grid for b in count_grid), key=nll)
    result = minimize(nll, np.asarray(start), method="L-BFGS-B", bounds=[(1e-3, 20.0), (0.0, 20.0)])
    best = result.x if result.fun <= nll(start) else np.asarray(start)
    return float(best[0]), float(best[1])
