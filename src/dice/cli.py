"""Command line: ``dice demo``, ``dice train``, ``dice denoise``, ``dice transfer``.

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
import sys
import time
import warnings

from ._cli_checks import (
    CliError,
    Parser,
    check_device,
    check_h5ad_input,
    check_model_dir,
    check_output,
    non_empty,
    non_negative_int,
    positive_int,
    read_h5ad,
    write_h5ad_atomically,
)

__all__ = ["build_parser", "main"]

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130


# --------------------------------------------------------------------------------------------------- commands


def _with_model(inputs: dict, args: argparse.Namespace) -> dict:
    """The command's input paths, with the ``--model`` folder (checked) when one was given."""
    if args.model is not None:
        inputs["--model"] = check_model_dir(args.model)
    return inputs


def _saved_model(args: argparse.Namespace, inputs: dict):
    """The ``--model`` folder's model on ``--device``, or ``None`` (the command then trains one)."""
    if args.model is None:
        return None
    from .models import DicePrior

    return DicePrior.load(inputs["--model"], device=args.device)


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
    inputs = _with_model({"query": query}, args)
    out = check_output(args.out, kind="h5ad", overwrite=args.overwrite, inputs=inputs)
    check_device(args.device)
    from . import pp, tl

    settings = tl.PosteriorSettings.resolve(args.mode)
    if args.n_samples is not None:
        settings = settings.replace(n_samples=args.n_samples)
    model = _saved_model(args, inputs)
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


def _transfer(args: argparse.Namespace) -> int:
    query = check_h5ad_input(args.query, "query")
    inputs = _with_model({"query": query, "--reference": check_h5ad_input(args.reference, "--reference")}, args)
    out = check_output(args.out, kind="h5ad", overwrite=args.overwrite, inputs=inputs)
    check_device(args.device)
    from . import tl

    model = _saved_model(args, inputs)
    adata = read_h5ad(query, "query")
    reference = read_h5ad(inputs["--reference"], "--reference")
    if args.labels_key not in reference.obs:
        raise CliError(
            f"--labels-key {args.labels_key!r} is not a column of the reference's obs (it has: "
            f"{', '.join(map(str, reference.obs.columns[:10])) or 'no columns'})."
        )
    started = time.perf_counter()
    tl.transfer_labels(
        adata, reference, model, labels_key=args.labels_key, layer=args.layer, seed=args.seed, progress=not args.quiet
    )
    write_h5ad_atomically(adata, out)
    confidence = adata.obs["dice_label_confidence"].to_numpy()
    print(
        f"transferred labels to {adata.n_obs} cells in {time.perf_counter() - started:.1f} s (mean confidence "
        f"{confidence.mean():.2f}); wrote {out} (obs['dice_label'], obs['dice_label_confidence'], "
        "obs['dice_label_set'], obsm['X_dice'])"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``dice`` argument parser (its errors raise :class:`CliError` instead of exiting)."""
    common = Parser(add_help=False)
    common.add_argument("--quiet", action="store_true", help="no progress bars")
    common.add_argument("--debug", action="store_true", help="show the full traceback of an error")

    parser = Parser(prog="dice", description="Diffusion-induced cell embeddings.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{demo,train,denoise,transfer}")

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
    train.add_argument("--batch-key", type=non_empty, default=None)
    train.add_argument("--n-comps", type=positive_int, default=None, help="latent dimension k (default: elbow)")
    train.add_argument("--labels-key", type=non_empty, default=None, help="obs column for same-label mixup")
    train.add_argument("--layer", type=non_empty, default=None)
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
    den.add_argument("--layer", type=non_empty, default=None)
    den.add_argument("--seed", type=non_negative_int, default=0)
    den.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:<index>")
    den.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    den.set_defaults(func=_denoise)

    tra = sub.add_parser(
        "transfer", parents=[common], help="transfer a labelled reference's labels to a query, with confidence"
    )
    tra.add_argument("query", help="query .h5ad (log-normalised X; raw counts in layers['counts'] if you have them)")
    tra.add_argument("--reference", required=True, help="labelled reference .h5ad, prepared like the query")
    tra.add_argument("--labels-key", type=non_empty, required=True, help="the reference's obs column of labels")
    tra.add_argument("--out", required=True, help="output .h5ad (never an input)")
    tra.add_argument("--model", default=None, help="model folder from `dice train` on this reference; omit to train")
    tra.add_argument("--layer", type=non_empty, default=None)
    tra.add_argument("--seed", type=non_negative_int, default=0)
    tra.add_argument("--device", default="auto", help="for --model: auto, cpu, cuda or cuda:<index>")
    tra.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    tra.set_defaults(func=_transfer)
    return parser


def _one_line(error: BaseException | str) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _user_errors() -> tuple[type[BaseException], ...]:
    from ._validation import DiceInputError

    # DiceInputError covers DiceModelError and the settings' errors; ValueError and OSError (missing or
    # unreadable files, a full disk) are what anndata, h5py and numpy raise on bad user input
    return (CliError, DiceInputError, ValueError, OSError)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line, ``dice: warning: ...``: which line of dice raised it is no use to the user."""
    kind = "" if category is UserWarning else f"{category.__name__}: "
    print(f"dice: warning: {kind}{_one_line(message)}", file=sys.stderr if file is None else file)


def main(argv: list[str] | None = None) -> int:
    """Run the ``dice`` command line; returns the exit code (0, 2 for a user error, 1 for a dice bug).

    Warnings are printed as one line each, ``dice: warning: ...`` (which ones are shown is still up to
    Python's warning filters, e.g. ``python -W ignore -m dice``).

    Parameters
    ----------
    argv
        The arguments (default: ``sys.argv[1:]``).
    """
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        return _run(argv)


def _run(argv: list[str] | None) -> int:
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
