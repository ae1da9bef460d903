"""Command line: ``dice demo``, ``dice train``, ``dice denoise``.

The commands fail fast: every option is checked when parsed, every input and output path before any work
(an existing output without ``--overwrite``, an output whose folder is missing, an output that is one of
the inputs, an input that is not an ``.h5ad`` file, an unusable ``--device``, a corrupted ``--model``). A user
error ends with exit code 2 and one line on stderr (``dice: error: ...``), without a traceback unless
``--debug`` is given. Outputs are written all at once: a model folder or an ``.h5ad`` file appears complete
or not at all.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["build_parser", "main"]

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
HDF5_SIGNATURE_OFFSETS = (0, 512, 1024, 2048)  # a user block shifts the signature to a power of two >= 512


class CliError(Exception):
    """A user error found by the command line itself (a path, an option); exit code 2, one line."""


class _Parser(argparse.ArgumentParser):
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


def _name(text: str) -> str:
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


# --------------------------------------------------------------------------------------------------- commands


def _demo(args: argparse.Namespace) -> int:
    out = check_output(args.out, kind="folder", overwrite=True, inputs={})
    from ._demo import run_demo

    run_demo(out_dir=out, seed=args.seed, n_steps=args.steps, progress=not args.quiet)
    return 0


def _train(args: argparse.Namespace) -> int:
    reference = check_h5ad_input(args.reference, "reference")
    out = check_output(args.out, kind="model", overwrite=args.overwrite, inputs={"reference": reference})
    check_device(args.device)
    from . import pp, tl

    settings = tl.TrainSettings(n_updates=args.steps)
    adata = read_h5ad(reference, "reference")
    if args.recipe:
        adata = pp.recipe_paper(adata, copy=True, n_top_genes=args.n_top_genes, batch_key=args.batch_key)
    model = tl.train_prior(
        adata,
        n_comps=args.n_comps,
        layer=args.layer,
        labels_key=args.labels_key,
        settings=settings,
        seed=args.seed,
        device=args.device,
        progress=not args.quiet,
    )
    model.save(out, overwrite=args.overwrite)
    print(f"saved {model} to {out}")
    return 0


def _denoise(args: argparse.Namespace) -> int:
    query = check_h5ad_input(args.query, "query")
    inputs = {"query": query}
    if args.model is not None:
        inputs["--model"] = check_model_dir(args.model)
    out = check_output(args.out, kind="h5ad", overwrite=args.overwrite, inputs=inputs)
    check_device(args.device)
    from . import pp, tl

    settings = tl.PosteriorSettings.resolve(args.mode)
    if args.n_samples is not None:
        settings = settings.replace(n_samples=args.n_samples)
    model = None
    if args.model is not None:
        from .models import DicePrior

        model = DicePrior.load(inputs["--model"], device=args.device)
    adata = read_h5ad(query, "query")
    if args.recipe:
        adata = pp.recipe_paper(adata, copy=True, n_top_genes=None)
    started = time.perf_counter()
    tl.denoise(
        adata, model, layer=args.layer, settings=settings, seed=args.seed, device=args.device, progress=not args.quiet
    )
    write_h5ad_atomically(adata, out)
    print(
        f"denoised {adata.n_obs} cells in {time.perf_counter() - started:.1f} s; wrote {out} "
        "(obsm['X_dice'], obs['dice_uncertainty'])"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``dice`` argument parser (its errors raise :class:`CliError` instead of exiting)."""
    common = _Parser(add_help=False)
    common.add_argument("--quiet", action="store_true", help="no progress bars")
    common.add_argument("--debug", action="store_true", help="show the full traceback of an error")

    parser = _Parser(prog="dice", description="Diffusion-induced cell embeddings.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{demo,train,denoise}")

    demo = sub.add_parser("demo", parents=[common], help="run the whole pipeline on the embedded CBMC CITE-seq data")
    demo.add_argument("--out", default="dice_demo_output", help="output folder (h5ad, PNG, table)")
    demo.add_argument("--seed", type=non_negative_int, default=0)
    demo.add_argument("--steps", type=positive_int, default=4000, help="prior training steps")
    demo.set_defaults(func=_demo)

    train = sub.add_parser("train", parents=[common], help="train a prior on a reference .h5ad and save it to a folder")
    train.add_argument("reference", help="reference .h5ad (log-normalised, or raw counts with --recipe)")
    train.add_argument("--out", required=True, help="model folder to write (its parent folder must exist)")
    train.add_argument("--recipe", action="store_true", help="apply dice.pp.recipe_paper to raw counts first")
    train.add_argument("--n-top-genes", type=positive_int, default=3000)
    train.add_argument("--batch-key", type=_name, default=None)
    train.add_argument("--n-comps", type=positive_int, default=None, help="latent dimension k (default: elbow)")
    train.add_argument("--labels-key", type=_name, default=None, help="obs column for same-label mixup")
    train.add_argument("--layer", type=_name, default=None)
    train.add_argument("--steps", type=positive_int, default=4000, help="gradient updates")
    train.add_argument("--seed", type=non_negative_int, default=0)
    train.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:<index>")
    train.add_argument("--overwrite", action="store_true", help="replace the model already in --out")
    train.set_defaults(func=_train)

    den = sub.add_parser(
        "denoise", parents=[common], help="denoise a query .h5ad (with --model) or build an atlas (without)"
    )
    den.add_argument("query", help="query .h5ad (log-normalised, or raw counts with --recipe)")
    den.add_argument("--out", required=True, help="output .h5ad (never the query itself)")
    den.add_argument("--model", default=None, help="model folder from `dice train`; omit to train on the query")
    den.add_argument("--recipe", action="store_true", help="normalise + log1p raw counts first (no HVG)")
    den.add_argument("--mode", default="default", choices=["default", "paper"])
    den.add_argument("--n-samples", type=positive_int, default=None)
    den.add_argument("--layer", type=_name, default=None)
    den.add_argument("--seed", type=non_negative_int, default=0)
    den.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:<index>")
    den.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    den.set_defaults(func=_denoise)
    return parser


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _user_errors() -> tuple[type[BaseException], ...]:
    from ._validation import DiceInputError

    # DiceInputError covers DiceModelError and the settings' errors; ValueError and OSError (missing or
    # unreadable files, a full disk) are what anndata, h5py and numpy raise on bad user input
    return (CliError, DiceInputError, ValueError, OSError)


def main(argv: list[str] | None = None) -> int:
    """Run the ``dice`` command line; returns the exit code (0, 2 for a user error, 1 for a dice bug).

    Parameters
    ----------
    argv
        The arguments (default: ``sys.argv[1:]``).
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except KeyboardInterrupt:
        print("dice: interrupted; no output was written.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        if debug:
            raise
        if isinstance(error, _user_errors()):
            print(f"dice: error: {_one_line(error)}", file=sys.stderr)
            return EXIT_USER_ERROR
        print(
            f"dice: internal error: {type(error).__name__}: {_one_line(error)} (rerun with --debug for the "
            "traceback and report it)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
