"""How each label fares on the held-out reference cells: the per-label report of ``transfer_labels``.

The calibration cells of :func:`dice.tl.transfer_labels` are labelled reference cells that the classifier
never saw, measured as the query is (thinned to the query's depth when both sides keep raw counts). How
often the cells of a label get that label back, its held-out recall, is therefore what to expect of the
query's cells of that label, and the labels they get instead say which calls to read with care. Accuracy
and calibration over all cells hide this: a rare label that the latent space cannot tell from a common
one (e.g. CD8 from CD4 T cells on CBMC's 25 components) is called the common one, confidently and,
averaged over the query, correctly calibrated.
"""

from __future__ import annotations

import warnings

import numpy as np

from .._validation import UnreliableLabelWarning

__all__ = [
    "MIN_CELLS",
    "MIN_RECALL",
    "UnreliableLabelWarning",
    "label_report",
    "unreliable_labels",
    "warn_unreliable_labels",
]

#: A label is reported as unreliable only with at least this many held-out cells (fewer: its recall is noise).
MIN_CELLS = 10
#: ... and when fewer than this share of its held-out cells get it back.
MIN_RECALL = 0.5


def label_report(truth: np.ndarray, probabilities: np.ndarray, sets: np.ndarray, n_classes: int) -> dict:
    """Confusion, recall, precision and label-set coverage of the held-out cells, per label.

    Parameters
    ----------
    truth
        Label code of each held-out cell.
    probabilities
        Their label probabilities (cells x labels, plus ``"unassigned"`` as a last column when novelty is on).
    sets
        Their label sets as a bool mask over the same columns.
    n_classes
        Number of labels (the columns before ``"unassigned"``).

    Returns
    -------
    ``{"n_cells", "recall", "precision", "set_coverage", "confusion"}``: per label (``NaN`` where a label
    has no held-out cell, or, for precision, is never called); ``confusion[i, j]`` counts the held-out cells
    of label ``i`` whose most probable label is ``j``.
    """
    truth = np.asarray(truth, dtype=np.int64)
    called = np.asarray(probabilities)[:, :n_classes].argmax(axis=1)
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (truth, called), 1)
    right = np.diag(confusion).astype(np.float64)
    n_cells, n_called = confusion.sum(axis=1), confusion.sum(axis=0)
    covered = np.bincount(truth, weights=np.asarray(sets)[np.arange(len(truth)), truth], minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "n_cells": n_cells,
            "recall": np.where(n_cells > 0, right / n_cells, np.nan),
            "precision": np.where(n_called > 0, right / n_called, np.nan),
            "set_coverage": np.where(n_cells > 0, covered / n_cells, np.nan),
            "confusion": confusion,
        }


def unreliable_labels(report: dict, classes) -> list[str]:
    """One phrase per label whose held-out recall is below :data:`MIN_RECALL` (with :data:`MIN_CELLS` cells
    or more), worst first: its recall and the label most of its cells get instead."""
    recall, n_cells, confusion = report["recall"], report["n_cells"], report["confusion"]
    poor = np.flatnonzero((n_cells >= MIN_CELLS) & (recall < MIN_RECALL))
    phrases = []
    for i in poor[np.argsort(recall[poor], kind="stable")]:
        others = confusion[i].copy()
        others[i] = -1
        j = int(others.argmax())
        phrases.append(
            f"{classes[i]!r} ({recall[i]:.0%} of {n_cells[i]} held-out cells right; "
            f"{confusion[i, j] / n_cells[i]:.0%} called {classes[j]!r})"
        )
    return phrases


def warn_unreliable_labels(report: dict, classes, *, key: str, matched: bool = True, stacklevel: int = 2) -> None:
    """Warn, naming them, about the labels the held-out reference cells mostly do not get back.

    ``matched``: the held-out cells were thinned to the query's depth (else they are at the reference's).
    """
    phrases = unreliable_labels(report, classes)
    if not phrases:
        return
    shown = "; ".join(phrases[:5]) + (f"; and {len(phrases) - 5} more" if len(phrases) > 5 else "")
    how = "measured as this query is" if matched else "at the reference's depth"
    warnings.warn(
        f"transfer_labels: held-out reference cells, {how}, mostly do not get their own "
        f"label back for {len(phrases)} label(s): {shown}. Query cells of these labels will mostly get another "
        f"label, with a confidence that is right on average but not for them: read those calls with care. "
        f"Recall, precision and label-set coverage per label: uns['{key}_label_transfer']['held_out']; "
        f"plot: dice.pl.label_confusion(adata).",
        UnreliableLabelWarning,
        stacklevel=stacklevel + 1,
    )
