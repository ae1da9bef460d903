"""``dice.tl.transfer_labels``: reference-to-query label transfer, calibrated confidence and label sets."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from anndata import AnnData

from .._validation import DiceInputError, check_adata
from ._classifiers import CLASSIFIERS, KnnVotes, LogisticLatent
from ._confidence import _check_alpha, credible_sets, knn_votes, set_strings

__all__ = ["transfer_labels"]

UNASSIGNED = "unassigned"


def _reference_labels(reference: AnnData, label_key: str) -> tuple[AnnData, np.ndarray, np.ndarray]:
    check_adata(reference, what="reference", min_cells=3)
    if label_key not in reference.obs:
        raise DiceInputError(
            f"label_key {label_key!r} is not a column of reference.obs (columns: {list(reference.obs)})."
        )
    labelled = reference.obs[label_key].notna().to_numpy()
    if not labelled.all():
        warnings.warn(f"{int((~labelled).sum())} reference cells without a label are left out.", stacklevel=3)
        reference = reference[labelled]
    classes, codes = np.unique(reference.obs[label_key].astype(str).to_numpy(), return_inverse=True)
    if len(classes) < 2:
        raise DiceInputError(f"reference.obs[{label_key!r}] needs at least 2 distinct labels.")
    return reference, classes, codes


def _calibration_split(codes: np.ndarray, fraction: float, max_cells: int, seed: int) -> np.ndarray:
    """Boolean mask of held-out calibration cells, stratified by label (classes under 5 cells stay in)."""
    rng = np.random.default_rng(seed)
    n_total = min(round(fraction * len(codes)), max_cells)
    held = np.zeros(len(codes), dtype=bool)
    for c in np.unique(codes):
        members = np.flatnonzero(codes == c)
        if len(members) < 5:
            continue
        n_c = min(round(n_total * len(members) / len(codes)), len(members) - 2)
        held[rng.choice(members, size=max(n_c, 1), replace=False)] = True
    return held


def _mean_distance(samples, index, codes, n_classes, n_neighbors) -> np.ndarray:
    """Mean distance of each cell's posterior mean to its reference neighbours (the novelty score's base).

    It uses the posterior mean, not the samples: samples keep measurement noise (more in a noisier
    technology), the mean is denoised, so its distance to the reference reflects biology.
    """
    return knn_votes(samples.mean(axis=1), index, codes, n_classes, n_neighbors)[1]


def _temper(probabilities: np.ndarray, temperature: float, pseudo: float) -> np.ndarray:
    logits = np.log(probabilities + pseudo) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(axis=1, keepdims=True)


def _fit_temperature(probabilities: np.ndarray, truth: np.ndarray, pseudo: float) -> float:
    """Temperature minimising the held-out negative log-likelihood (grid over 0.2 .. 5)."""
    grid = np.exp(np.linspace(np.log(0.2), np.log(5.0), 65))
    rows = np.arange(len(truth))
    nll = [-np.mean(np.log(_temper(probabilities, t, pseudo)[rows, truth] + 1e-300)) for t in grid]
    return float(grid[int(np.argmin(nll))])


_DENSITY_EXPONENT = 8.0  # kNN density ~ distance^-dim; 8 = an effective dimension of the cell manifold


class _Novelty:
    """Novelty score: distance to the reference over the held-out reference cells' ``1 - alpha`` quantile.

    Weight ``min(1, (margin / score) ** 8)``: 1 while the score stays below ``margin`` (room for a
    technology shift, which moves every query cell a little), then falling like a kNN density ratio.
    """

    def __init__(self, distances: np.ndarray, alpha: float | None, margin: float):
        self.quantile = float(np.quantile(distances, 1.0 - (alpha or 0.01)))
        self.alpha, self.margin = alpha, margin

    def score(self, distances: np.ndarray) -> np.ndarray:
        return np.asarray(distances) / max(self.quantile, 1e-12)

    def weight(self, distances: np.ndarray) -> np.ndarray:
        if self.alpha is None:
            return np.ones(len(distances))
        return np.minimum(1.0, (self.margin / np.maximum(self.score(distances), 1e-12)) ** _DENSITY_EXPONENT)


def transfer_labels(
    adata_query: AnnData,
    reference: AnnData,
    *,
    label_key: str,
    model=None,
    alpha: float = 0.1,
    seed: int = 0,
    n_samples: int = 10,
    n_neighbors: int = 15,
    classifier: str = "logistic",
    set_method: str = "conformal",
    novelty_alpha: float | None = 0.01,
    novelty_margin: float = 1.25,
    calibration_fraction: float = 0.15,
    max_calibration_cells: int = 1500,
    labels_mixup: bool = False,
    store_samples: bool = False,
    train_kwargs: dict | None = None,
    denoise_kwargs: dict | None = None,
    key_added: str = "dice",
    progress: bool = True,
    copy: bool = False,
) -> AnnData | None:
    """Transfer labels from a labelled reference to a query, with calibrated confidence and label sets.

    Method. Each query cell is denoised with a DICE prior of the reference (``n_samples`` posterior
    samples and the posterior mean); a classifier of the latent space turns them into ``P(label | x)``
    (see ``classifier``).
    Calibration uses only the **reference**: a stratified held-out part of it is denoised as if
    it were a query and classified against the rest, and fixes (i) a temperature (held-out likelihood),
    (ii) the novelty scale and (iii) the conformal threshold of the label sets. Novelty: a cell whose
    samples sit much farther from their reference neighbours than held-out reference cells' samples do
    (see ``novelty_margin``) moves probability mass to ``"unassigned"``.

    Parameters
    ----------
    adata_query
        Log-normalised query cells (genes matched by name). Not modified on error.
    reference
        Log-normalised, labelled reference (``obs[label_key]``; unlabelled cells are left out).
    label_key
        Column of ``reference.obs`` with the labels.
    model
        A :class:`dice.models.DicePrior` of this reference. ``None`` trains one on the non-calibration part
        of the reference (so that calibration cells are unseen); a given model may have seen them, which
        makes the calibration slightly optimistic.
    alpha
        Label sets hold the true label with probability ``1 - alpha``.
    seed
        Seeds the calibration split, the training and the sampler.
    n_samples, n_neighbors
        Posterior samples per cell; reference neighbours for ``classifier="knn"`` and the novelty score.
    classifier
        ``"logistic"`` (default): multinomial logistic regression fitted on the reference cells' posterior
        means, applied to the query cells' posterior means. ``"knn"``: every posterior sample votes with
        the labels of its ``n_neighbors`` nearest reference cells (reference scores ``V^T x``) and the votes
        are averaged over samples (a posterior predictive). Measured on five tasks in BENCHMARKS.md,
        section 5.
    set_method
        ``"conformal"`` (split-conformal sets: every label whose probability reaches the threshold
        calibrated on held-out reference cells; coverage ``>= 1 - alpha`` for query cells exchangeable with
        the reference; may be empty: ``"unassigned"``) or ``"credible"`` (smallest set of labels, including
        ``"unassigned"``, with probability ``>= 1 - alpha``).
    novelty_alpha, novelty_margin
        Novelty score = distance of the cell's posterior mean to its reference neighbours divided by the
        ``1 - novelty_alpha`` quantile of that distance among held-out reference cells. Above
        ``novelty_margin`` probability moves to ``"unassigned"`` (weight ``(margin / score) ** 8``). The
        margin leaves room for technology shifts (CEL-seq2 -> Drop-seq: scores up to ~1.1; an unseen
        cluster in E.2: 1.1-1.9). ``novelty_alpha=None`` switches novelty off.
    calibration_fraction, max_calibration_cells
        Size of the held-out calibration part of the reference.
    labels_mixup
        Train the prior with the paper's same-label mixup (``labels_key=label_key``).
    store_samples
        Also keep the query's posterior samples (``obsm[f"X_{key_added}_samples"]``).
    train_kwargs, denoise_kwargs
        Extra arguments of :func:`dice.tl.train_prior` and :func:`dice.tl.denoise`.
    key_added
        Prefix of the written keys.
    progress
        Show progress bars.
    copy
        Return a new AnnData instead of writing into ``adata_query``.

    Returns
    -------
    ``None`` or the new AnnData. Writes ``obsm[f"{key_added}_label_probabilities"]`` (DataFrame, cells x
    labels plus ``"unassigned"`` when novelty is on), ``obs[f"{key_added}_label"]`` (most probable known
    label), ``obs[f"{key_added}_label_confidence"]`` (its probability), ``obs[f"{key_added}_label_set"]``
    (``"a|b"``, most probable first; ``"unassigned"`` when empty), ``obs[f"{key_added}_label_set_size"]``,
    ``obs[f"{key_added}_novelty"]`` (novelty score), the denoising outputs of :func:`dice.tl.denoise` and
    ``uns[f"{key_added}_label_transfer"]`` (parameters, temperature, thresholds, class names).
    """
    from ..pp._align import align_genes
    from ..pp._project import standardized_matrix
    from ._denoise import denoise
    from ._train import train_prior

    _check_alpha(alpha)
    if classifier not in CLASSIFIERS:
        raise DiceInputError(f"classifier must be one of {CLASSIFIERS}, got {classifier!r}.")
    if set_method not in ("conformal", "credible"):
        raise DiceInputError(f"set_method must be 'conformal' or 'credible', got {set_method!r}.")
    if novelty_alpha is not None and not 0.0 < novelty_alpha < 1.0:
        raise DiceInputError(f"novelty_alpha must lie in (0, 1) or be None, got {novelty_alpha}.")
    check_adata(adata_query, what="adata_query")
    reference, classes, codes = _reference_labels(reference, label_key)
    held = _calibration_split(codes, calibration_fraction, max_calibration_cells, seed)
    if held.sum() < 20:
        raise DiceInputError(
            f"only {int(held.sum())} reference cells for calibration; a larger reference "
            "or calibration_fraction is needed (at least 20 cells)."
        )
    genes = reference.var_names if model is None else model.embedding.genes
    align_genes(adata_query, genes, what="adata_query")  # too few shared genes: fail before any work
    trained_here = model is None
    if trained_here:
        extra = {"labels_key": label_key} if labels_mixup else {}
        model = train_prior(
            reference[~held].copy(), seed=seed, progress=progress, **extra, **(train_kwargs or {})
        )
    embedding = model.embedding
    index = embedding.project(standardized_matrix(reference, embedding))
    options = {"n_samples": n_samples, "seed": seed, "progress": progress, **(denoise_kwargs or {})}
    options.update(store_samples=True, copy=True, key_added=key_added)
    calibration = denoise(reference[held].copy(), model=model, **options)
    query = denoise(adata_query, model=model, **options)

    cal_samples, samples = calibration.obsm[f"X_{key_added}_samples"], query.obsm[f"X_{key_added}_samples"]
    pseudo = 0.5 / (n_neighbors * samples.shape[1])
    n_classes = len(classes)
    if classifier == "logistic":
        # the reference's posterior means as Tweedie estimates: one network call per cell, no draws
        means = denoise(reference[~held].copy(), model=model, **{**options, "n_samples": 1,
                                                                 "prior_step": "tweedie", "progress": False})
        cal_model = query_model = LogisticLatent(means.obsm[f"X_{key_added}"], codes[~held], n_classes)
    else:
        cal_model = KnnVotes(index[~held], codes[~held], n_classes, n_neighbors)
        query_model = KnnVotes(index, codes, n_classes, n_neighbors)
    cal_raw = cal_model.probabilities(cal_samples, calibration.obsm[f"X_{key_added}"])
    cal_dist = _mean_distance(cal_samples, index[~held], codes[~held], n_classes, n_neighbors)
    temperature = _fit_temperature(cal_raw, codes[held], pseudo)
    novelty = _Novelty(cal_dist, novelty_alpha, novelty_margin)
    raw = query_model.probabilities(samples, query.obsm[f"X_{key_added}"])
    dist = _mean_distance(samples, index, codes, n_classes, n_neighbors)

    def finish(p, d):
        weight = novelty.weight(d)[:, None]
        p = _temper(p, temperature, pseudo) * weight
        return np.hstack([p, 1.0 - weight]) if novelty_alpha is not None else p

    cal_p, probabilities = finish(cal_raw, cal_dist), finish(raw, dist)
    names = np.append(classes, UNASSIGNED) if novelty_alpha is not None else classes
    cal_true = cal_p[np.arange(len(cal_p)), codes[held]]
    rank = int(np.floor(alpha * (len(cal_true) + 1)))  # split-conformal: P(p_true < threshold) <= alpha
    threshold = float(np.sort(cal_true)[rank - 1]) if rank >= 1 else 0.0
    # A label with most of the probability always belongs to the set: without errors among the calibration
    # cells the threshold is ~1, and any shift would empty every set. Lowering it keeps coverage >= 1 - alpha.
    threshold = min(threshold, 0.5)
    if set_method == "conformal":
        mask = np.zeros(probabilities.shape, dtype=bool)
        mask[:, :n_classes] = probabilities[:, :n_classes] >= threshold - 1e-9  # float ties
    else:
        mask = credible_sets(probabilities, alpha)
    best = probabilities[:, :n_classes].argmax(axis=1)

    target = adata_query.copy() if copy else adata_query
    for key in (f"X_{key_added}", f"X_{key_added}_pca") + ((f"X_{key_added}_samples",) * store_samples):
        target.obsm[key] = query.obsm[key]
    for key in (f"{key_added}_uncertainty", f"{key_added}_noise_sd"):
        target.obs[key] = query.obs[key].to_numpy()
    target.uns[key_added] = query.uns[key_added]
    target.obsm[f"{key_added}_label_probabilities"] = pd.DataFrame(
        probabilities, index=target.obs_names, columns=names
    )
    target.obs[f"{key_added}_label"] = pd.Categorical(classes[best], categories=classes)
    target.obs[f"{key_added}_label_confidence"] = probabilities[np.arange(len(best)), best]
    target.obs[f"{key_added}_label_set"] = set_strings(mask, probabilities, names, empty=UNASSIGNED)
    target.obs[f"{key_added}_label_set_size"] = mask[:, :n_classes].sum(axis=1).astype(np.int64)
    target.obs[f"{key_added}_novelty"] = novelty.score(dist)
    target.uns[f"{key_added}_label_transfer"] = {
        "label_key": label_key,
        "classes": list(map(str, classes)),
        "alpha": float(alpha),
        "set_method": set_method,
        "conformal_threshold": threshold,
        "temperature": temperature,
        "pseudo_count": pseudo,
        "novelty_alpha": "none" if novelty_alpha is None else float(novelty_alpha),
        "novelty_margin": float(novelty_margin),
        "novelty_distance_quantile": novelty.quantile,
        "n_calibration_cells": int(held.sum()),
        "n_index_cells": len(index),
        "n_samples": int(options["n_samples"]),
        "n_neighbors": n_neighbors,
        "classifier": classifier,
        "labels_mixup": bool(labels_mixup),
        "seed": seed,
        "prior_trained_here": bool(trained_here),
    }
    return target if copy else None
