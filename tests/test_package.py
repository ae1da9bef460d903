"""Package structure: lazy torch, a narrow public API with scanpy-style signatures (one name per concept)."""

import inspect
import subprocess
import sys
import typing

import pytest

import dice

NAMESPACES = ("pp", "tl", "pl", "models", "metrics", "datasets")
#: Functions that take an AnnData first. Others say why they do not.
NOT_ADATA_FIRST = {
    "pl.reliability_diagram": "plots arrays of confidence and correctness",
    "pl.training_loss": "plots a model's training history",
}
#: Names retired in Core 1.0: one name per concept across the package.
RETIRED_PARAMETERS = {
    "label_key",
    "adata_ref",
    "adata_query",
    "train_kwargs",
    "denoise_kwargs",
    "n_steps",
    "mode",
    "batch_size",
    "samples_key",
    "embedding_key",
    "method",
    "basis_key",
}


def test_import_dice_does_not_import_torch():
    code = "import sys, dice; dice.pp; dice.tl; dice.pl; dice.__version__; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _public_functions(namespace):
    module = getattr(dice, namespace)
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isfunction(obj):
            yield f"{namespace}.{name}", obj


ADATA_FUNCTIONS = [(n, f) for ns in ("pp", "tl", "pl") for n, f in _public_functions(ns)]


def test_every_name_in_all_exists():
    for namespace in NAMESPACES:
        module = getattr(dice, namespace)
        assert set(module.__all__) <= set(dir(module)), namespace


@pytest.mark.parametrize(("name", "function"), ADATA_FUNCTIONS, ids=[n for n, _ in ADATA_FUNCTIONS])
def test_scanpy_style_signature(name, function):
    signature = inspect.signature(function)
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    assert len(positional) <= 3, f"{name}: at most 3 positional parameters, options keyword-only"
    if name not in NOT_ADATA_FIRST:
        assert params[0].name == "adata", f"{name}: adata comes first"
    assert signature.return_annotation is not inspect.Signature.empty, f"{name}: annotate the return"
    if "copy" in signature.parameters:
        hints = typing.get_type_hints(function)
        assert signature.parameters["copy"].default is False
        assert signature.parameters["copy"].kind is inspect.Parameter.KEYWORD_ONLY
        assert str(hints["return"]) in ("anndata._core.anndata.AnnData | None", "AnnData | None"), name
    if "key_added" in signature.parameters:
        assert signature.parameters["key_added"].default == "dice", f"{name}: key_added is always the prefix"
    assert not RETIRED_PARAMETERS & set(signature.parameters), f"{name}: uses a retired parameter name"
    assert len(params) <= 15, f"{name}: group options into a settings object"


def test_no_public_sampler_internals():
    assert set(dice.models.__all__) == {"DicePrior", "DiffusionMLP", "NoiseSchedule"}
    assert set(dice.tl.__all__) == {
        "PosteriorSettings",
        "TrainSettings",
        "TransferSettings",
        "cluster_confidence",
        "denoise",
        "train_prior",
        "transfer_labels",
    }
    assert set(dice.pp.__all__) == {"project", "recipe_paper"}


def test_errors_and_warnings_are_public_at_the_top_level():
    from dice.tl._label_report import UnreliableLabelWarning
    from dice.tl._latent import DepthWarning

    assert {"DiceInputError", "DiceModelError", "DepthWarning", "UnreliableLabelWarning"} <= set(dir(dice))
    assert issubclass(dice.DiceModelError, dice.DiceInputError) and issubclass(dice.DiceInputError, ValueError)
    assert issubclass(dice.DepthWarning, UserWarning) and issubclass(dice.UnreliableLabelWarning, UserWarning)
    # the very classes the tools warn with, so a filter on dice.DepthWarning silences them
    assert dice.DepthWarning is DepthWarning and dice.UnreliableLabelWarning is UnreliableLabelWarning
    with pytest.raises(AttributeError, match="no attribute 'NoSuchWarning'"):
        dice.NoSuchWarning  # noqa: B018


def test_readme_api_table_lists_every_public_function():
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for namespace in ("pp", "tl", "pl"):
        for name in getattr(dice, namespace).__all__:
            assert f"dice.{namespace}.{name}" in readme, f"README's API table lacks dice.{namespace}.{name}"
