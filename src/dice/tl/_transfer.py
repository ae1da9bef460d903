"""``dice.tl.transfer_labels``: reference-to-query label transfer, calibrated confidence and label sets."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from anndata import AnnData

from .._settings import PosteriorSettings, TrainSettings, TransferSettings, check_seed
from .._validation import DiceInputError, check_adata
from ._classifiers import KnnVotes, LogisticLatent
from ._confidence import class_thresholds, conformal_threshold, knn_votes, label_sets, set_strings
from ._count_evidence import CountProfiles, fit_stack, label_subgroups, query_loglik, stack, thinned_reference
from ._label_report import label_report, warn_unreliable_labels

__all__ = ["transfer_labels"]

UNASSIGNED = "unassigned"


def _reference_labels(reference: AnnData, labels_key: str, layer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions of the labelled reference cells, the class names and each labelled cell's class code."""
    check_adata(reference, layer=layer, what="reference", min_cells=3)
    if labels_key not in reference.obs:
        raise DiceInputError(
            f"labels_key {labels_key!r} is not a column of reference.obs (columns: {list(reference.obs)})."
        )
    column = reference.obs[labels_key]
    labelled = np.flatnonzero(column.notna().to_numpy())
    if len(labelled) < reference.n_obs:
        warnings.warn(f"{reference.n_obs - len(labelled)} reference cells without a label are left out.", stacklevel=3)
    classes, codes = np.unique(column.iloc[labelled].astype(str).to_numpy(), return_inverse=True)
    if len(classes) < 2:
        raise DiceInputError(f"reference.obs[{labels_key!r}] needs at least 2 distinct labels.")
    return labelled, classes, codes


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


def _mean_distance(means, index, codes, n_classes, n_neighbors) -> np.ndarray:
    """Mean distance of each cell's posterior mean to its reference neighbours (the novelty score's base).

    It uses the posterior mean, not the samples: samples keep measurement noise (more in a noisier
    technology), the mean is denoised, so its distance to the reference reflects biology.
    """
    return knn_votes(means, index, codes, n_classes, n_neighbors)[1]


def _fit_temperature(probabilities: np.ndarray, truth: np.ndarray, pseudo: float) -> float:
    """Temperature minimising the held-out negative log-likelihood (grid over 0.2 .. 5)."""
    grid = np.exp(np.linspace(np.log(0.2), np.log(5.0), 65))
    rows = np.arange(len(truth))
    logits = np.log(probabilities + pseudo)
    nll = [-np.mean(np.log(stack(logits, None, (1.0 / t, 0.0))[rows, truth] + 1e-300)) for t in grid]
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
    adata: AnnData,
    reference: AnnData,
    model=None,
    *,
    labels_key: str,
    layer: str | None = None,
    settings: PosteriorSettings | str | None = None,
    transfer: TransferSettings | None = None,
    n_comps: int | None = None,
    training: TrainSettings | None = None,
    store_samples: bool = False,
    key_added: str = "dice",
    seed: int = 0,
    progress: bool = True,
    copy: bool = False,
) -> AnnData | None:
    """Transfer labels from a labelled reference to a query, with calibrated confidence and label sets.

    Method. Each query cell is denoised with a DICE prior of the reference (posterior draws and the posterior
    mean); a classifier of the latent space turns them into ``P(label | x)`` (``transfer.classifier``).
    Calibration uses only the **reference**: a stratified held-out part of it is denoised as if it were a
    query and classified against the rest, and fixes (i) a temperature (held-out likelihood), (ii) the novelty
    scale and (iii) the conformal threshold of the label sets. Novelty: a cell whose posterior mean sits much
    farther from its reference neighbours than held-out reference cells' do moves probability to
    ``"unassigned"``. Everything runs on arrays read in row blocks: no AnnData is copied.

    Parameters
    ----------
    adata
        Query cells as in :func:`dice.tl.denoise`: log-normalised with raw counts in ``layers["counts"]``
        (or raw counts in ``X``). Not modified on error.
    reference
        Labelled reference (``obs[labels_key]``; unlabelled cells are left out), laid out like ``adata``. With
        counts on both sides the reference cells are thinned to the query's depths for the classifier and
        its calibration (``transfer.calibration_depth``).
    model
        A :class:`dice.models.DicePrior` of this reference. ``None`` trains one on the non-calibration part of
        the reference (so that calibration cells are unseen); a given model may have seen them, which makes
        the calibration slightly optimistic.
    labels_key
        Column of ``reference.obs`` with the labels.
    layer
        Layer holding the log-normalised values, in both ``adata`` and ``reference`` (``None``: ``X``).
    settings
        The posterior (:class:`dice.tl.PosteriorSettings`), as in :func:`dice.tl.denoise`.
    transfer
        Classifier, label sets, novelty and calibration (:class:`dice.tl.TransferSettings`).
    n_comps, training
        Latent dimension and :class:`dice.tl.TrainSettings` of the prior trained when ``model`` is ``None``.
    store_samples
        Also keep the query's posterior draws (``obsm[f"X_{key_added}_samples"]``).
    key_added
        Prefix of the written keys.
    seed
        Seeds the calibration split, the training and the sampler.
    progress
        Show progress bars.
    copy
        Return a new AnnData instead of writing into ``adata``.

    Returns
    -------
    ``None`` or the new AnnData. Writes ``obsm[f"{key_added}_label_probabilities"]`` (DataFrame, cells x labels
    plus ``"unassigned"`` when novelty is on), ``obs[f"{key_added}_label"]`` (most probable known label),
    ``obs[f"{key_added}_label_confidence"]`` (its probability), ``obs[f"{key_added}_label_set"]`` (``"a|b"``,
    most probable first; ``"unassigned"`` when empty), ``obs[f"{key_added}_label_set_size"]``,
    ``obs[f"{key_added}_novelty"]`` (novelty score), the outputs of :func:`dice.tl.denoise` and
    ``uns[f"{key_added}_label_transfer"]`` (``"params"``, temperature, thresholds, class names, and
    ``"held_out"``: per label, in ``"classes"`` order, the held-out reference cells' ``n_cells``, ``recall``,
    ``precision``, ``set_coverage`` and ``confusion`` matrix, measured as the query is, so what to expect
    of the query's cells of each label; :func:`dice.pl.label_confusion` draws it). Warns, naming them, about
    labels whose held-out cells mostly get another label (recall below 0.5 with 10 cells or more).
    """
    from ..pp._align import align_genes
    from ._denoise import resolve_model, versions, write_outputs
    from ._latent import (
        count_matrix,
        measure_adata,
        measurement_inputs,
        posterior_of,
        require_counts,
        resolve_likelihood,
        warn_if_shallow,
    )
    from ._train import fit_prior

    settings = PosteriorSettings.resolve(settings)
    transfer = transfer if transfer is not None else TransferSettings()
    if not isinstance(transfer, TransferSettings):
        raise DiceInputError(f"transfer must be a dice.tl.TransferSettings, got {type(transfer).__name__}.")
    check_seed(seed)
    check_adata(adata, layer=layer, what="adata")
    require_counts(settings, (adata, "adata"), (reference, "reference"))
    labelled, classes, codes = _reference_labels(reference, labels_key, layer)
    held = _calibration_split(codes, transfer.calibration_fraction, transfer.max_calibration_cells, seed)
    if held.sum() < 20:
        raise DiceInputError(
            f"only {int(held.sum())} reference cells for calibration; a larger reference "
            "or calibration_fraction is needed (at least 20 cells)."
        )
    genes = reference.var_names if model is None else model.genes
    align_genes(adata.var_names, genes, min_shared=settings.min_shared, what="adata")  # fail before any work
    trained_here = model is None
    if trained_here:
        model = fit_prior(
            reference,
            n_comps=n_comps,
            layer=layer,
            labels_key=labels_key if transfer.labels_mixup else None,
            settings=training if training is not None else TrainSettings(),
            seed=seed,
            device="auto",
            progress=progress,
            rows=labelled[~held],
        )
    else:
        model, _ = resolve_model(
            model, adata, layer=layer, n_comps=n_comps, training=training, seed=seed, device="auto", progress=progress
        )
    # the reference side (calibration, classifiers) is measured with the query's likelihood: with counts on
    # both sides, or with the log-normalised data on both when either lacks counts ("auto")
    # where each side keeps raw counts, asked once (a raw-count X is scanned to tell)
    query_found, ref_found = count_matrix(adata, layer), count_matrix(reference, layer)
    kind = resolve_likelihood(settings, model, query_found[0] is not None, what="adata")
    if kind == "counts" and ref_found[0] is None:
        if settings.likelihood == "counts":
            resolve_likelihood(settings, model, False, what="reference")  # raises, saying how to fix it
        kind = "gene_weighted"
    query_inputs = measurement_inputs(model, adata, settings, layer=layer, kind=kind, found=query_found)
    query_cells = measure_adata(model, adata, settings, layer=layer, progress=progress, inputs=query_inputs)
    matched = kind == "counts" and transfer.calibration_depth == "query"
    depth = warn_if_shallow(model, query_cells, what="adata", calibrated=matched)
    ref_settings = settings.replace(likelihood="gene_weighted") if matched else settings
    ref_kind = "gene_weighted" if matched else kind
    ref_inputs = measurement_inputs(
        model, reference, ref_settings, layer=layer, what="reference", kind=ref_kind, found=ref_found
    )
    ref_cells = measure_adata(
        model,
        reference,
        ref_settings,
        layer=layer,
        rows=labelled,
        what="reference",
        progress=progress,
        inputs=ref_inputs,
    )
    ref_depth = ref_ll = query_ll = profiles = None
    evidence = matched and transfer.count_evidence
    if matched:  # train and calibrate at the query's depth: the reference cells thinned to it
        alignment = align_genes(reference.var_names, model.embedding.genes, min_shared=0.0, what="reference")
        present = alignment.present & query_cells.likelihood.present  # the genes both sides measured
        if evidence:  # the calibration cells are scored by label profiles that never saw them; the query,
            # like its latent classifier (which indexes every labelled cell), by profiles of every labelled cell
            train, n_classes = np.flatnonzero(~held), len(classes)
            groups, owner = label_subgroups(ref_cells.pca, codes, n_classes, transfer.count_profiles, train, seed)
            profiles, everyone = CountProfiles.split(
                ref_found[0], alignment, present, labelled, codes, n_classes, groups, owner, first=train
            )
            query_ll = query_loglik(model, adata.var_names, query_found[0], everyone)
        ref_cells, ref_depth, ref_ll = thinned_reference(
            model, ref_found[0], alignment, present, labelled, query_cells, ref_cells.pca, seed, profiles
        )
    keep = transfer.classifier == "knn" or store_samples
    # the reference's own cells: their clamped or outside-the-prior cells are not the user's to act on; their
    # draws only for the kNN votes (the logistic classifier reads the posterior means, which do not need them)
    calibration = posterior_of(
        model,
        ref_cells,
        settings.replace(uncertainty="none"),  # their spread is not used
        rows=np.flatnonzero(held),
        seed=seed,
        keep_samples=transfer.classifier == "knn",
        progress=progress,
        warn=False,
    )
    query = posterior_of(model, query_cells, settings, seed=seed, keep_samples=keep, progress=progress)
    _warn_if_noisier(query, calibration, matched)
    index = ref_cells.pca
    n_neighbors, n_classes = transfer.n_neighbors, len(classes)
    pseudo = 0.5 / (n_neighbors * settings.n_samples)
    if transfer.classifier == "logistic":
        # the reference's posterior means as Tweedie estimates: one network call per cell, no draws
        means = posterior_of(
            model,
            ref_cells,
            settings.replace(n_samples=1, prior_step="tweedie", uncertainty="none"),
            rows=np.flatnonzero(~held),
            seed=seed,
            progress=False,
            warn=False,
        ).mean
        cal_model = query_model = LogisticLatent(means, codes[~held], n_classes)
    else:
        cal_model = KnnVotes(index[~held], codes[~held], n_classes, n_neighbors)
        query_model = KnnVotes(index, codes, n_classes, n_neighbors)
    cal_raw = cal_model.probabilities(calibration.samples, calibration.mean)
    cal_dist = _mean_distance(calibration.mean, index[~held], codes[~held], n_classes, n_neighbors)
    cal_ll = ref_ll[np.flatnonzero(held)] if evidence else None
    if evidence:  # latent and count experts stacked; the weights replace the temperature
        weights = fit_stack(np.log(cal_raw + pseudo), cal_ll, codes[held])
    else:
        weights = (1.0 / _fit_temperature(cal_raw, codes[held], pseudo), 0.0)
    temperature = 1.0 / weights[0]
    novelty = _Novelty(cal_dist, transfer.novelty_alpha, transfer.novelty_margin)
    raw = query_model.probabilities(query.samples, query.mean)
    dist = _mean_distance(query.mean, index, codes, n_classes, n_neighbors)

    def finish(p, d, loglik):
        weight = novelty.weight(d)[:, None]
        p = stack(np.log(p + pseudo), loglik, weights) * weight
        return np.hstack([p, 1.0 - weight]) if transfer.novelty_alpha is not None else p

    cal_p, probabilities = finish(cal_raw, cal_dist, cal_ll), finish(raw, dist, query_ll)
    names = np.append(classes, UNASSIGNED) if transfer.novelty_alpha is not None else classes
    cal_true = cal_p[np.arange(len(cal_p)), codes[held]]
    threshold = conformal_threshold(cal_true, transfer.alpha)
    thresholds = np.full(n_classes, threshold)
    if transfer.set_method == "class_conformal":
        thresholds = class_thresholds(cal_true, codes[held], n_classes, transfer.alpha, threshold)
    mask, cal_mask = (
        label_sets(p, thresholds, n_classes, transfer.set_method, transfer.alpha) for p in (probabilities, cal_p)
    )
    best = probabilities[:, :n_classes].argmax(axis=1)
    held_out = label_report(codes[held], cal_p, cal_mask, n_classes)
    warn_unreliable_labels(held_out, classes, key=key_added, matched=matched, stacklevel=2)

    target = adata.copy() if copy else adata
    write_outputs(target, key_added, query, store_samples=store_samples)
    target.uns[key_added] = {
        "params": {**settings.to_dict(), "seed": seed, "store_samples": store_samples},
        **query.info,
        "device": str(model.device),
        "versions": versions(),
    }
    target.obsm[f"{key_added}_label_probabilities"] = pd.DataFrame(probabilities, index=target.obs_names, columns=names)
    target.obs[f"{key_added}_label"] = pd.Categorical(classes[best], categories=classes)
    target.obs[f"{key_added}_label_confidence"] = probabilities[np.arange(len(best)), best]
    target.obs[f"{key_added}_label_set"] = set_strings(mask, probabilities, names, empty=UNASSIGNED)
    target.obs[f"{key_added}_label_set_size"] = mask[:, :n_classes].sum(axis=1).astype(np.int64)
    target.obs[f"{key_added}_novelty"] = novelty.score(dist)
    target.uns[f"{key_added}_label_transfer"] = {
        "params": {**transfer.to_dict(), "labels_key": labels_key, "seed": seed},
        "classes": list(map(str, classes)),
        "conformal_threshold": threshold,
        "conformal_thresholds": thresholds,
        "temperature": temperature,
        "count_evidence": bool(evidence),
        "count_weight": weights[1],
        **({"n_count_profiles": len(owner)} if evidence else {}),
        "pseudo_count": pseudo,
        "novelty_distance_quantile": novelty.quantile,
        "held_out": held_out,
        "n_calibration_cells": int(held.sum()),
        "n_index_cells": len(index),
        "prior_trained_here": bool(trained_here),
        "calibration_depth": "query" if matched else "reference",
        **({"reference_cells_depth": ref_depth} if ref_depth is not None else {}),
        **({"query_depth": depth} if depth is not None else {}),
    }
    return target if copy else None


def _warn_if_noisier(query, calibration, matched: bool) -> None:
    """Without depth-matched calibration, warn when the query is much noisier than the calibration cells."""
    q, c = float(np.median(query.noise_sd)), float(np.median(calibration.noise_sd))
    if matched or not q > 1.5 * c:
        return
    warnings.warn(
        f"the query's median measurement noise sd ({q:.2f}) is {q / c:.1f} x the reference calibration cells' "
        f"({c:.2f}): the label confidence was calibrated on cleaner cells and is likely too high for this query. "
        "Keep the raw counts in layers['counts'] of both the reference and the query (and train the model on "
        "them) so that dice models depth and calibrates at the query's depth.",
        UserWarning,
        stacklevel=3,
    )
