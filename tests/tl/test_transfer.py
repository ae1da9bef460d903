"""Label transfer: toy accuracy, low confidence for an unseen cluster, errors leave the query untouched."""

from __future__ import annotations

import numpy as np
import pytest

import dice
from dice._validation import DiceInputError
from dice.tl import PosteriorSettings, TrainSettings, TransferSettings

FAST = {
    "training": TrainSettings(n_updates=200),
    "n_comps": 15,
    "settings": PosteriorSettings(n_samples=5),
    "progress": False,
}


@pytest.fixture(scope="module")
def toy():
    """Five training clusters (E.2 design, small); half the query cells come from a sixth, unseen cluster."""
    ref, query = dice.datasets.synthetic(
        "e2_novel", n_reference=400, n_query=100, n_genes=100, novel_min_distance=6.0, seed=0
    )
    return ref, query


@pytest.fixture(scope="module")
def transferred(toy):
    ref, query = toy
    return dice.tl.transfer_labels(query, ref, labels_key="label", seed=0, copy=True, **FAST)


def test_accuracy_and_outputs(toy, transferred):
    _, query = toy
    out = transferred
    seen = ~query.obs["novel"].to_numpy()
    truth = query.obs["label"].astype(str).to_numpy()
    pred = out.obs["dice_label"].astype(str).to_numpy()
    assert np.mean(pred[seen] == truth[seen]) >= 0.95
    probs = out.obsm["dice_label_probabilities"]
    assert list(probs.columns) == [*out.uns["dice_label_transfer"]["classes"], "unassigned"]
    assert np.allclose(probs.to_numpy().sum(axis=1), 1.0)
    conf = out.obs["dice_label_confidence"].to_numpy()
    assert np.all((conf >= 0) & (conf <= 1))
    sets = out.obs["dice_label_set"].astype(str).to_numpy()
    coverage = np.mean([t in s.split("|") for t, s in zip(truth[seen], sets[seen], strict=True)])
    assert coverage >= 0.85
    assert "X_dice" in out.obsm and "dice_label_transfer" in out.uns


def test_knn_classifier_agrees_with_the_logistic_one(toy, transferred):
    _, query = toy
    knn = dice.tl.transfer_labels(
        query, toy[0], labels_key="label", seed=0, copy=True, transfer=TransferSettings(classifier="knn"), **FAST
    )
    assert transferred.uns["dice_label_transfer"]["params"]["classifier"] == "logistic"
    assert knn.uns["dice_label_transfer"]["params"]["classifier"] == "knn"
    seen = ~query.obs["novel"].to_numpy()
    agree = knn.obs["dice_label"].astype(str).to_numpy() == transferred.obs["dice_label"].astype(str).to_numpy()
    assert agree[seen].mean() >= 0.95


def test_novel_cluster_gets_low_confidence(toy, transferred):
    _, query = toy
    novel = query.obs["novel"].to_numpy()
    conf = transferred.obs["dice_label_confidence"].to_numpy()
    assert conf[novel].mean() < 0.5
    assert conf[~novel].mean() > 0.9
    assert np.mean(transferred.obs["dice_label_set"].to_numpy()[novel] == "unassigned") > 0.5


def test_errors_leave_query_untouched(toy):
    ref, query = toy
    query = query.copy()
    before = (list(query.obs), list(query.obsm), list(query.uns))
    with pytest.raises(DiceInputError, match="labels_key"):
        dice.tl.transfer_labels(query, ref, labels_key="cell_type", **FAST)
    with pytest.raises(DiceInputError):
        dice.tl.transfer_labels(query[:, :3].copy(), ref, labels_key="label", **FAST)
    with pytest.raises(DiceInputError, match="alpha"):
        dice.tl.transfer_labels(query, ref, labels_key="label", transfer=TransferSettings(alpha=0.0), **FAST)
    with pytest.raises(DiceInputError, match="classifier"):
        dice.tl.transfer_labels(query, ref, labels_key="label", transfer=TransferSettings(classifier="svm"), **FAST)
    with pytest.raises(DiceInputError, match="n_neighbors"):
        dice.tl.transfer_labels(query, ref, labels_key="label", transfer=TransferSettings(n_neighbors=0), **FAST)
    assert (list(query.obs), list(query.obsm), list(query.uns)) == before


def test_too_few_genes_with_a_model_leaves_query_untouched(toy):
    ref, query = toy
    model = dice.tl.train_prior(ref, n_comps=15, settings=TrainSettings(n_updates=50), progress=False)
    small = query[:, :3].copy()
    before = (list(small.obs), list(small.obsm))
    with pytest.raises(DiceInputError):
        dice.tl.transfer_labels(small, ref, labels_key="label", model=model, progress=False)
    assert (list(small.obs), list(small.obsm)) == before


def test_calibration_cells_are_drawn_only_for_knn_votes(toy, monkeypatch):
    """The logistic classifier reads posterior means, so no posterior is sampled for it (the calibration
    cells' draws were most of transfer_labels' time on a shallow query); the kNN votes need the draws."""
    import dice.tl._latent as latent_module  # transfer_labels imports posterior_of from here when called

    kept = []
    real = latent_module.posterior_of

    def spy(model, cells, settings, **kwargs):
        kept.append(kwargs.get("keep_samples", False))
        return real(model, cells, settings, **kwargs)

    monkeypatch.setattr(latent_module, "posterior_of", spy)
    ref, query = toy
    for classifier, expected in (("logistic", [False, False, False]), ("knn", [True, True])):
        kept.clear()
        dice.tl.transfer_labels(
            query, ref, labels_key="label", seed=0, copy=True, transfer=TransferSettings(classifier=classifier), **FAST
        )
        assert kept == expected, (classifier, kept)  # calibration, query (, the reference's means)
