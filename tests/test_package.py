import subprocess
import sys


def test_import_dice_does_not_import_torch():
    code = "import sys, dice; dice.pp; dice.__version__; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_namespaces_expose_public_api():
    import dice

    for name in ("recipe_paper", "align_genes", "fit_loadings", "project", "LinearEmbedding"):
        assert hasattr(dice.pp, name)
    for name in ("train_prior", "denoise"):
        assert hasattr(dice.tl, name)
    for name in ("embedding_comparison", "uncertainty", "training_loss"):
        assert hasattr(dice.pl, name)
    assert set(dice.pp.__all__) <= set(dir(dice.pp))
