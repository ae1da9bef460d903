import anndata as ad
import pytest

from dice.cli import main
from helpers import make_clusters


def test_train_then_denoise_from_files(tmp_path, torch_threads, capsys):
    make_clusters(300, seed=1).write_h5ad(tmp_path / "ref.h5ad")
    make_clusters(80, seed=2).write_h5ad(tmp_path / "query.h5ad")
    assert (
        main(
            [
                "train",
                str(tmp_path / "ref.h5ad"),
                "--out",
                str(tmp_path / "model"),
                "--n-comps",
                "4",
                "--steps",
                "60",
                "--quiet",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "denoise",
                str(tmp_path / "query.h5ad"),
                "--model",
                str(tmp_path / "model"),
                "--out",
                str(tmp_path / "out.h5ad"),
                "--quiet",
            ]
        )
        == 0
    )
    out = ad.read_h5ad(tmp_path / "out.h5ad")
    assert out.obsm["X_dice"].shape == (80, 4) and "dice_uncertainty" in out.obs
    assert "denoised 80 cells" in capsys.readouterr().out


def test_cli_reports_bad_input_without_traceback(tmp_path, capsys):
    assert main(["denoise", str(tmp_path / "missing.h5ad"), "--out", str(tmp_path / "o.h5ad")]) == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path, torch_threads, capsys):
    assert main(["demo", "--out", str(tmp_path), "--steps", "150", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "PCA (reference loadings)" in printed and "DICE" in printed
    assert (tmp_path / "cbmc_pca_vs_dice.png").stat().st_size > 10_000
    assert ad.read_h5ad(tmp_path / "cbmc_query_dice.h5ad").obsm["X_dice"].shape[1] == 25
