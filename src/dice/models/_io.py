"""The on-disk model directory: ``config.json`` plus tensor-only ``weights.pt``, written atomically, read strictly.

Writing never leaves a half-written model: both files go into a temporary directory beside the target, are
flushed to disk, and the directory is renamed into place (an existing model is moved aside first and deleted
only once the new one is in place). The config records the format version, the sha256 of ``weights.pt``, the
name, shape and dtype of every tensor and a checksum of its own content, so that reading either returns
exactly what was written or raises :class:`~dice._validation.DiceModelError` with a message that names the
file and the fix.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from .._validation import DiceModelError

__all__ = [
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "REQUIRED_KEYS",
    "WEIGHTS_FILE",
    "config_digest",
    "read_model_dir",
    "write_model_dir",
]

#: Version 2: atomic directory writes, weights checksum, tensor manifest and config checksum.
FORMAT_VERSION = 2
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"
#: Keys that :func:`write_model_dir` adds to the config (the caller may not use them).
IO_KEYS = ("format_version", "weights", "config_sha256")
_NUMBER = (int, float)
#: Keys a dice model's config must hold, with their allowed JSON types (``bool`` never counts as a number).
REQUIRED_KEYS: dict[str, tuple[type, ...]] = {
    "dice_version": (str,),
    "genes": (list,),
    "n_comps": (int,),
    "max_value": (int, float, type(None)),
    "noise_var": _NUMBER,
    "latent_scale": _NUMBER,
    "network": (dict,),
    "schedule": (dict,),
    "training": (dict,),
    "seed": (int,),
    "history": (dict,),
}
_RESAVE = "Re-save the model from the session that trained it, or re-train it with `dice.tl.train_prior`."


# ---------------------------------------------------------------------------------------------- helpers
def config_digest(config: Mapping) -> str:
    """sha256 of the config's content (every key except ``config_sha256``), independent of its formatting."""
    content = {k: v for k, v in config.items() if k != "config_sha256"}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"config value {value!r} of type {type(value).__name__} cannot be written to JSON")


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _is_float(tensor: torch.Tensor) -> bool:
    return tensor.is_floating_point() or tensor.is_complex()


def _non_finite(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    return [name for name, t in tensors.items() if _is_float(t) and not bool(torch.isfinite(t).all())]


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    """Make a rename durable (POSIX only; elsewhere directories cannot be opened and this is a no-op)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


# ---------------------------------------------------------------------------------------------- writing
def write_model_dir(directory: str | Path, config: dict, tensors: dict[str, torch.Tensor], *, overwrite: bool) -> Path:
    """Write ``config`` and ``tensors`` to ``directory`` atomically.

    Parameters
    ----------
    directory
        The model directory. Its parent is created when missing.
    config
        JSON-serialisable settings (numpy scalars and arrays are converted). Must not use the keys
        ``format_version``, ``weights`` or ``config_sha256``: they are added here.
    tensors
        Every tensor of the model, by name; moved to the CPU. Floating tensors must be finite.
    overwrite
        Replace an existing model directory. Without it a non-empty ``directory`` is refused. A directory
        holding files other than a model's is never replaced (nothing that is not a model is deleted).

    Returns
    -------
    The directory written.

    Raises
    ------
    FileExistsError
        ``directory`` exists and cannot be replaced (see ``overwrite``).
    DiceModelError
        A tensor holds NaN or infinite values (nothing is written).
    """
    directory = Path(directory)
    clash = [k for k in IO_KEYS if k in config]
    if clash:
        raise ValueError(f"config keys {clash} are reserved for the model file format")
    bad_names = [n for n, t in tensors.items() if not isinstance(n, str) or not isinstance(t, torch.Tensor)]
    if bad_names:
        raise TypeError(f"tensors must map names (str) to torch.Tensor; bad entries: {bad_names}")
    tensors = {name: t.detach().to("cpu", copy=True).contiguous() for name, t in tensors.items()}
    bad = _non_finite(tensors)
    if bad:
        raise DiceModelError(
            f"Refusing to save to {directory}: the model holds NaN or infinite values in {bad}, so every output "
            "would be NaN. Training diverged: re-train with a smaller learning rate (TrainSettings(lr=...))."
        )
    if directory.exists() or directory.is_symlink():
        if not directory.is_dir():
            raise FileExistsError(f"{directory} exists and is not a directory; choose another path.")
        contents = sorted(p.name for p in directory.iterdir())
        if contents and not overwrite:
            raise FileExistsError(f"{directory} exists and is not empty; pass overwrite=True to replace it.")
        foreign = [name for name in contents if name not in (CONFIG_FILE, WEIGHTS_FILE)]
        if foreign:
            raise FileExistsError(
                f"{directory} holds files that are not part of a dice model ({foreign[:5]}); refusing to replace "
                "it with overwrite=True, which would delete them. Save to another directory."
            )
    parent = directory.parent
    parent.mkdir(parents=True, exist_ok=True)

    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=parent))
    try:
        weights_path = staging / WEIGHTS_FILE
        torch.save(tensors, weights_path)
        _fsync_file(weights_path)
        full = dict(config)
        full["format_version"] = FORMAT_VERSION
        full["weights"] = {
            "file": WEIGHTS_FILE,
            "sha256": hashlib.sha256(weights_path.read_bytes()).hexdigest(),
            "tensors": {name: {"shape": list(t.shape), "dtype": _dtype_name(t.dtype)} for name, t in tensors.items()},
        }
        # serialise once and checksum what will be read back (numpy values become plain JSON here)
        full = json.loads(json.dumps(full, default=_json_default, allow_nan=True))
        full["config_sha256"] = config_digest(full)
        _write_bytes(staging / CONFIG_FILE, (json.dumps(full, indent=1, allow_nan=True) + "\n").encode("utf-8"))
        _fsync_dir(staging)
        _swap_into_place(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def _swap_into_place(staging: Path, directory: Path) -> None:
    """Rename ``staging`` to ``directory``; an existing ``directory`` is moved aside, restored on failure."""
    parent = directory.parent
    if not (directory.exists() or directory.is_symlink()):
        os.rename(staging, directory)
        _fsync_dir(parent)
        return
    old = parent / f".{directory.name}.old-{uuid.uuid4().hex[:12]}"
    os.rename(directory, old)
    try:
        os.rename(staging, directory)
    except BaseException:
        os.rename(old, directory)
        raise
    _fsync_dir(parent)
    if old.is_symlink() or not old.is_dir():
        old.unlink()
    else:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- reading
def _fail(path: Path, problem: str, fix: str = _RESAVE) -> DiceModelError:
    return DiceModelError(f"{path}: {problem} {fix}")


def _type_names(types: tuple[type, ...]) -> str:
    names = {int: "integer", float: "number", str: "string", list: "list", dict: "object", type(None): "null"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def _check_type(value, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


def _leftovers(directory: Path) -> str:
    """A hint when an interrupted save left the previous model (or a partial new one) beside ``directory``."""
    parent = directory.parent
    if not parent.is_dir():
        return ""
    old = sorted(parent.glob(f".{directory.name}.old-*"))
    if old:
        return (
            f" A save into it was interrupted; the previous model is in {old[0]}: rename that directory to "
            f"{directory.name} to use it."
        )
    return ""


def _read_config(directory: Path, required: Mapping[str, tuple[type, ...]]) -> dict:
    config_path = directory / CONFIG_FILE
    try:
        text = config_path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise _fail(config_path, f"is not UTF-8 text ({error}); the file is corrupted.") from None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise _fail(
            config_path,
            f"is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}); the file is corrupted, "
            "truncated or was edited by hand.",
        ) from None
    if not isinstance(config, dict):
        raise _fail(config_path, f"holds a JSON {type(config).__name__}, not an object: it is not a dice model config.")

    version = config.get("format_version", "<missing>")
    wrote = config.get("dice_version", "?")
    if isinstance(version, bool) or not isinstance(version, int):
        raise _fail(
            config_path,
            f"format_version must be an integer, found {version!r} ({type(version).__name__}); the file is corrupted "
            "or was edited by hand.",
        )
    if version != FORMAT_VERSION:
        if version < FORMAT_VERSION:
            fix = (
                f"Re-train the prior with `dice.tl.train_prior` and save it with this dice, or install dice {wrote} "
                "to keep using this file (version 1 directories carry no checksums, so a half-written or mixed "
                "one cannot be told apart from a good one)."
            )
        else:
            fix = f"It was written by a newer dice ({wrote}): upgrade dice to load it."
        raise _fail(
            config_path,
            f"was saved in model format version {version} (by dice {wrote}); this dice reads format version "
            f"{FORMAT_VERSION}.",
            fix,
        )

    needed = {"weights": (dict,), "config_sha256": (str,), **required}
    missing = [k for k in needed if k not in config]
    if missing:
        raise _fail(config_path, f"lacks the required keys {missing}; the file is corrupted or was edited by hand.")
    for key, types in needed.items():
        value = config[key]
        if not _check_type(value, types):
            raise _fail(
                config_path,
                f"{key!r} must be a {_type_names(types)}, found {value!r:.80} ({type(value).__name__}); the file is "
                "corrupted or was edited by hand.",
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise _fail(config_path, f"{key!r} is {value}, not a finite number; the file is corrupted.")
    if "genes" in required and not all(isinstance(g, str) for g in config["genes"]):
        raise _fail(config_path, "'genes' must be a list of strings; the file is corrupted or was edited by hand.")
    weights = config["weights"]
    manifest = weights.get("tensors")
    if (
        weights.get("file") != WEIGHTS_FILE
        or not isinstance(weights.get("sha256"), str)
        or not isinstance(manifest, dict)
        or not all(
            isinstance(spec, dict)
            and isinstance(spec.get("dtype"), str)
            and isinstance(spec.get("shape"), list)
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in spec["shape"])
            for spec in manifest.values()
        )
    ):
        raise _fail(config_path, "its 'weights' entry (checksum and tensor list) is malformed; the file is corrupted.")
    if config["config_sha256"] != config_digest(config):
        raise _fail(
            config_path,
            "its content does not match the checksum recorded when it was saved: the file was damaged or edited "
            "by hand after saving (settings cannot be changed in a saved model).",
        )
    return config


def read_model_dir(
    directory: str | Path, *, required: Mapping[str, tuple[type, ...]] = REQUIRED_KEYS
) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read a directory written by :func:`write_model_dir`, checking everything before returning.

    Checks, in order: the directory and both files exist; ``config.json`` is UTF-8 JSON holding an object;
    ``format_version`` is an integer equal to :data:`FORMAT_VERSION`; the ``required`` keys are present with the
    right types; the config matches its own checksum; ``weights.pt`` matches the sha256 recorded in the config;
    it loads with ``torch.load(weights_only=True)``; its tensors have the recorded names, shapes and dtypes; all
    floating tensors are finite.

    Parameters
    ----------
    directory
        The model directory.
    required
        Config keys that must be present, with their allowed types (default: a dice model's, :data:`REQUIRED_KEYS`).

    Returns
    -------
    The config (as written, including the keys added by :func:`write_model_dir`) and the tensors, on the CPU.

    Raises
    ------
    DiceModelError
        On the first failed check; the message names the file and says how to fix it.
    """
    directory = Path(directory)
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise DiceModelError(
            f"{directory} {what}, so it is not a dice model directory (expected {CONFIG_FILE} and {WEIGHTS_FILE})."
            f"{_leftovers(directory)}"
        )
    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (directory / name).is_file()]
    if missing:
        raise DiceModelError(
            f"{directory} is not a dice model directory: {missing} missing (expected {CONFIG_FILE} and "
            f"{WEIGHTS_FILE}, written by `DicePrior.save`).{_leftovers(directory)}"
        )
    config = _read_config(directory, required)

    weights_path = directory / WEIGHTS_FILE
    data = weights_path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != config["weights"]["sha256"]:
        raise _fail(
            weights_path,
            f"does not belong to {CONFIG_FILE} (its sha256 {digest[:12]}... differs from the recorded "
            f"{config['weights']['sha256'][:12]}...): the file is damaged or truncated, or the directory mixes "
            "files of two models (e.g. an interrupted copy).",
        )
    try:
        tensors = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types, and its message advises an unsafe unpickling
        raise _fail(
            weights_path,
            f"is not a dice model weights file, or is corrupted: it cannot be read as plain tensors "
            f"({type(error).__name__}). dice model files hold tensors only and dice never unpickles other objects.",
        ) from None
    if not isinstance(tensors, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in tensors.items()
    ):
        raise _fail(weights_path, "does not hold a dictionary of named tensors: it is not a dice model weights file.")

    manifest = config["weights"]["tensors"]
    if set(tensors) != set(manifest):
        extra, absent = sorted(set(tensors) - set(manifest)), sorted(set(manifest) - set(tensors))
        raise _fail(
            weights_path,
            f"holds other tensors than {CONFIG_FILE} lists (unexpected {extra[:5]}, missing {absent[:5]}).",
        )
    for name, spec in manifest.items():
        tensor = tensors[name]
        if list(tensor.shape) != spec["shape"] or _dtype_name(tensor.dtype) != spec["dtype"]:
            raise _fail(
                weights_path,
                f"tensor {name!r} is {_dtype_name(tensor.dtype)} {list(tensor.shape)}, but {CONFIG_FILE} records "
                f"{spec['dtype']} {spec['shape']}.",
            )
    bad = _non_finite(tensors)
    if bad:
        raise _fail(
            weights_path,
            f"holds NaN or infinite values in {bad[:5]}: every output would be NaN (training diverged).",
            "Re-train the prior (e.g. with a smaller learning rate) and save it again.",
        )
    return config, tensors
