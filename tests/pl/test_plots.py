import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

import dice
from dice._validation import DiceInputError


@pytest.fixture()
def denoised(trained_model, query):
    dice.tl.denoise(query, model=trained_model, progress=False)
    return query


def test_plots_return_figures_and_write_nothing(denoised, trained_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = set(denoised.obsm)
    figures = [
        dice.pl.embedding_comparison(denoised, color="label", basis="pca"),
        dice.pl.embedding_comparison(denoised, color="dice_uncertainty", basis="umap"),
        dice.pl.uncertainty(denoised, basis="pca"),
        dice.pl.training_loss(trained_model),
    ]
    assert all(isinstance(fig, plt.Figure) for fig in figures)
    assert list(tmp_path.iterdir()) == []
    assert set(denoised.obsm) == before  # the UMAP was computed on a scratch object
    plt.close("all")


def test_plots_save_when_asked(denoised, tmp_path):
    dice.pl.embedding_comparison(denoised, color="label", basis="pca", save=tmp_path / "cmp.png")
    assert (tmp_path / "cmp.png").stat().st_size > 1000
    plt.close("all")


def test_plot_errors_are_clear(trained_model, query):
    with pytest.raises(DiceInputError, match=r"Run dice\.tl\.denoise"):
        dice.pl.embedding_comparison(query, basis="pca")
    dice.tl.denoise(query, model=trained_model, progress=False)
    with pytest.raises(DiceInputError, match="not a column"):
        dice.pl.embedding_comparison(query, color="nope")
