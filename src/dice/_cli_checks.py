"""The command line's checks: option types, and the input and output paths refused before any work.

Every check raises :class:`CliError` (exit code 2, one line) saying what is wrong and how to fix it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

__all__ = [
    "CliError",
    "Parser",
    "check_device",
    "check_h5ad_input",
    "check_model_dir",
    "check_output",
    "non_empty",
    "non_negative_int",
    "positive_int",
    "read_h5ad",
    "write_h5ad_atomically",
]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
HDF5_SIGNATURE_OFFSETS = (0, 512, 1024, 2048)  # a user block shifts the signature to a power of two >= 512


class CliError(Exception):
    """A user error found by the command line itself (a path, an option); exit code 2, one line."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are raised (one line, exit 2) instead of printing the usage text."""

    def error(self, message: str):
        raise CliError(f"{message} (see `{self.prog} --help`)")


# ---------------------------------------------------------------------------------------------- option types


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def positive_int(text: str) -> int:
    """An ``argparse`` type: an integer >= 1."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An ``argparse`` type: an integer >= 0 (seeds)."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return value


def non_empty(text: str) -> str:
    """A non-empty key (layer, obs column)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


# ------------------------------------------------------------------------------------------------ path checks


def _same_path(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return a.samefile(b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_h5ad_input(path: str, option: str) -> Path:
    """An existing, readable ``.h5ad`` (HDF5) file, or a :class:`CliError` that says what is wrong."""
    file = Path(path)
    if file.suffix.lower() != ".h5ad":
        raise CliError(
            f"{option} {path!r} is not an .h5ad file; dice reads AnnData .h5ad files (convert other formats "
            "first, e.g. `scanpy.read_10x_mtx(...).write_h5ad('data.h5ad')`)."
        )
    if not file.exists():
        raise CliError(f"{option} {path!r} does not exist.")
    if file.is_dir():
        raise CliError(f"{option} {path!r} is a directory, not an .h5ad file.")
    try:
        with file.open("rb") as handle:
            head = handle.read(max(HDF5_SIGNATURE_OFFSETS) + len(HDF5_SIGNATURE))
    except OSError as error:
        raise CliError(f"{option} {path!r} cannot be read ({error.strerror or error}).") from None
    if not any(head[o : o + len(HDF5_SIGNATURE)] == HDF5_SIGNATURE for o in HDF5_SIGNATURE_OFFSETS):
        raise CliError(
            f"{option} {path!r} is not an HDF5 file (empty, truncated or another format under an .h5ad name); "
            "write it again with `adata.write_h5ad(...)`."
        )
    return file


def check_output(path: str, *, kind: str, overwrite: bool, inputs: dict[str, Path]) -> Path:
    """Refuse, before any work, an output that cannot or must not be written.

    Parameters
    ----------
    path
        The ``--out`` value.
    kind
        ``"h5ad"`` (a file, must end in ``.h5ad``), ``"model"`` (a model folder) or ``"folder"`` (created).
    overwrite
        Whether an existing output may be replaced.
    inputs
        The command's input paths by option name; the output must be none of them.
    """
    out = Path(path)
    if not str(path).strip():
        raise CliError("--out must not be empty.")
    for option, source in inputs.items():
        if _same_path(out, source):
            raise CliError(f"--out {path!r} is the same as the input {option}; write the output elsewhere.")
    if kind != "folder" and not out.parent.is_dir():
        raise CliError(f"--out {path!r}: the folder {str(out.parent)!r} does not exist; create it first.")
    if kind == "h5ad":
        if out.suffix.lower() != ".h5ad":
            raise CliError(f"--out {path!r} must end in .h5ad.")
        if out.is_dir():
            raise CliError(f"--out {path!r} is a directory; give a file name ending in .h5ad.")
        if out.exists() and not overwrite:
            raise CliError(f"--out {path!r} exists; pass --overwrite to replace it.")
    elif kind == "model":
        if out.exists() and not out.is_dir():
            raise CliError(f"--out {path!r} exists and is not a folder; a model is written to a folder.")
        if out.is_dir() and any(out.iterdir()):
            from .models._io import CONFIG_FILE, WEIGHTS_FILE

            foreign = sorted(p.name for p in out.iterdir() if p.name not in (CONFIG_FILE, WEIGHTS_FILE))
            if foreign:
                raise CliError(
                    f"--out {path!r} holds files that are not part of a dice model ({foreign[:3]}); "
                    "choose another folder (--overwrite never deletes them)."
                )
            if not overwrite:
                raise CliError(f"--out {path!r} already holds a model; pass --overwrite to replace it.")
    elif out.exists() and not out.is_dir():
        raise CliError(f"--out {path!r} exists and is not a folder.")
    return out


def check_model_dir(path: str) -> Path:
    """A ``--model`` folder that exists (its contents are checked by :meth:`dice.models.DicePrior.load`)."""
    model = Path(path)
    if not model.exists():
        raise CliError(f"--model {path!r} does not exist; pass the folder written by `dice train --out`.")
    if not model.is_dir():
        raise CliError(f"--model {path!r} is not a folder; pass the folder written by `dice train --out`.")
    return model


def check_device(device: str) -> None:
    """Refuse an unknown or unavailable ``--device`` before any work."""
    from .models._prior import resolve_device

    resolve_device(device)


def read_h5ad(file: Path, option: str):
    """Read an ``.h5ad`` file; a file that anndata cannot read is a :class:`CliError` naming it."""
    import anndata as ad

    try:
        return ad.read_h5ad(file)
    except Exception as error:  # h5py and anndata raise many types for a damaged file
        raise CliError(
            f"{option} {str(file)!r} could not be read as AnnData ({type(error).__name__}: {error}); "
            "the file is damaged or not an AnnData file."
        ) from error


def write_h5ad_atomically(adata, out: Path) -> None:
    """Write ``adata`` beside ``out`` and rename it into place: ``out`` is complete or untouched."""
    handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.tmp-", suffix=".h5ad", dir=out.parent)
    os.close(handle)
    try:
        adata.write_h5ad(temporary)
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
