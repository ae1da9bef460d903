"""Offline tests of the dataset registry: metadata, checksums, lookup order, and no surprise downloads."""

from __future__ import annotations

import shutil
from pathlib import Path

import anndata
import pooch
import pytest

from dice.datasets import _registry
from dice.datasets._registry import (
    CACHE_DIR_ENV,
    DATA_DIR_ENV,
    REQUIRED_FIELDS,
    X_UNITS,
    DatasetChecksumError,
    DatasetNotFoundError,
    cbmc,
    fetch,
    list_datasets,
    load,
    registry,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
TOP_LEVEL_REGISTRY = REPO_ROOT / "data_registry.yaml"
PACKAGE_REGISTRY = REPO_ROOT / "src" / "dice" / "datasets" / "data_registry.yaml"
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()
SMALL_DATASET = "pancreas_wang_lognorm"  # 0.25 MB
PAPER_DATASETS = ("hao2021_pbmc_citeseq", "nowakowski2017_cortex", "polioudakis2019_neocortex")

ENTRIES = registry()
MIRRORED = [name for name, entry in ENTRIES.items() if entry["available"] and not entry["embedded"]]
needs_shared_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} is absent")


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch, tmp_path):
    """No mirror from the environment, an empty cache, and a network that must not be touched."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "empty_cache"))

    def refuse_download(*args, **kwargs):
        pytest.fail(f"pooch.retrieve was called: {args}")

    monkeypatch.setattr(pooch, "retrieve", refuse_download)


def test_package_copy_is_identical_to_top_level_registry():
    assert PACKAGE_REGISTRY.read_bytes() == TOP_LEVEL_REGISTRY.read_bytes(), (
        "run: cp data_registry.yaml src/dice/datasets/data_registry.yaml"
    )


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_entry_has_required_fields(name):
    entry = ENTRIES[name]
    missing = [field for field in REQUIRED_FIELDS if field not in entry]
    assert not missing, f"{name} lacks {missing}"
    assert entry["x_units"] in X_UNITS
    assert isinstance(entry["citation"], str) and entry["citation"]
    assert isinstance(entry["license"], str) and entry["license"]
    if entry["available"]:
        assert len(entry["sha256"]) == 64 and int(entry["sha256"], 16) >= 0
        assert isinstance(entry["size_bytes"], int) and entry["size_bytes"] > 0
        assert [type(n) for n in entry["shape"]] == [int, int]
        assert entry["label_keys"], f"{name} has no label key"
        assert isinstance(entry["batch_keys"], list)
        assert entry["url"] is not None or entry["note"], f"{name}: url is null and no note says why"
    else:
        assert entry["sha256"] is None and entry["url"], f"{name}: metadata-only entries need a url"


def test_registry_covers_paper_and_embedded_datasets():
    for name in PAPER_DATASETS:
        assert ENTRIES[name]["available"] is False
    embedded = ENTRIES["cbmc_embedded"]
    assert embedded["embedded"] is True
    assert embedded["sha256"] == "0f5851a39f441083a96915e63f4614c2e7e03b416b56eb3f544224721029ef5c"
    assert embedded["sha256"] == ENTRIES["cbmc_citeseq"]["sha256"]


def test_registry_returns_a_copy():
    registry()["pbmc3k"]["sha256"] = "tampered"
    assert registry()["pbmc3k"]["sha256"] != "tampered"


def test_list_datasets_table():
    table = list_datasets()
    assert list(table.index) == list(ENTRIES)
    assert table.loc["cbmc_embedded", "n_obs"] == 8617
    assert {"available", "x_units", "label_keys", "url"} <= set(table.columns)


def test_unknown_name_suggests_close_match():
    with pytest.raises(KeyError, match="pbmc3k"):
        fetch("pbmc3")


def test_embedded_cbmc_loads_without_configuration():
    adata = cbmc()
    assert adata.shape == (8617, 500)
    assert adata.obs["label"].nunique() == 13
    assert float(adata.X.max()) > 1 and float((adata.X.data % 1).max()) == 0  # raw integer counts


@needs_shared_data
@pytest.mark.parametrize("name", MIRRORED)
def test_shared_data_file_matches_registry(name):
    entry = ENTRIES[name]
    path = SHARED_DATA / entry["file"]
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    assert path.stat().st_size == entry["size_bytes"]
    assert fetch(name, data_dir=SHARED_DATA) == path  # sha256-checked


@needs_shared_data
@pytest.mark.filterwarnings("ignore:Variable names are not unique")
@pytest.mark.parametrize("name", ["pancreas_wang_lognorm", "cellbench_3cl_10x", "pancreas_3batch"])
def test_small_shared_data_shape_and_keys(name):
    entry = ENTRIES[name]
    adata = anndata.read_h5ad(SHARED_DATA / entry["file"], backed="r")
    assert list(adata.shape) == entry["shape"]
    assert set(entry["label_keys"] + entry["batch_keys"]) <= set(adata.obs.columns)


@needs_shared_data
def test_data_dir_environment_variable_is_honoured(monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(SHARED_DATA))
    adata = load(SMALL_DATASET)
    assert list(adata.shape) == ENTRIES[SMALL_DATASET]["shape"]


@needs_shared_data
def test_data_dir_argument_overrides_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "nowhere"))
    assert fetch(SMALL_DATASET, data_dir=SHARED_DATA).is_file()


def _copy_to_mirror(name: str, mirror: Path) -> Path:
    relative = ENTRIES[name]["file"]
    target = mirror / relative
    target.parent.mkdir(parents=True)
    shutil.copyfile(SHARED_DATA / relative, target)
    return target


@needs_shared_data
@pytest.mark.parametrize("damage", ["truncate", "flip_byte"])
def test_corrupted_copy_is_rejected(tmp_path, damage):
    copy = _copy_to_mirror(SMALL_DATASET, tmp_path)
    content = bytearray(copy.read_bytes())
    if damage == "truncate":
        content = content[: len(content) // 2]
    else:
        content[len(content) // 2] ^= 0xFF
    copy.write_bytes(bytes(content))
    with pytest.raises(DatasetChecksumError) as error:
        load(SMALL_DATASET, data_dir=tmp_path)
    message = str(error.value)
    assert str(copy) in message and ENTRIES[SMALL_DATASET]["sha256"] in message
    assert "not used" in message


@needs_shared_data
def test_file_replaced_after_verification_is_rechecked(tmp_path):
    copy = _copy_to_mirror(SMALL_DATASET, tmp_path)
    fetch(SMALL_DATASET, data_dir=tmp_path)
    copy.write_bytes(copy.read_bytes()[:-10])  # changes size and mtime
    with pytest.raises(DatasetChecksumError):
        fetch(SMALL_DATASET, data_dir=tmp_path)


@needs_shared_data
def test_verified_cache_copy_is_used(monkeypatch, tmp_path):
    _copy_to_mirror(SMALL_DATASET, tmp_path / "cache")
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    assert fetch(SMALL_DATASET).is_relative_to(tmp_path / "cache")


def test_missing_file_raises_helpful_error_without_network(tmp_path):
    with pytest.raises(DatasetNotFoundError) as error:
        load("pbmc3k", data_dir=tmp_path)
    message = str(error.value)
    assert str(tmp_path / "pbmc3k" / "pbmc3k_raw_seurat_labels.h5ad") in message
    assert DATA_DIR_ENV in message


def test_missing_downloadable_file_mentions_url_and_size(monkeypatch, tmp_path):
    entries = registry()
    entries["pbmc3k"]["url"] = "https://example.org/pbmc3k.h5ad"
    monkeypatch.setattr(_registry, "registry", lambda: entries)
    with pytest.raises(DatasetNotFoundError, match=r"download=True .*example\.org/pbmc3k\.h5ad.*8\.8 MB"):
        fetch("pbmc3k", data_dir=tmp_path)


def test_download_true_uses_pooch_with_recorded_hash(monkeypatch, tmp_path):
    entries = registry()
    entries["cbmc_citeseq"]["url"] = "https://example.org/cbmc.h5ad"
    monkeypatch.setattr(_registry, "registry", lambda: entries)
    calls = []

    def fake_retrieve(url, known_hash, fname, path, progressbar):
        calls.append((url, known_hash))
        target = Path(path) / fname
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_registry.EMBEDDED_DATA_DIR / ENTRIES["cbmc_embedded"]["file"], target)
        return str(target)

    monkeypatch.setattr(pooch, "retrieve", fake_retrieve)
    path = fetch("cbmc_citeseq", cache_dir=tmp_path, download=True)
    assert path == tmp_path / "scgenefit" / "cbmc_citeseq_500genes.h5ad"
    assert calls == [("https://example.org/cbmc.h5ad", f"sha256:{ENTRIES['cbmc_citeseq']['sha256']}")]


@pytest.mark.parametrize("name", PAPER_DATASETS)
def test_metadata_only_entries_are_never_downloaded(name, tmp_path):
    with pytest.raises(DatasetNotFoundError, match="reference only"):
        load(name, data_dir=tmp_path, download=True)
