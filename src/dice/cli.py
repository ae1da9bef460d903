"""Command line: ``dice demo``, ``dice train``, ``dice denoise``."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    run_demo(out_dir=Path(args.out), seed=args.seed, n_steps=args.steps, progress=not args.quiet)
    return 0


def _train(args: argparse.Namespace) -> int:
    import anndata as ad

    from . import pp, tl

    adata = ad.read_h5ad(args.reference)
    if args.recipe:
        adata = pp.recipe_paper(adata, copy=True, n_top_genes=args.n_top_genes, batch_key=args.batch_key)
    model = tl.train_prior(
        adata,
        n_comps=args.n_comps,
        layer=args.layer,
        labels_key=args.labels_key,
        settings=tl.TrainSettings(n_updates=args.steps),
        seed=args.seed,
        device=args.device,
        progress=not args.quiet,
    )
    model.save(args.out, overwrite=args.overwrite)
    print(f"saved {model} to {args.out}")
    return 0


def _denoise(args: argparse.Namespace) -> int:
    import anndata as ad

    from . import pp, tl

    adata = ad.read_h5ad(args.query)
    if args.recipe:
        adata = pp.recipe_paper(adata, copy=True, n_top_genes=None)
    model = None
    if args.model is not None:
        from .models import DicePrior

        model = DicePrior.load(args.model, device=args.device)
    started = time.perf_counter()
    settings = tl.PosteriorSettings.resolve(args.mode)
    if args.n_samples is not None:
        settings = settings.replace(n_samples=args.n_samples)
    tl.denoise(
        adata, model, layer=args.layer, settings=settings, seed=args.seed, device=args.device, progress=not args.quiet
    )
    adata.write_h5ad(args.out)
    print(
        f"denoised {adata.n_obs} cells in {time.perf_counter() - started:.1f} s; wrote {args.out} "
        "(obsm['X_dice'], obs['dice_uncertainty'])"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dice", description="Diffusion-induced cell embeddings.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the whole pipeline on the embedded CBMC CITE-seq data")
    demo.add_argument("--out", default="dice_demo_output", help="output folder (h5ad, PNG, table)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--steps", type=int, default=4000, help="prior training steps")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=_demo)

    train = sub.add_parser("train", help="train a prior on a reference .h5ad and save it to a folder")
    train.add_argument("reference", help="reference .h5ad (log-normalised, or raw counts with --recipe)")
    train.add_argument("--out", required=True, help="model folder to write")
    train.add_argument("--recipe", action="store_true", help="apply dice.pp.recipe_paper to raw counts first")
    train.add_argument("--n-top-genes", type=int, default=3000)
    train.add_argument("--batch-key", default=None)
    train.add_argument("--n-comps", type=int, default=None, help="latent dimension k (default: elbow)")
    train.add_argument("--labels-key", default=None, help="obs column for same-label mixup")
    train.add_argument("--layer", default=None)
    train.add_argument("--steps", type=int, default=4000)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="auto")
    train.add_argument("--overwrite", action="store_true")
    train.add_argument("--quiet", action="store_true")
    train.set_defaults(func=_train)

    den = sub.add_parser("denoise", help="denoise a query .h5ad (with --model) or build an atlas (without)")
    den.add_argument("query", help="query .h5ad (log-normalised, or raw counts with --recipe)")
    den.add_argument("--out", required=True, help="output .h5ad")
    den.add_argument("--model", default=None, help="model folder from `dice train`; omit to train on the query")
    den.add_argument("--recipe", action="store_true", help="normalise + log1p raw counts first (no HVG)")
    den.add_argument("--mode", default="default", choices=["default", "paper"])
    den.add_argument("--n-samples", type=int, default=None)
    den.add_argument("--layer", default=None)
    den.add_argument("--seed", type=int, default=0)
    den.add_argument("--device", default="auto")
    den.add_argument("--quiet", action="store_true")
    den.set_defaults(func=_denoise)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    from ._validation import DiceInputError

    try:
        return args.func(args)
    except (DiceInputError, FileNotFoundError, FileExistsError) as error:
        print(f"dice {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
