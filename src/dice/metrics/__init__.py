"""Evaluation toolkit used by every benchmark (the protocol of BENCHMARKS.md; paper appendix D).

Partition agreement (true labels vs clusters)
    :func:`ari`, :func:`nmi` (arithmetic by default, equal to :func:`v_measure`), :func:`v_measure`.
Label structure in an embedding
    :func:`silhouette` (cosine, true labels), :func:`clisi` / :func:`clisi_per_cell` (inverse Simpson
    index of true labels among kNN, self excluded, plain proportions), :func:`knn_accuracy`
    (leave-one-out), :func:`knn_transfer_accuracy` (reference -> query).
Calibration
    :func:`reliability_table`, :func:`expected_calibration_error` (confidence vs accuracy).
Fidelity
    :func:`latent_error` (mean squared Euclidean distance per cell to clean latents).
Clustering
    :func:`leiden_sweep` (Leiden over a resolution grid on the embedding's own kNN graph; oracle,
    cluster-count and stability choices).
All at once, and tables
    :func:`evaluate` (flat dict with keys :data:`EVALUATE_KEYS`), :func:`summarize` (mean/sd over seeds),
    :func:`format_mean_sd` (markdown ``mean ± sd`` table).

Unlabeled cells (NaN/None labels) are dropped with a ``UserWarning``; mismatched lengths and fewer than
two true classes raise ``ValueError``.
"""

from ._calibration import expected_calibration_error, reliability_table
from ._evaluate import EVALUATE_KEYS, evaluate
from ._fidelity import latent_error
from ._leiden import DEFAULT_RESOLUTIONS, LeidenSweepResult, leiden_sweep
from ._neighbors import clisi, clisi_per_cell, knn_accuracy, knn_transfer_accuracy, silhouette
from ._partition import ari, nmi, v_measure
from ._summary import format_mean_sd, summarize

__all__ = [
    "DEFAULT_RESOLUTIONS",
    "EVALUATE_KEYS",
    "LeidenSweepResult",
    "ari",
    "clisi",
    "clisi_per_cell",
    "evaluate",
    "expected_calibration_error",
    "format_mean_sd",
    "knn_accuracy",
    "knn_transfer_accuracy",
    "latent_error",
    "leiden_sweep",
    "nmi",
    "reliability_table",
    "silhouette",
    "summarize",
    "v_measure",
]
