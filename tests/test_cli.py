"""The command line: it works end to end, and it fails fast, with exit code 2 and one line, on user errors."""

import json

import anndata as ad
import pandas as pd
import pytest

import dice
from dice._validation import DiceInputError, DiceModelError
from dice.cli import main
from helpers import make_clusters

TINY = dict(hidden_dim=16, n_blocks=1, n_timesteps=50, n_updates=30, batch_size=64)


@pytest.fixture(scope="module")
def files(tmp_path_factory, torch_threads):
    """A tiny reference and query on disk, and a tiny model saved from the reference."""
    root = tmp_path_factory.mktemp("cli")
    reference = make_clusters(200, seed=1)
    reference.write_h5ad(root / "ref.h5ad")
    make_clusters(40, seed=2).write_h5ad(root / "query.h5ad")
    model = dice.tl.train_prior(reference, n_comps=4, settings=dice.tl.TrainSettings(**TINY), seed=0, progress=False)
    model.save(root / "model")
    return root


@pytest.fixture()
def no_work(monkeypatch):
    """Make any training, denoising or data reading fail the test: the error must come before them."""

    def forbidden(*args, **kwargs):
        raise AssertionError("the command started working before refusing its arguments")

    monkeypatch.setattr(dice.tl, "train_prior", forbidden)
    monkeypatch.setattr(dice.tl, "denoise", forbidden)
    monkeypatch.setattr(dice.tl, "transfer_labels", forbidden)
    monkeypatch.setattr(ad, "read_h5ad", forbidden)


def one_line_error(capsys, fragment: str) -> str:
    """The single stderr line of a refused command; it contains ``fragment`` and no traceback."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("dice: error: "), err
    assert fragment in lines[0], err
    assert "Traceback" not in err
    return lines[0]


def test_train_then_denoise_from_files(tmp_path, torch_threads, capsys):
    make_clusters(300, seed=1).write_h5ad(tmp_path / "ref.h5ad")
    make_clusters(80, seed=2).write_h5ad(tmp_path / "query.h5ad")
    model, ref, query, out = (str(tmp_path / name) for name in ("model", "ref.h5ad", "query.h5ad", "out.h5ad"))
    assert main(["train", ref, "--out", model, "--n-comps", "4", "--steps", "60", "--quiet"]) == 0
    assert main(["denoise", query, "--model", model, "--out", out, "--quiet"]) == 0
    result = ad.read_h5ad(out)
    assert result.obsm["X_dice"].shape == (80, 4) and "dice_uncertainty" in result.obs
    assert "denoised 80 cells" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "out.h5ad", "query.h5ad", "ref.h5ad"]  # no temp


def test_transfer_from_files(files, tmp_path, torch_threads, capsys):
    out = tmp_path / "labelled.h5ad"
    args = ["transfer", str(files / "query.h5ad"), "--reference", str(files / "ref.h5ad"), "--labels-key", "label"]
    assert main([*args, "--model", str(files / "model"), "--out", str(out), "--quiet"]) == 0
    result, query = ad.read_h5ad(out), ad.read_h5ad(files / "query.h5ad")
    assert list(result.obs_names) == list(query.obs_names)
    accuracy = (result.obs["dice_label"].astype(str) == query.obs["label"].astype(str)).mean()
    assert accuracy > 0.9, accuracy  # two well-separated clusters
    assert result.obs["dice_label_confidence"].between(0, 1).all() and "dice_label_set" in result.obs
    assert "transferred labels to 40 cells" in capsys.readouterr().out


def test_transfer_unknown_labels_key_is_refused_before_work(files, tmp_path, monkeypatch, capsys):
    def forbidden(*args, **kwargs):
        raise AssertionError("transfer_labels ran")

    monkeypatch.setattr(dice.tl, "transfer_labels", forbidden)
    out = tmp_path / "labelled.h5ad"
    args = ["transfer", str(files / "query.h5ad"), "--reference", str(files / "ref.h5ad"), "--labels-key", "kind"]
    assert main([*args, "--model", str(files / "model"), "--out", str(out)]) == 2
    one_line_error(capsys, "--labels-key 'kind' is not a column of the reference's obs (it has: label)")
    assert not out.exists()


def test_transfer_out_equal_to_reference_is_refused(files, no_work, capsys):
    ref = str(files / "ref.h5ad")
    args = ["transfer", str(files / "query.h5ad"), "--reference", ref, "--labels-key", "label", "--out", ref]
    assert main(args) == 2
    one_line_error(capsys, "is the same as the input --reference")


@pytest.mark.parametrize(
    ("reference", "device", "fragment"),
    [("cells.csv", "auto", "--reference"), ("ref.h5ad", "tpu", "'tpu'"), ("missing.h5ad", "auto", "does not exist")],
)
def test_transfer_checks_reference_and_device_up_front(files, tmp_path, no_work, capsys, reference, device, fragment):
    (tmp_path / "cells.csv").write_text("a,b\n1,2\n")
    where = files if reference == "ref.h5ad" else tmp_path
    args = ["transfer", str(files / "query.h5ad"), "--reference", str(where / reference), "--labels-key", "label"]
    assert main([*args, "--model", str(files / "model"), "--out", str(tmp_path / "o.h5ad"), "--device", device]) == 2
    one_line_error(capsys, fragment)


def test_warnings_are_one_line_without_the_source(files, tmp_path, monkeypatch, torch_threads, capsys):
    import warnings

    real = dice.tl.denoise

    def warning_denoise(*args, **kwargs):
        warnings.warn("something\n odd", UserWarning, stacklevel=2)
        warnings.warn("depth", dice.DepthWarning, stacklevel=2)
        return real(*args, **kwargs)

    monkeypatch.setattr(dice.tl, "denoise", warning_denoise)
    args = ["denoise", str(files / "query.h5ad"), "--model", str(files / "model"), "--out", str(tmp_path / "o.h5ad")]
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main([*args, "--quiet"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert "dice: warning: something odd" in err
    assert "dice: warning: DepthWarning: depth" in err
    assert not any("cli.py" in line for line in err)


def test_cli_reports_bad_input_without_traceback(tmp_path, capsys):
    assert main(["denoise", str(tmp_path / "missing.h5ad"), "--out", str(tmp_path / "o.h5ad")]) == 2
    one_line_error(capsys, "does not exist")


def test_train_refuses_existing_out_before_training(files, tmp_path, no_work, capsys):
    assert main(["train", str(files / "ref.h5ad"), "--out", str(files / "model")]) == 2
    one_line_error(capsys, "pass --overwrite")


def test_train_refuses_out_with_foreign_files(files, tmp_path, no_work, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["train", str(files / "ref.h5ad"), "--out", str(tmp_path), "--overwrite"]) == 2
    one_line_error(capsys, "not part of a dice model")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_train_overwrite_replaces_a_model(files, tmp_path, torch_threads, capsys):
    out = tmp_path / "model"
    args = ["train", str(files / "ref.h5ad"), "--out", str(out), "--n-comps", "3", "--steps", "5", "--quiet"]
    assert main(args) == 0
    assert main([*args, "--overwrite"]) == 0
    assert dice.models.DicePrior.load(out).embedding.n_comps == 3


@pytest.mark.parametrize("command", ["train", "denoise"])
def test_out_in_missing_folder_is_refused_up_front(files, tmp_path, no_work, capsys, command):
    target = "ref.h5ad" if command == "train" else "query.h5ad"
    out = tmp_path / "missing_dir" / ("model" if command == "train" else "x.h5ad")
    assert main([command, str(files / target), "--out", str(out)]) == 2
    one_line_error(capsys, "does not exist; create it first")
    assert not out.parent.exists()


def test_train_out_equal_to_reference_is_refused(files, no_work, capsys):
    assert main(["train", str(files / "ref.h5ad"), "--out", str(files / "ref.h5ad")]) == 2
    one_line_error(capsys, "is the same as the input reference")


def test_denoise_out_equal_to_query_is_refused(files, no_work, capsys):
    before = (files / "query.h5ad").read_bytes()
    for flags in ([], ["--overwrite"]):
        assert main(["denoise", str(files / "query.h5ad"), "--out", str(files / "query.h5ad"), *flags]) == 2
        one_line_error(capsys, "is the same as the input query")
    assert (files / "query.h5ad").read_bytes() == before


def test_denoise_out_equal_to_model_is_refused(files, no_work, capsys):
    args = ["denoise", str(files / "query.h5ad"), "--model", str(files / "model"), "--out", str(files / "model")]
    assert main(args) == 2
    one_line_error(capsys, "is the same as the input --model")


def test_denoise_refuses_existing_out_without_overwrite(files, tmp_path, torch_threads, capsys):
    out = tmp_path / "out.h5ad"
    out.write_bytes(b"keep me")
    args = ["denoise", str(files / "query.h5ad"), "--model", str(files / "model"), "--out", str(out), "--quiet"]
    assert main(args) == 2
    one_line_error(capsys, "pass --overwrite")
    assert out.read_bytes() == b"keep me"
    assert main([*args, "--overwrite"]) == 0
    assert ad.read_h5ad(out).obsm["X_dice"].shape == (40, 4)


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("cells.csv", b"a,b\n1,2\n", "is not an .h5ad file"),
        ("cells.h5", b"", "is not an .h5ad file"),
        ("cells.h5ad", b"", "is not an HDF5 file"),
        ("cells.h5ad", b"not really hdf5" * 100, "is not an HDF5 file"),
    ],
)
@pytest.mark.parametrize("command", ["train", "denoise"])
def test_non_h5ad_input_is_refused(tmp_path, no_work, capsys, command, name, content, fragment):
    (tmp_path / name).write_bytes(content)
    assert main([command, str(tmp_path / name), "--out", str(tmp_path / "out.h5ad")]) == 2
    one_line_error(capsys, fragment)


def test_input_folder_is_refused(tmp_path, no_work, capsys):
    (tmp_path / "data.h5ad").mkdir()
    assert main(["train", str(tmp_path / "data.h5ad"), "--out", str(tmp_path / "m")]) == 2
    one_line_error(capsys, "is a directory")


def test_damaged_hdf5_input_is_one_line(tmp_path, capsys):
    import h5py

    with h5py.File(tmp_path / "odd.h5ad", "w") as handle:
        handle["something"] = [1, 2, 3]
    assert main(["train", str(tmp_path / "odd.h5ad"), "--out", str(tmp_path / "m")]) == 2
    one_line_error(capsys, "could not be read as AnnData")


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        ("truncate_weights", "weights.pt"),
        ("empty_weights", "weights.pt"),
        ("invalid_json", "config.json"),
        ("json_list", "config.json"),
        ("no_weights", "weights.pt"),
    ],
)
def test_corrupted_model_gives_the_dice_message(files, tmp_path, torch_threads, capsys, damage, fragment):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(files / "model", model)
    weights, config = model / "weights.pt", model / "config.json"
    if damage == "truncate_weights":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "empty_weights":
        weights.write_bytes(b"")
    elif damage == "invalid_json":
        config.write_text(config.read_text()[:-20])
    elif damage == "json_list":
        config.write_text(json.dumps([1, 2]))
    else:
        weights.unlink()
    out = tmp_path / "out.h5ad"
    assert main(["denoise", str(files / "query.h5ad"), "--model", str(model), "--out", str(out)]) == 2
    line = one_line_error(capsys, fragment)
    assert "weights_only" not in line and not out.exists()


@pytest.mark.parametrize("model", ["missing", "file"])
def test_model_that_is_not_a_folder_is_refused(files, tmp_path, no_work, capsys, model):
    path = tmp_path / model
    if model == "file":
        path.write_text("x")
    args = ["denoise", str(files / "query.h5ad"), "--model", str(path), "--out", str(tmp_path / "o.h5ad")]
    assert main(args) == 2
    one_line_error(capsys, "--model")


@pytest.mark.parametrize("device", ["tpu", "cuda:99", "nonsense"])
@pytest.mark.parametrize("command", ["train", "denoise"])
def test_unusable_device_is_refused_up_front(files, tmp_path, no_work, capsys, command, device):
    target = "ref.h5ad" if command == "train" else "query.h5ad"
    args = [command, str(files / target), "--out", str(tmp_path / "out.h5ad"), "--device", device]
    if command == "denoise":
        args += ["--model", str(files / "model")]
    assert main(args) == 2
    one_line_error(capsys, repr(device))


@pytest.mark.parametrize(
    ("command", "option", "value"),
    [
        ("train", "--steps", "-5"),
        ("train", "--steps", "0"),
        ("train", "--steps", "many"),
        ("train", "--n-comps", "0"),
        ("train", "--n-comps", "2.5"),
        ("train", "--n-top-genes", "-1"),
        ("train", "--seed", "-1"),
        ("train", "--layer", ""),
        ("denoise", "--n-samples", "0"),
        ("denoise", "--seed", "-3"),
        ("denoise", "--mode", "fast"),
        ("demo", "--steps", "-5"),
        ("demo", "--seed", "x"),
    ],
)
def test_bad_numeric_options_exit_2(files, tmp_path, no_work, capsys, command, option, value):
    args = [command] if command == "demo" else [command, str(files / "ref.h5ad"), "--out", str(tmp_path / "o")]
    assert main([*args, option, value]) == 2
    one_line_error(capsys, option)


def test_usage_errors_are_one_line(capsys):
    assert main(["train"]) == 2
    one_line_error(capsys, "required")
    assert main(["frobnicate"]) == 2
    one_line_error(capsys, "invalid choice")


def test_help_still_exits_0(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    assert "--debug" in capsys.readouterr().out


def test_library_user_error_is_exit_2_and_debug_shows_it(files, tmp_path, torch_threads, capsys):
    args = ["denoise", str(files / "query.h5ad"), "--model", str(files / "model"), "--out", str(tmp_path / "o.h5ad")]
    assert main([*args, "--layer", "nope"]) == 2
    one_line_error(capsys, "Layer 'nope' not found")
    with pytest.raises(DiceInputError, match="Layer 'nope' not found"):
        main([*args, "--layer", "nope", "--debug"])
    assert not (tmp_path / "o.h5ad").exists()


def test_corrupted_model_with_debug_raises_the_dice_error(files, tmp_path, torch_threads):
    import shutil

    shutil.copytree(files / "model", tmp_path / "model")
    (tmp_path / "model" / "config.json").write_text("{")
    out = str(tmp_path / "o.h5ad")
    with pytest.raises(DiceModelError, match=r"config\.json"):
        main(["denoise", str(files / "query.h5ad"), "--model", str(tmp_path / "model"), "--out", out, "--debug"])


def test_unexpected_error_is_exit_1_with_a_hint(files, tmp_path, monkeypatch, torch_threads, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(dice.tl, "denoise", broken)
    args = ["denoise", str(files / "query.h5ad"), "--model", str(files / "model"), "--out", str(tmp_path / "o.h5ad")]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("dice: internal error: RuntimeError: boom second line") and "--debug" in err
    assert "\n" not in err and not (tmp_path / "o.h5ad").exists()
    with pytest.raises(RuntimeError, match="boom"):
        main([*args, "--debug"])


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path, torch_threads, capsys):
    assert main(["demo", "--out", str(tmp_path), "--steps", "150", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "PCA + kNN" in printed and "DICE" in printed and "5% (" in printed
    assert (tmp_path / "cbmc_pca_vs_dice_shallow.png").stat().st_size > 10_000
    assert (tmp_path / "cbmc_label_confusion_shallow.png").stat().st_size > 10_000
    shallow = ad.read_h5ad(tmp_path / "cbmc_shallow_query_dice.h5ad")
    assert shallow.uns["dice_label_transfer"]["held_out"]["confusion"].shape == (12, 12)
    assert shallow.obsm["X_dice"].shape[1] == 25
    assert shallow.uns["dice"]["likelihood"] == "counts"
    table = pd.read_csv(tmp_path / "metrics.csv")
    assert len(table) == 6 and set(table["method"]) == {"PCA + kNN", "DICE"}
