"""The bad inputs dice is tested with: what a careless or unlucky user passes, and what dice must say.

One list, :data:`CASES`, serves two readers: ``tests/test_bad_inputs.py`` runs every case and asserts that it
raises the dice error with the expected message fragment and leaves its AnnData unchanged, and
``docs/make_bad_inputs.py`` runs them again to write the table ``docs/bad_inputs.md`` (input -> the message
dice prints). Nothing here imports pytest.

A case builds its input from a :class:`Context` (a tiny synthetic reference and query, a tiny trained
model, a scratch folder for model directories) and makes one call.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from anndata import AnnData

import dice
from dice._validation import DiceInputError, DiceModelError
from helpers import make_clusters

__all__ = ["CASES", "Case", "Context", "run_case"]

TINY_TRAINING = dict(hidden_dim=16, n_blocks=1, n_timesteps=50, n_updates=30, batch_size=64)
N_GENES = 60


class Context:
    """The inputs the cases are made from: built once, copied by every case that changes them.

    Parameters
    ----------
    directory
        A scratch folder (model directories are saved and damaged there).
    model
        A trained :class:`dice.models.DicePrior` on :meth:`reference` (default: a tiny one trained here).
    """

    def __init__(self, directory: str | Path, *, model: dice.models.DicePrior | None = None):
        import torch

        torch.set_num_threads(1)
        self.directory = Path(directory)
        self._reference = make_clusters(300, n_genes=N_GENES, seed=1)
        self.model = model or dice.tl.train_prior(
            self._reference,
            n_comps=4,
            settings=dice.tl.TrainSettings(**TINY_TRAINING),
            seed=0,
            progress=False,
        )
        self._count = 0

    def reference(self) -> AnnData:
        """300 cells x 60 genes in two clusters, log-normalised-like values (a fresh copy)."""
        return self._reference.copy()

    def query(self, n_cells: int = 60) -> AnnData:
        """Query cells from the same model as :meth:`reference`."""
        return make_clusters(n_cells, n_genes=N_GENES, seed=2)

    def sparse_query(self) -> AnnData:
        """A query with about a third of its values 0, as log-normalised data have."""
        adata = self.query()
        adata.X = np.where(adata.X < 24.0, 0.0, adata.X).astype(np.float32)
        return adata

    def denoised(self) -> AnnData:
        """A query denoised with its posterior samples kept and clustered (``obs["leiden"]``)."""
        adata = self.query()
        settings = dice.tl.PosteriorSettings(n_samples=4)
        dice.tl.denoise(adata, self.model, settings=settings, store_samples=True, progress=False)
        adata.obs["leiden"] = adata.obs["label"].astype(str).astype("category")
        return adata

    def model_dir(self) -> Path:
        """A fresh copy of the model saved in its own folder."""
        self._count += 1
        return self.model.save(self.directory / f"model_{self._count}")

    def relative(self, text: str) -> str:
        """``text`` with the scratch folder left out of its paths (for the docs table)."""
        return text.replace(f"{self.directory}/", "").replace(str(self.directory), ".")


def _reseal(directory: Path) -> None:
    """Make ``config.json`` vouch for whatever ``weights.pt`` holds now (to reach the checks behind the checksum)."""
    import torch

    from dice.models import _io

    config_path = directory / "config.json"
    config = json.loads(config_path.read_text())
    try:
        tensors = torch.load(directory / "weights.pt", weights_only=True)
    except Exception:  # not a tensor file (a pickle payload): only the checksums are renewed
        tensors = None
    if tensors is not None:
        config["weights"]["tensors"] = {
            name: {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")} for name, t in tensors.items()
        }
    config["weights"]["sha256"] = hashlib.sha256((directory / "weights.pt").read_bytes()).hexdigest()
    config["config_sha256"] = _io.config_digest(config)
    config_path.write_text(json.dumps(config, indent=1))


def _nan_weights(ctx: Context) -> Path:
    import torch

    directory = ctx.model_dir()
    tensors = torch.load(directory / "weights.pt", weights_only=True)
    name = next(n for n in tensors if n.startswith("network.") and tensors[n].is_floating_point())
    tensors[name].view(-1)[0] = float("nan")
    torch.save(tensors, directory / "weights.pt")
    _reseal(directory)
    return directory


def _damaged(ctx: Context, damage: str) -> Path:
    directory = ctx.model_dir()
    weights, config = directory / "weights.pt", directory / "config.json"
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "empty":
        weights.write_bytes(b"")
    elif damage == "flipped":
        data = bytearray(weights.read_bytes())
        data[len(data) // 3] ^= 0x10
        weights.write_bytes(bytes(data))
    elif damage == "invalid_json":
        config.write_text(config.read_text()[:-40])
    elif damage == "json_list":
        config.write_text("[1, 2, 3]")
    elif damage in ("no_genes", "string_version"):
        content = json.loads(config.read_text())
        if damage == "no_genes":
            del content["genes"]
        else:
            content["format_version"] = str(content["format_version"])
        config.write_text(json.dumps(content))
    elif damage == "pickle":
        import torch

        torch.save({"network.x": torch.zeros(2), "payload": _Payload()}, weights)
        _reseal(directory)
    elif damage == "mixed":
        other = dice.tl.train_prior(
            ctx.reference(), n_comps=4, settings=dice.tl.TrainSettings(**TINY_TRAINING), seed=1, progress=False
        ).save(ctx.directory / f"other_{ctx._count}")
        weights.write_bytes((other / "weights.pt").read_bytes())
    elif damage == "no_weights":
        weights.unlink()
    return directory


class _Payload:
    """Anything that is not a tensor: unpickling it could run code."""


def _lognorm_then_counts(ctx: Context) -> AnnData:
    rng = np.random.default_rng(0)
    counts = rng.poisson(3.0, size=(300, N_GENES)).astype(np.float32)
    lognorm = np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4)
    adata = AnnData(np.vstack([lognorm[:200], counts[200:]]).astype(np.float32))
    adata.var_names = ctx.query().var_names
    return adata


def _duplicated(adata: AnnData) -> AnnData:
    adata.var_names = [*adata.var_names[:-1], adata.var_names[0]]
    return adata


def _with(adata: AnnData, change: Callable[[AnnData], None]) -> AnnData:
    change(adata)
    return adata


def _scaled(adata: AnnData) -> AnnData:
    import scanpy as sc

    sc.pp.scale(adata)
    return adata


def _no_cuda() -> str | None:
    import torch

    return "a CUDA GPU is present, so device='cuda' is valid here" if torch.cuda.is_available() else None


@dataclass(frozen=True)
class Case:
    """One bad input.

    Parameters
    ----------
    id
        Short name (the test id).
    input
        What is wrong with the input, in words (markdown).
    call
        The call, as the user writes it (``query``, ``reference``, ``model``, ``path`` are the inputs).
    match
        A fragment the error message must contain.
    run
        Makes the call: ``run(ctx, adata)``, ``adata`` from ``prepare`` (or ``None``).
    prepare
        Builds the AnnData the call receives (it must be unchanged afterwards), or ``None``.
    error
        The dice error type expected.
    skip
        Returns a reason when the case does not apply on this machine (e.g. a GPU is present).
    gap
        When set, the case is not handled yet (the call does not raise the dice error): why, in words.
    """

    id: str
    input: str
    call: str
    match: str
    run: Callable[[Context, AnnData | None], object]
    prepare: Callable[[Context], AnnData | None] | None = None
    error: type[Exception] = DiceInputError
    skip: Callable[[], str | None] | None = None
    gap: str | None = None


def run_case(case: Case, ctx: Context) -> tuple[AnnData | None, Exception | None]:
    """Prepare and run one case; returns its AnnData and the exception it raised (``None`` if none)."""
    adata = case.prepare(ctx) if case.prepare is not None else None
    try:
        case.run(ctx, adata)
    except Exception as error:  # the caller judges the type
        return adata, error
    return adata, None


T, P, S = dice.tl.TrainSettings, dice.tl.PosteriorSettings, dice.tl.TransferSettings
denoise, train, transfer = dice.tl.denoise, dice.tl.train_prior, dice.tl.transfer_labels
load = dice.models.DicePrior.load
Q = Context.query
R = Context.reference


def _load(damage: str) -> Callable[[Context, AnnData | None], object]:
    return lambda ctx, adata: load(_damaged(ctx, damage), device="cpu")


CASES: list[Case] = [
    # --- numeric options ------------------------------------------------------------------------------
    Case(
        "batch_size=0",
        "mini-batch size 0 (trained to loss NaN before)",
        "train_prior(reference, settings=TrainSettings(batch_size=0))",
        "batch_size must be a positive integer, got 0",
        lambda ctx, a: train(a, settings=T(batch_size=0), progress=False),
        R,
    ),
    Case(
        "batch_size=-1",
        "negative mini-batch size (uninitialised X_dice before)",
        "denoise(query, training=TrainSettings(batch_size=-1))",
        "batch_size must be a positive integer, got -1",
        lambda ctx, a: denoise(a, training=T(batch_size=-1), progress=False),
        Q,
    ),
    Case(
        "n_updates=0",
        "no training at all",
        "train_prior(reference, settings=TrainSettings(n_updates=0))",
        "n_updates must be a positive integer, got 0",
        lambda ctx, a: train(a, settings=T(n_updates=0), progress=False),
        R,
    ),
    Case(
        "lr=inf",
        "infinite learning rate",
        "TrainSettings(lr=float('inf'))",
        "lr must be a finite number, got inf",
        lambda ctx, a: T(lr=math.inf),
    ),
    Case(
        "rho=nan",
        "NaN coupling strength (IndexError in the schedule before)",
        "denoise(query, model, settings=PosteriorSettings(rho=float('nan')))",
        "rho must be a finite number, got nan",
        lambda ctx, a: denoise(a, ctx.model, settings=P(rho=math.nan), progress=False),
        Q,
    ),
    Case(
        "n_samples=0",
        "no posterior draws",
        "PosteriorSettings(n_samples=0)",
        "n_samples must be a positive integer, got 0",
        lambda ctx, a: P(n_samples=0),
    ),
    Case(
        "min_shared=0",
        "a gene overlap threshold of 0",
        "PosteriorSettings(min_shared=0)",
        "min_shared must be > 0.0, got 0",
        lambda ctx, a: P(min_shared=0),
    ),
    Case(
        "settings='fast'",
        "an unknown settings name",
        "denoise(query, model, settings='fast')",
        "settings must be a dice.tl.PosteriorSettings, 'default' or 'paper'",
        lambda ctx, a: denoise(a, ctx.model, settings="fast", progress=False),
        Q,
    ),
    Case(
        "seed=-1",
        "negative seed",
        "denoise(query, model, seed=-1)",
        "seed must be a non-negative integer, got -1",
        lambda ctx, a: denoise(a, ctx.model, seed=-1, progress=False),
        Q,
    ),
    Case(
        "seed=None train",
        "seed None",
        "train_prior(reference, seed=None)",
        "seed must be a non-negative integer, got None",
        lambda ctx, a: train(a, seed=None, progress=False),
        R,
    ),
    Case(
        "seed=-1 transfer",
        "negative seed in label transfer",
        "transfer_labels(query, reference, model, labels_key='label', seed=-1)",
        "seed must be a non-negative integer, got -1",
        lambda ctx, a: transfer(a, ctx.reference(), ctx.model, labels_key="label", seed=-1, progress=False),
        Q,
    ),
    Case(
        "n_comps=0",
        "latent dimension 0",
        "train_prior(reference, n_comps=0)",
        "n_comps=0 is impossible",
        lambda ctx, a: train(a, n_comps=0, progress=False),
        R,
    ),
    Case(
        "n_comps=2.5",
        "a fractional latent dimension",
        "train_prior(reference, n_comps=2.5)",
        "n_comps must be a whole number of latent dimensions",
        lambda ctx, a: train(a, n_comps=2.5, progress=False),
        R,
    ),
    Case(
        "cluster n_neighbors=0",
        "a kNN vote of 0 neighbours (confidence 0 for every cell before)",
        "cluster_confidence(denoised, n_neighbors=0)",
        "n_neighbors must be a positive integer, got 0",
        lambda ctx, a: dice.tl.cluster_confidence(a, n_neighbors=0),
        Context.denoised,
    ),
    Case(
        "knn n_neighbors=0",
        "a kNN label transfer with 0 neighbours (ZeroDivisionError before)",
        "transfer_labels(query, reference, model, labels_key='label', "
        "transfer=TransferSettings(classifier='knn', n_neighbors=0))",
        "n_neighbors must be a positive integer, got 0",
        lambda ctx, a: transfer(
            a, ctx.reference(), ctx.model, labels_key="label", transfer=S(classifier="knn", n_neighbors=0)
        ),
        Q,
    ),
    Case(
        "alpha=1",
        "label sets that may miss every label",
        "TransferSettings(alpha=1.0)",
        "alpha must lie strictly between 0 and 1",
        lambda ctx, a: S(alpha=1.0),
    ),
    # --- devices --------------------------------------------------------------------------------------
    Case(
        "device=cuda absent",
        "a CUDA device on a machine without one (silently ignored before)",
        "denoise(query, model, device='cuda')",
        "Device 'cuda' was requested, but",
        lambda ctx, a: denoise(a, ctx.model, device="cuda", progress=False),
        Q,
        skip=_no_cuda,
    ),
    Case(
        "load device=cuda absent",
        "loading onto a CUDA device that is not there",
        "DicePrior.load(path, device='cuda')",
        "Device 'cuda' was requested, but",
        lambda ctx, a: load(ctx.model_dir(), device="cuda"),
        skip=_no_cuda,
    ),
    Case(
        "device=tpu",
        "a device torch does not know",
        "train_prior(reference, device='tpu')",
        "Unknown device 'tpu'",
        lambda ctx, a: train(a, device="tpu", settings=T(**TINY_TRAINING), progress=False),
        R,
    ),
    # --- the data -------------------------------------------------------------------------------------
    Case(
        "scaled",
        "`sc.pp.scale`d data (negative values, gene means 0)",
        "denoise(sc.pp.scale(query), model)",
        "looks scaled",
        lambda ctx, a: denoise(a, ctx.model, progress=False),
        lambda ctx: _scaled(ctx.query()),
    ),
    Case(
        "scaled reference",
        "a `sc.pp.scale`d reference",
        "train_prior(sc.pp.scale(reference))",
        "looks scaled",
        lambda ctx, a: train(a, settings=T(**TINY_TRAINING), progress=False),
        lambda ctx: _scaled(ctx.reference()),
    ),
    Case(
        "X-1",
        "log-normalised data shifted by -1 (`X - 1`: its zeros became -1)",
        "denoise(query_minus_1, model)",
        "looks shifted",
        lambda ctx, a: denoise(a, ctx.model, progress=False),
        lambda ctx: _with(ctx.sparse_query(), lambda a: setattr(a, "X", a.X - 1.0)),
    ),
    Case(
        "log-normalised then counts",
        "200 log-normalised cells followed by 100 cells of raw counts (two datasets concatenated)",
        "denoise(lognorm_and_counts, model)",
        "mixes raw counts and log-normalised cells: 100 of 300 cells (the first is row 200)",
        lambda ctx, a: denoise(a, ctx.model, progress=False),
        _lognorm_then_counts,
    ),
    Case(
        "NaN in X",
        "a NaN expression value",
        "denoise(query_with_nan, model)",
        "contains 1 NaN or infinite values",
        lambda ctx, a: denoise(a, ctx.model, progress=False),
        lambda ctx: _with(ctx.query(), lambda a: a.X.__setitem__((3, 5), np.nan)),
    ),
    Case(
        "duplicated reference genes",
        "two reference genes with the same name (trained and saved, then refused to load, before)",
        "train_prior(reference_with_duplicates)",
        "the reference has duplicated gene names",
        lambda ctx, a: train(a, settings=T(**TINY_TRAINING), progress=False),
        lambda ctx: _duplicated(ctx.reference()),
    ),
    Case(
        "duplicated query genes",
        "two query genes with the same name",
        "denoise(query_with_duplicates, model)",
        "duplicated gene names",
        lambda ctx, a: denoise(a, ctx.model, progress=False),
        lambda ctx: _duplicated(ctx.query()),
    ),
    Case(
        "too few genes",
        "a query sharing 8 % of the model's genes",
        "denoise(query[:, :5], model)",
        "5 of 60 model genes found",
        lambda ctx, a: denoise(a, ctx.model, progress=False),
        lambda ctx: ctx.query()[:, :5].copy(),
    ),
    Case(
        "missing layer",
        "a layer that does not exist",
        "denoise(query, model, layer='counts')",
        "Layer 'counts' not found",
        lambda ctx, a: denoise(a, ctx.model, layer="counts", progress=False),
        Q,
    ),
    Case(
        "missing labels_key",
        "an obs column that does not exist",
        "train_prior(reference, labels_key='cell_type')",
        "labels_key 'cell_type' is not a column of adata.obs",
        lambda ctx, a: train(a, labels_key="cell_type", settings=T(**TINY_TRAINING), progress=False),
        R,
    ),
    Case(
        "counts likelihood without counts",
        "the count likelihood without `layers['counts']`",
        "denoise(query, model, settings=PosteriorSettings(likelihood='counts'))",
        "counts",
        lambda ctx, a: denoise(a, ctx.model, settings=P(likelihood="counts"), progress=False),
        Q,
    ),
    Case(
        "empty",
        "an AnnData with no cells",
        "denoise(query[:0], model)",
        "is empty or too small",
        lambda ctx, a: denoise(a, ctx.model, progress=False),
        lambda ctx: ctx.query()[:0].copy(),
    ),
    Case(
        "not AnnData",
        "a numpy array instead of an AnnData",
        "denoise(query.X, model)",
        "adata must be an AnnData object, got ndarray",
        lambda ctx, a: denoise(ctx.query().X, ctx.model, progress=False),
    ),
    Case(
        "model is a path",
        "a model folder's path instead of the loaded model",
        "denoise(query, 'model/')",
        "model must be a dice.models.DicePrior",
        lambda ctx, a: denoise(a, str(ctx.model_dir()), progress=False),
        Q,
    ),
    # --- model directories ----------------------------------------------------------------------------
    Case(
        "NaN weights",
        "a model whose weights hold NaN (behind a matching checksum; all-NaN X_dice before)",
        "DicePrior.load(path)",
        "NaN or infinite",
        lambda ctx, a: load(_nan_weights(ctx), device="cpu"),
        error=DiceModelError,
    ),
    Case(
        "truncated weights",
        "`weights.pt` cut in half (torch's PytorchStreamReader error before)",
        "DicePrior.load(path)",
        "weights.pt",
        _load("truncated"),
        error=DiceModelError,
    ),
    Case(
        "empty weights",
        "an empty `weights.pt` (bare EOFError before)",
        "DicePrior.load(path)",
        "weights.pt",
        _load("empty"),
        error=DiceModelError,
    ),
    Case(
        "flipped byte",
        "one flipped bit in `weights.pt`",
        "DicePrior.load(path)",
        "does not belong to config.json",
        _load("flipped"),
        error=DiceModelError,
    ),
    Case(
        "mixed model",
        "one model's `config.json` with another's `weights.pt` (accepted, X_dice 2 % off, before)",
        "DicePrior.load(path)",
        "does not belong to config.json",
        _load("mixed"),
        error=DiceModelError,
    ),
    Case(
        "missing weights",
        "a model folder without `weights.pt`",
        "DicePrior.load(path)",
        "weights.pt",
        _load("no_weights"),
        error=DiceModelError,
    ),
    Case(
        "invalid JSON",
        "a truncated `config.json` (bare JSONDecodeError without the path before)",
        "DicePrior.load(path)",
        "config.json",
        _load("invalid_json"),
        error=DiceModelError,
    ),
    Case(
        "JSON list",
        "`config.json` holding a JSON list (AttributeError before)",
        "DicePrior.load(path)",
        "not an object",
        _load("json_list"),
        error=DiceModelError,
    ),
    Case(
        "missing genes key",
        "`config.json` without its `genes` (KeyError: 'genes' before)",
        "DicePrior.load(path)",
        "genes",
        _load("no_genes"),
        error=DiceModelError,
    ),
    Case(
        "string format_version",
        '`format_version` written as a string (`"1"`: "saved in version 1 ... reads version 1" before)',
        "DicePrior.load(path)",
        "format_version",
        _load("string_version"),
        error=DiceModelError,
    ),
    Case(
        "pickle payload",
        "a `weights.pt` holding a pickled object (torch advised `weights_only=False` before)",
        "DicePrior.load(path)",
        "not a dice model",
        _load("pickle"),
        error=DiceModelError,
    ),
    Case(
        "missing folder",
        "a model folder that does not exist",
        "DicePrior.load('nowhere/')",
        "does not exist",
        lambda ctx, a: load(ctx.directory / "nowhere", device="cpu"),
        error=DiceModelError,
    ),
]
