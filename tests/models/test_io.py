"""The model directory: atomic saves, and loads that return exactly what was saved or raise ``DiceModelError``."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dice._settings import TrainSettings
from dice._validation import DiceInputError, DiceModelError
from dice.models import DicePrior, _io
from dice.models._prior import resolve_device
from dice.pp._linear import LinearEmbedding

N_GENES, K = 8, 3


def _tiny_model(seed: int) -> DicePrior:
    """A few genes, k = 3, a tiny network trained for 20 updates (well under a second)."""
    rng = np.random.default_rng(seed)
    loadings, _ = np.linalg.qr(rng.normal(size=(N_GENES, K)))
    embedding = LinearEmbedding(
        genes=pd.Index([f"g{i}" for i in range(N_GENES)]),
        mean=rng.normal(size=N_GENES),
        std=rng.uniform(1.0, 2.0, N_GENES),
        loadings=loadings,
        singular_values=np.array([3.0, 2.0, 1.0]),
        noise_var=0.1,
        gene_noise_var=rng.uniform(0.05, 0.2, N_GENES),
        max_value=10.0,
    )
    latents = rng.normal(size=(64, K)).astype(np.float32)
    settings = TrainSettings(hidden_dim=8, n_blocks=1, n_timesteps=16, n_updates=20, batch_size=32)
    return DicePrior.fit(embedding, latents, settings=settings, seed=seed, device="cpu", progress=False)


@pytest.fixture(scope="module")
def models(torch_threads) -> tuple[DicePrior, DicePrior]:
    return _tiny_model(0), _tiny_model(1)


@pytest.fixture()
def saved(tmp_path, models) -> Path:
    return models[0].save(tmp_path / "m")


def _fingerprint(model: DicePrior) -> dict:
    """Everything a load could get wrong, as exact values (bytes for arrays)."""
    emb = model.embedding
    arrays = {}
    for name, value in vars(emb).items():
        if isinstance(value, np.ndarray):
            arrays[name] = (value.dtype.str, value.shape, value.tobytes())
        elif name != "genes":
            arrays[name] = value
    state = {
        k: (str(v.dtype), tuple(v.shape), v.cpu().numpy().tobytes()) for k, v in model.network.state_dict().items()
    }
    return {
        "genes": list(emb.genes),
        "embedding": arrays,
        "state": state,
        "latent_scale": model.latent_scale,
        "config": json.dumps(model.config, sort_keys=True),
        "schedule": model.schedule.config(),
        "samples": model.sample_prior(4, seed=3).tobytes(),
    }


def _reseal(directory: Path) -> None:
    """Make config.json vouch for whatever weights.pt now holds (to reach the checks behind the checksums)."""
    config_path = directory / "config.json"
    config = json.loads(config_path.read_text())
    try:
        tensors = torch.load(directory / "weights.pt", weights_only=True)
    except Exception:  # not loadable: keep the manifest, only the checksums change
        tensors = None
    if isinstance(tensors, dict) and all(isinstance(v, torch.Tensor) for v in tensors.values()):
        config["weights"]["tensors"] = {
            k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")} for k, v in tensors.items()
        }
    config["weights"]["sha256"] = hashlib.sha256((directory / "weights.pt").read_bytes()).hexdigest()
    config["config_sha256"] = _io.config_digest(config)
    config_path.write_text(json.dumps(config, indent=1))


def _edit_config(directory: Path, edit, *, reseal: bool = False) -> None:
    config_path = directory / "config.json"
    config = json.loads(config_path.read_text())
    edit(config)
    if reseal:
        config["config_sha256"] = _io.config_digest(config)
    config_path.write_text(json.dumps(config, indent=1))


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


# ---------------------------------------------------------------------------------------------- round trip
def test_round_trip_is_bit_identical_and_the_config_records_checksums(saved, models):
    config = json.loads((saved / "config.json").read_text())
    assert config["format_version"] == _io.FORMAT_VERSION == 2
    assert isinstance(config["format_version"], int)
    assert config["weights"]["sha256"] == hashlib.sha256((saved / "weights.pt").read_bytes()).hexdigest()
    assert config["weights"]["tensors"]["embedding.loadings"] == {"shape": [N_GENES, K], "dtype": "float64"}
    for key in (
        "genes",
        "n_comps",
        "max_value",
        "noise_var",
        "latent_scale",
        "network",
        "schedule",
        "training",
        "seed",
        "history",
    ):
        assert key in config
    assert _fingerprint(DicePrior.load(saved, device="cpu")) == _fingerprint(models[0])
    assert sorted(p.name for p in saved.parent.iterdir()) == ["m"]  # no temp dir left


def test_io_layer_round_trips_any_tensor(tmp_path):
    """New optional tensors (e.g. per-gene statistics) need no change to the file format code."""
    tensors = {"a.b": torch.arange(6, dtype=torch.int32).reshape(2, 3), "stats.per_gene": torch.rand(5).double()}
    _io.write_model_dir(tmp_path / "d", {"whatever": [1, 2]}, tensors, overwrite=False)
    config, back = _io.read_model_dir(tmp_path / "d", required={"whatever": (list,)})
    assert config["whatever"] == [1, 2] and set(back) == set(tensors)
    assert all(torch.equal(back[k], v) for k, v in tensors.items())


def test_save_refuses_a_non_empty_directory_without_overwrite(saved, models):
    before = _snapshot(saved)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        models[1].save(saved)
    assert _snapshot(saved) == before


def test_overwrite_never_deletes_files_that_are_not_a_model(tmp_path, models):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cells.h5ad").write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="not part of a dice model"):
        models[0].save(tmp_path / "data", overwrite=True)
    assert (tmp_path / "data" / "cells.h5ad").read_bytes() == b"precious"


def test_overwrite_replaces_the_model(saved, models):
    models[1].save(saved, overwrite=True)
    assert _fingerprint(DicePrior.load(saved, device="cpu")) == _fingerprint(models[1])
    assert sorted(p.name for p in saved.parent.iterdir()) == ["m"]


# ---------------------------------------------------------------------------------------------- interrupted saves
def _failing_torch_save(error: BaseException):
    def fail(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"PK\x03\x04 half a file")  # the temp dir exists and holds a partial file
        raise error

    return fail


@pytest.mark.parametrize("error", [OSError("No space left on device"), KeyboardInterrupt()], ids=["oserror", "ctrl-c"])
def test_interrupted_overwrite_keeps_the_old_model_and_no_temp_dir(saved, models, monkeypatch, error):
    before = _snapshot(saved)
    original = _fingerprint(DicePrior.load(saved, device="cpu"))
    monkeypatch.setattr(torch, "save", _failing_torch_save(error))
    with pytest.raises(type(error)):
        models[1].save(saved, overwrite=True)
    monkeypatch.undo()
    assert _snapshot(saved) == before  # bit-identical files
    assert _fingerprint(DicePrior.load(saved, device="cpu")) == original
    assert sorted(p.name for p in saved.parent.iterdir()) == ["m"]


def test_interrupted_config_write_keeps_the_old_model(saved, models, monkeypatch):
    before = _snapshot(saved)

    def fail(path, data):
        Path(path).write_bytes(data[: len(data) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(_io, "_write_bytes", fail)
    with pytest.raises(OSError, match="disk full"):
        models[1].save(saved, overwrite=True)
    assert _snapshot(saved) == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["m"]


def test_failed_rename_restores_the_old_model(saved, models, monkeypatch):
    before = _snapshot(saved)
    rename = _io.os.rename

    def fail_on_staging(src, dst):
        if ".tmp-" in str(src):
            raise OSError("rename failed")
        rename(src, dst)

    monkeypatch.setattr(_io.os, "rename", fail_on_staging)
    with pytest.raises(OSError, match="rename failed"):
        models[1].save(saved, overwrite=True)
    monkeypatch.undo()
    assert _snapshot(saved) == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["m"]


def test_interrupted_first_save_leaves_nothing(tmp_path, models, monkeypatch):
    monkeypatch.setattr(torch, "save", _failing_torch_save(OSError("disk full")))
    with pytest.raises(OSError):
        models[0].save(tmp_path / "new")
    assert list(tmp_path.iterdir()) == []


def test_a_save_killed_between_the_renames_points_at_the_previous_model(saved):
    saved.rename(saved.parent / ".m.old-123abc")  # what a kill between the two renames leaves
    with pytest.raises(DiceModelError, match=r"previous model is in .*\.m\.old-123abc"):
        DicePrior.load(saved, device="cpu")


# ---------------------------------------------------------------------------------------------- missing files
def test_missing_directory_or_files(tmp_path, saved):
    with pytest.raises(DiceModelError, match="does not exist"):
        DicePrior.load(tmp_path / "nowhere", device="cpu")
    (saved / "weights.pt").unlink()
    with pytest.raises(DiceModelError, match=r"not a dice model directory.*weights\.pt"):
        DicePrior.load(saved, device="cpu")


# ---------------------------------------------------------------------------------------------- broken weights.pt
@pytest.mark.parametrize("damage", ["truncated", "empty", "byte-flipped"])
def test_damaged_weights_do_not_belong_to_the_config(saved, damage):
    path = saved / "weights.pt"
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "empty":
        data = bytearray()
    else:
        data[len(data) // 3] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(DiceModelError, match=r"weights\.pt.*does not belong to config\.json.*Re-save"):
        DicePrior.load(saved, device="cpu")


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_unreadable_weights_are_not_a_dice_model_even_with_a_matching_checksum(saved, damage):
    """Behind the checksum, torch's raw errors (PytorchStreamReader, EOFError) become DiceModelError."""
    path = saved / "weights.pt"
    path.write_bytes(path.read_bytes()[: 100 if damage == "truncated" else 0])
    _reseal(saved)
    with pytest.raises(DiceModelError, match=r"weights\.pt.*not a dice model weights file, or is corrupted"):
        DicePrior.load(saved, device="cpu")


class _Payload:
    """Anything that is not a tensor: unpickling it could run code."""


@pytest.mark.parametrize("reseal", [False, True], ids=["checksum-mismatch", "checksum-matching"])
def test_pickle_payload_is_refused_without_advising_weights_only_false(saved, reseal):
    torch.save({"network.x": torch.zeros(2), "payload": _Payload()}, saved / "weights.pt")
    if reseal:
        _reseal(saved)
    with pytest.raises(DiceModelError) as info:
        DicePrior.load(saved, device="cpu")
    message = str(info.value)
    assert "weights.pt" in message
    assert ("not a dice model" in message) if reseal else ("does not belong" in message)
    assert "weights_only=False" not in message and "weights_only" not in message


def test_nan_weights_are_refused_on_load_and_on_save(saved, models):
    tensors = torch.load(saved / "weights.pt", weights_only=True)
    tensors["network.head.0.weight"][0, 0] = float("nan")
    torch.save(tensors, saved / "weights.pt")
    _reseal(saved)
    with pytest.raises(DiceModelError, match=r"weights\.pt.*NaN or infinite.*network\.head\.0\.weight"):
        DicePrior.load(saved, device="cpu")
    broken = copy.deepcopy(models[0])
    with torch.no_grad():
        next(broken.network.parameters()).fill_(float("inf"))
    with pytest.raises(DiceModelError, match="Refusing to save"):
        broken.save(saved.parent / "diverged")
    assert not (saved.parent / "diverged").exists()


def test_tensors_that_differ_from_the_manifest_are_refused(saved):
    tensors = torch.load(saved / "weights.pt", weights_only=True)
    tensors["embedding.mean"] = tensors["embedding.mean"].float()  # same name and shape, other dtype
    torch.save(tensors, saved / "weights.pt")
    config = json.loads((saved / "config.json").read_text())
    config["weights"]["sha256"] = hashlib.sha256((saved / "weights.pt").read_bytes()).hexdigest()
    config["config_sha256"] = _io.config_digest(config)
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(DiceModelError, match=r"'embedding\.mean' is float32 \[8\], but config\.json records float64"):
        DicePrior.load(saved, device="cpu")


def test_config_and_weights_of_two_models_are_refused(tmp_path, models):
    """What an interrupted in-place overwrite used to leave: one model's config with the other's weights."""
    a, b = models[0].save(tmp_path / "a"), models[1].save(tmp_path / "b")
    shutil.copy(b / "weights.pt", a / "weights.pt")
    with pytest.raises(DiceModelError, match=r"does not belong to config\.json.*mixes files of two models"):
        DicePrior.load(a, device="cpu")


# ---------------------------------------------------------------------------------------------- broken config.json
def test_invalid_json_names_the_file(saved):
    path = saved / "config.json"
    path.write_text(path.read_text()[:-40])
    with pytest.raises(DiceModelError, match=r"config\.json: is not valid JSON .*line \d+"):
        DicePrior.load(saved, device="cpu")


def test_json_list_is_not_a_config(saved):
    (saved / "config.json").write_text("[1, 2, 3]")
    with pytest.raises(DiceModelError, match=r"config\.json: holds a JSON list, not an object"):
        DicePrior.load(saved, device="cpu")


@pytest.mark.parametrize("key", ["genes", "latent_scale", "network", "weights", "config_sha256"])
def test_missing_key_is_named(saved, key):
    _edit_config(saved, lambda c: c.pop(key))
    with pytest.raises(DiceModelError, match=rf"config\.json: lacks the required keys \['{key}'\]"):
        DicePrior.load(saved, device="cpu")


@pytest.mark.parametrize(("key", "value"), [("genes", "g0"), ("n_comps", 3.0), ("seed", True), ("latent_scale", None)])
def test_wrong_type_is_named(saved, key, value):
    _edit_config(saved, lambda c: c.__setitem__(key, value))
    with pytest.raises(DiceModelError, match=rf"config\.json: '{key}' must be"):
        DicePrior.load(saved, device="cpu")


def test_string_format_version_is_refused_as_such(saved):
    _edit_config(saved, lambda c: c.__setitem__("format_version", "2"))
    with pytest.raises(DiceModelError, match=r"format_version must be an integer, found '2' \(str\)"):
        DicePrior.load(saved, device="cpu")


def test_format_version_1_asks_to_retrain(saved):
    _edit_config(saved, lambda c: c.__setitem__("format_version", 1))
    with pytest.raises(DiceModelError, match=r"format version 1 .*reads format version 2.*Re-train"):
        DicePrior.load(saved, device="cpu")


def test_newer_format_version_asks_to_upgrade(saved):
    _edit_config(saved, lambda c: c.__setitem__("format_version", 3))
    with pytest.raises(DiceModelError, match="newer dice"):
        DicePrior.load(saved, device="cpu")


def test_hand_edited_setting_is_refused(saved):
    _edit_config(saved, lambda c: c.__setitem__("latent_scale", c["latent_scale"] * 1.02))
    with pytest.raises(DiceModelError, match="does not match the checksum"):
        DicePrior.load(saved, device="cpu")


def test_genes_that_do_not_match_the_loadings_are_refused(saved):
    _edit_config(saved, lambda c: c.__setitem__("genes", c["genes"][:-1]), reseal=True)
    with pytest.raises(DiceModelError, match="does not match the saved loadings"):
        DicePrior.load(saved, device="cpu")


def test_model_error_is_an_input_error():
    assert issubclass(DiceModelError, DiceInputError)


# ---------------------------------------------------------------------------------------------- devices
def _unavailable(device: str) -> bool:
    if device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else 0
        return index >= (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    if device == "mps":
        return not torch.backends.mps.is_available()
    return True


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "cuda:99", "mps", "tpu", "nonsense", "meta", "xla"])
def test_unavailable_or_invalid_device_is_refused(device):
    if not _unavailable(device):
        pytest.skip(f"{device} is available here")
    with pytest.raises(DiceInputError, match=r"Devices available here: \['cpu'"):
        resolve_device(device)


def test_auto_picks_cuda_when_present():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_load_honours_the_device(saved):
    model = DicePrior.load(saved, device="cpu")
    assert model.device == torch.device("cpu")
    assert all(p.device.type == "cpu" for p in model.network.parameters())
    if torch.cuda.is_available():
        on_gpu = DicePrior.load(saved, device="cuda")
        assert all(p.device.type == "cuda" for p in on_gpu.network.parameters())
    else:
        with pytest.raises(DiceInputError, match="'cuda' was requested"):
            DicePrior.load(saved, device="cuda")


# ---------------------------------------------------------------------------------------------- fuzzing
def _corrupt(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    if rng.random() < 0.4:
        return "truncate", data[: int(rng.integers(0, len(data)))]
    flipped = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        flipped[int(rng.integers(0, len(data)))] ^= int(rng.integers(1, 256))
    return "flip", bytes(flipped)


def _try_load(directory: Path):
    try:
        return DicePrior.load(directory, device="cpu")
    except DiceModelError:
        return None


def _reformat(data: bytes, rng: np.random.Generator) -> bytes:
    """A harmless edit of config.json: one whitespace byte replaced by another (the content is unchanged)."""
    spaces = [i for i, byte in enumerate(data) if byte in b" \n"]
    edited = bytearray(data)
    edited[spaces[int(rng.integers(0, len(spaces)))]] = b" \t\n\r"[int(rng.integers(0, 4))]
    return bytes(edited)


def test_fuzzed_model_directories_raise_or_load_identical(saved):
    """>= 200 seeded truncations and byte flips of each file: never a silently different model.

    Harmless whitespace edits of config.json are mixed in, to check that those load (identical).
    """
    original = _fingerprint(DicePrior.load(saved, device="cpu"))
    files = _snapshot(saved)
    work = saved.parent / "fuzz"
    shutil.copytree(saved, work)
    rng = np.random.default_rng(20240607)
    counts = {"raised": 0, "identical": 0, "silent": 0}
    kinds = {}
    n_random, n_whitespace = 240, 30
    for trial in range(n_random + n_whitespace):
        if trial < n_random:
            name = sorted(files)[trial % len(files)]
            kind, damaged = _corrupt(files[name], rng)
        else:
            name, kind = "config.json", "whitespace"
            damaged = _reformat(files[name], rng)
        kinds[f"{name} {kind}"] = kinds.get(f"{name} {kind}", 0) + 1
        for other, data in files.items():
            (work / other).write_bytes(damaged if other == name else data)
        model = _try_load(work)  # any exception but DiceModelError fails the test
        if model is None:
            counts["raised"] += 1
        elif _fingerprint(model) == original:
            counts["identical"] += 1
        else:
            counts["silent"] += 1
    print(f"fuzz: {kinds}: {counts}")
    assert counts["silent"] == 0
    assert counts["raised"] + counts["identical"] == n_random + n_whitespace
    assert counts["raised"] >= n_random - 5 and counts["identical"] >= n_whitespace


def test_fuzzed_weights_behind_a_matching_checksum_raise_only_dice_model_errors(saved):
    """Even when the checksum is made to match, a damaged weights.pt never surfaces a raw torch error."""
    data = (saved / "weights.pt").read_bytes()
    rng = np.random.default_rng(7)
    outcomes = {"raised": 0, "loaded": 0}
    for _ in range(60):
        _, damaged = _corrupt(data, rng)
        (saved / "weights.pt").write_bytes(damaged)
        config = json.loads((saved / "config.json").read_text())
        config["weights"]["sha256"] = hashlib.sha256(damaged).hexdigest()
        config["config_sha256"] = _io.config_digest(config)
        (saved / "config.json").write_text(json.dumps(config))
        outcomes["raised" if _try_load(saved) is None else "loaded"] += 1
    print(f"resealed fuzz: {outcomes}")
    assert outcomes["raised"] > 0
