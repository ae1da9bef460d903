"""Registry of real single-cell datasets: metadata, checksummed local lookup and opt-in download.

A dataset file is looked for, in order, in

1. the package itself (entries with ``embedded: true``),
2. a local mirror directory: the ``data_dir`` argument, else the environment variable ``DICE_DATA_DIR``,
3. the download cache: the ``cache_dir`` argument, else ``DICE_CACHE_DIR``, else ``pooch.os_cache("dice")``,
4. the entry's ``url``, but only when ``download=True`` is passed explicitly.

Every file is sha256-checked against the registry before it is used.
"""

from __future__ import annotations

import copy
import difflib
import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pooch
import yaml

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData

__all__ = [
    "DatasetChecksumError",
    "DatasetNotFoundError",
    "cbmc",
    "fetch",
    "list_datasets",
    "load",
    "registry",
]

DATA_DIR_ENV = "DICE_DATA_DIR"
CACHE_DIR_ENV = "DICE_CACHE_DIR"
REGISTRY_FILENAME = "data_registry.yaml"
PACKAGE_DIR = Path(__file__).resolve().parent
EMBEDDED_DATA_DIR = PACKAGE_DIR / "data"

REQUIRED_FIELDS = (
    "title", "file", "available", "embedded", "sha256", "size_bytes", "shape", "x_units",
    "label_keys", "batch_keys", "technology_key", "citation", "license", "source", "url", "note",
)  # fmt: skip
X_UNITS = ("raw_counts", "log_normalised", "mixed")

# (resolved path, mtime_ns, size) -> sha256 of files hashed in this process
_verified_hashes: dict[tuple[str, int, int], str] = {}


class DatasetNotFoundError(FileNotFoundError):
    """No local copy of a dataset exists and downloading was not requested (or is impossible)."""


class DatasetChecksumError(OSError):
    """A local copy of a dataset does not match the sha256 recorded in the registry."""


def registry_path() -> Path:
    """Path of the registry yaml in use.

    Returns
    -------
    The top-level ``data_registry.yaml`` when running from a source checkout (``src`` layout with a
    ``pyproject.toml`` next to it), else the copy shipped inside the package.
    """
    src_dir = PACKAGE_DIR.parents[1]
    checkout_root = src_dir.parent
    top_level = checkout_root / REGISTRY_FILENAME
    if src_dir.name == "src" and (checkout_root / "pyproject.toml").is_file() and top_level.is_file():
        return top_level
    return PACKAGE_DIR / REGISTRY_FILENAME


@lru_cache(maxsize=4)
def _parse_registry(path: Path) -> dict[str, dict[str, Any]]:
    content = yaml.safe_load(path.read_text(encoding="utf-8"))
    return content["datasets"]


def registry() -> dict[str, dict[str, Any]]:
    """All registry entries, parsed from ``data_registry.yaml``.

    Returns
    -------
    Mapping dataset name -> entry (a fresh copy: mutating it does not affect the registry).
    """
    return copy.deepcopy(_parse_registry(registry_path()))


def list_datasets() -> pd.DataFrame:
    """Overview table of the registry, one row per dataset.

    Returns
    -------
    DataFrame indexed by dataset name with columns ``title``, ``available``, ``embedded``, ``n_obs``,
    ``n_vars``, ``x_units``, ``label_keys``, ``batch_keys``, ``size_mb``, ``file``, ``url``, ``license``.
    """
    import pandas as pd

    rows = {}
    for name, entry in registry().items():
        n_obs, n_vars = entry["shape"] or (None, None)
        size = entry["size_bytes"]
        rows[name] = {
            **{key: entry[key] for key in ("title", "available", "embedded")},
            "n_obs": n_obs,
            "n_vars": n_vars,
            "x_units": entry["x_units"],
            "label_keys": ", ".join(entry["label_keys"] or []),
            "batch_keys": ", ".join(entry["batch_keys"] or []),
            "size_mb": None if size is None else round(size / 1e6, 2),
            **{key: entry[key] for key in ("file", "url", "license")},
        }
    table = pd.DataFrame.from_dict(rows, orient="index").astype({"n_obs": "Int64", "n_vars": "Int64"})
    table.index.name = "name"
    return table


def _entry(name: str) -> dict[str, Any]:
    entries = registry()
    if name not in entries:
        close = difflib.get_close_matches(name, entries, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise KeyError(f"Unknown dataset {name!r}.{hint} Known datasets: {', '.join(sorted(entries))}.")
    return entries[name]


def _resolve_dir(given: str | os.PathLike | None, env_var: str) -> Path | None:
    chosen = given if given is not None else os.environ.get(env_var) or None
    return None if chosen is None else Path(chosen).expanduser()


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, remembered per (path, mtime, size) so that repeated checks are cheap.

    Parameters
    ----------
    path
        File to hash.

    Returns
    -------
    Hex digest.
    """
    resolved = Path(path).resolve()
    stat = resolved.stat()
    key = (str(resolved), stat.st_mtime_ns, stat.st_size)
    if key not in _verified_hashes:
        _verified_hashes[key] = pooch.file_hash(str(resolved), alg="sha256")
    return _verified_hashes[key]


def _verify(name: str, entry: dict[str, Any], path: Path, advice: str) -> Path:
    actual = file_sha256(path)
    if actual != entry["sha256"]:
        size = path.stat().st_size
        raise DatasetChecksumError(
            f"Dataset {name!r}: the file {path} is corrupted or incomplete "
            f"(sha256 {actual}, expected {entry['sha256']}; {size} bytes, expected {entry['size_bytes']}). "
            f"It was not used. {advice}"
        )
    return path


def fetch(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = False,
) -> Path:
    """Locate (and, only if asked, download) a dataset file and verify its sha256.

    Parameters
    ----------
    name
        Registry name, see :func:`list_datasets`.
    data_dir
        Local mirror holding the registry's relative paths; default: env ``DICE_DATA_DIR``.
    cache_dir
        Download cache; default: env ``DICE_CACHE_DIR``, else ``pooch.os_cache("dice")``.
    download
        Download from the entry's ``url`` when no local copy exists. Never done implicitly.

    Returns
    -------
    Path of a verified local copy.

    Raises
    ------
    DatasetNotFoundError
        No local copy, and ``download`` is False or the entry cannot be downloaded.
    DatasetChecksumError
        A local copy exists but its sha256 differs from the registry.
    """
    entry = _entry(name)
    if not entry["available"] or entry["sha256"] is None:
        raise DatasetNotFoundError(
            f"Dataset {name!r} is listed for reference only (not redistributed, no checksum recorded), "
            f"so dice cannot load it. Published at: {entry['url']}. Source: {entry['source']}. "
            f"{entry['note']}"
        )
    relative = Path(entry["file"])
    looked_in: list[str] = []
    if entry["embedded"]:
        embedded_path = EMBEDDED_DATA_DIR / relative
        looked_in.append(f"{embedded_path} (inside the package)")
        if embedded_path.is_file():
            return _verify(name, entry, embedded_path, "Reinstall dice to restore the packaged file.")

    mirror = _resolve_dir(data_dir, DATA_DIR_ENV)
    if mirror is None:
        looked_in.append(f"no local mirror (neither data_dir nor ${DATA_DIR_ENV} is set)")
    else:
        mirror_path = mirror / relative
        looked_in.append(f"{mirror_path} (local mirror)")
        if mirror_path.is_file():
            advice = f"Replace it with an intact copy, or remove it and unset ${DATA_DIR_ENV}."
            return _verify(name, entry, mirror_path, advice)

    cache = _resolve_dir(cache_dir, CACHE_DIR_ENV) or Path(pooch.os_cache("dice"))
    cache_path = cache / relative
    looked_in.append(f"{cache_path} (download cache)")
    if cache_path.is_file() and not (download and entry["url"]):
        advice = f"Delete it and call fetch/load({name!r}, download=True) to download it again."
        return _verify(name, entry, cache_path, advice)

    if download and entry["url"]:
        # pooch re-downloads a cached file whose hash does not match, and raises if the download
        # itself does not match the recorded sha256.
        fetched = pooch.retrieve(
            entry["url"],
            known_hash=f"sha256:{entry['sha256']}",
            fname=cache_path.name,
            path=cache_path.parent,
            progressbar=False,
        )
        return _verify(name, entry, Path(fetched), "Delete it and try the download again.")

    places = "\n  - ".join(looked_in)
    if entry["url"]:
        size = "size unknown" if entry["size_bytes"] is None else f"size {entry['size_bytes'] / 1e6:.1f} MB"
        how = f"Or pass download=True to download it from {entry['url']} ({size})."
    else:
        how = f"There is no public direct download (download=True cannot help): {entry['note']}"
    raise DatasetNotFoundError(
        f"Dataset {name!r} ({entry['file']}) was not found. Looked in:\n  - {places}\n"
        f"Set the environment variable {DATA_DIR_ENV} (or pass data_dir=) to a folder that contains "
        f"{entry['file']}. {how}"
    )


def load(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = False,
) -> AnnData:
    """Load a registry dataset as AnnData after checking its sha256.

    Parameters
    ----------
    name
        Registry name, see :func:`list_datasets`.
    data_dir, cache_dir, download
        Where to look and whether to download; see :func:`fetch`.

    Returns
    -------
    The dataset; units of ``X`` and the label/batch columns are in :func:`registry` ``[name]``.
    """
    import anndata

    return anndata.read_h5ad(fetch(name, data_dir=data_dir, cache_dir=cache_dir, download=download))


def cbmc(**kwargs: Any) -> AnnData:
    """CITE-seq CBMC demo dataset shipped inside the package (8,617 cells x 500 genes).

    Parameters
    ----------
    **kwargs
        Passed to :func:`load`.

    Returns
    -------
    AnnData with raw UMI counts in ``X`` and 13 cell-type labels in ``obs["label"]``.
    """
    return load("cbmc_embedded", **kwargs)
