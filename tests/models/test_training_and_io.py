import json

import numpy as np
import pytest
import torch

import dice
from dice._validation import DiceInputError
from dice.models import DicePrior
from dice.models._training import SameLabelMixup
from dice.pp._linear import LinearEmbedding
from dice.tl import TrainSettings


def test_trained_prior_generates_the_two_cluster_toy(torch_threads):
    """A prior trained on two well separated clusters generates both, in the right proportions."""
    rng = np.random.default_rng(0)
    n, k = 2000, 2
    labels = rng.integers(0, 2, n)
    centres = np.array([[-3.0, 0.0], [3.0, 1.0]])
    latents = (centres[labels] + 0.4 * rng.normal(size=(n, k))).astype(np.float32)
    embedding = LinearEmbedding(
        genes=__import__("pandas").Index(["a", "b"]),
        mean=np.zeros(2),
        std=np.ones(2),
        loadings=np.eye(2, dtype=np.float32),
        singular_values=np.ones(2),
        noise_var=0.1,
        gene_noise_var=np.ones(2, dtype=np.float32),
    )
    model = DicePrior.fit(
        embedding, latents, settings=TrainSettings(n_updates=1500, batch_size=256), seed=0, progress=False
    )
    samples = model.sample_prior(1000, seed=1)
    nearest = np.argmin(((samples[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    distance = np.sqrt(((samples - centres[nearest]) ** 2).sum(-1))
    assert 0.35 < nearest.mean() < 0.65  # both modes, balanced
    assert np.median(distance) < 1.0  # samples sit on the clusters, not between them
    for c in range(2):
        np.testing.assert_allclose(samples[nearest == c].mean(0), centres[c], atol=0.35)
    history = model.history
    assert history["loss"][-1] < history["loss"][0]


def test_mixup_combines_only_same_label_cells():
    latents = torch.tensor([[0.0], [1.0], [10.0], [11.0]])
    labels = np.array(["a", "a", "b", "b"])
    mixup = SameLabelMixup(labels, prob=1.0)
    generator = torch.Generator().manual_seed(0)
    index = torch.tensor([0, 1, 2, 3] * 50)
    mixed = mixup(latents, index, generator)
    a_rows, b_rows = mixed[index < 2], mixed[index >= 2]
    assert a_rows.min() >= 0 and a_rows.max() <= 1
    assert b_rows.min() >= 10 and b_rows.max() <= 11
    assert len(torch.unique(a_rows)) > 10  # real convex combinations, not copies


def test_save_load_round_trip_gives_identical_results(tmp_path, trained_model, query):
    trained_model.save(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["format_version"] == dice.models._prior.FORMAT_VERSION and len(config["genes"]) == 60
    loaded = DicePrior.load(tmp_path / "model", device="cpu")
    a, b = query.copy(), query.copy()
    dice.tl.denoise(a, model=trained_model, seed=4, progress=False)
    dice.tl.denoise(b, model=loaded, seed=4, progress=False)
    np.testing.assert_array_equal(a.obsm["X_dice"], b.obsm["X_dice"])
    assert loaded.history["loss"] == trained_model.history["loss"]
    np.testing.assert_array_equal(loaded.embedding.gene_noise_var, trained_model.embedding.gene_noise_var)


def test_save_refuses_to_overwrite(tmp_path, trained_model):
    trained_model.save(tmp_path / "m")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        trained_model.save(tmp_path / "m")
    trained_model.save(tmp_path / "m", overwrite=True)


def test_load_refuses_other_format_version(tmp_path, trained_model):
    trained_model.save(tmp_path / "m")
    config_path = tmp_path / "m" / "config.json"
    config = json.loads(config_path.read_text())
    config["format_version"] = 99
    config_path.write_text(json.dumps(config))
    with pytest.raises(DiceInputError, match="format version 99"):
        DicePrior.load(tmp_path / "m")


def test_load_refuses_mismatched_genes(tmp_path, trained_model):
    trained_model.save(tmp_path / "m")
    config_path = tmp_path / "m" / "config.json"
    config = json.loads(config_path.read_text())
    config["genes"] = config["genes"][:-1]
    config["config_sha256"] = dice.models._io.config_digest(config)  # a consistent config, past its checksum
    config_path.write_text(json.dumps(config))
    with pytest.raises(DiceInputError, match="does not match the saved loadings"):
        DicePrior.load(tmp_path / "m")


def test_load_refuses_a_non_model_directory(tmp_path):
    with pytest.raises(DiceInputError, match="not a dice model directory"):
        DicePrior.load(tmp_path)
