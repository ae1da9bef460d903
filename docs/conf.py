"""Sphinx configuration for the dice documentation (cookiecutter-scverse layout, myst-nb pages).

Build: ``make docs`` (= ``sphinx-build -W --keep-going -b html docs docs/_build/html``).
The build is offline: no intersphinx, nothing fetched at build time, notebooks are not executed.
"""

from __future__ import annotations

import filecmp
import shutil
import warnings
from datetime import date
from pathlib import Path

import dice

# sphinx-autodoc-typehints 3.x calls a Sphinx API deprecated for Sphinx 10; the Python warning (not a
# Sphinx warning, so -W is unaffected) would otherwise be printed once per documented object.
warnings.filterwarnings("ignore", message=".*set_application.*is deprecated", category=DeprecationWarning)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# -- Project -------------------------------------------------------------------------------------
project = "dice"
author = "dice developers"
copyright = f"{date.today().year}, {author}"
release = dice.__version__
version = ".".join(release.split(".")[:2])

# -- Extensions ----------------------------------------------------------------------------------
extensions = [
    "myst_nb",  # myst markdown pages and .ipynb notebooks (also registers myst_parser)
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",  # numpy-style docstrings; must come before sphinx_autodoc_typehints
    "sphinx_autodoc_typehints",
    "sphinx.ext.mathjax",
    "sphinx_copybutton",
]

templates_path = ["_templates"]
# notebooks/ is filled from ../tutorials at build start (see _sync_tutorials below); _toctree.inc is
# included by tutorials.md, it is not a page of its own.
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
# .rst first: autosummary writes its generated stubs with the first suffix, and they are reStructuredText.
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
master_doc = "index"

# -- MyST / myst-nb ------------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # render tutorials with the outputs they were saved with; never run them
nb_merge_streams = True

# -- autodoc / autosummary / napoleon / typehints ------------------------------------------------
# The API pages follow each subpackage's ``__all__`` (see _templates/autosummary/module.rst), so the
# public API can be renamed or trimmed without touching api.md.
autosummary_generate = True
autosummary_ignore_module_all = False
autosummary_imported_members = True
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autoclass_content = "class"
autodoc_typehints = "description"  # handled by sphinx_autodoc_typehints: types go into the parameter list
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = True
napoleon_use_param = True
napoleon_use_ivar = True  # "Attributes" sections as field lists: no duplicates of autodoc's members
typehints_defaults = "comma"
typehints_document_rtype = True
always_document_param_types = True

# Without intersphinx (the build is offline) references to numpy / anndata / torch types cannot be
# resolved; nitpicky mode would turn each of them into a warning, so it stays off.
nitpicky = False

# -- HTML ----------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"dice {release}"
html_static_path = ["_static"]
html_show_sourcelink = False
html_theme_options = {
    "source_repository": "",
    "navigation_with_keys": True,
}
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True


# -- Tutorials: copy ../tutorials/*.ipynb into docs/notebooks/ at build start -------------------
def _sync_tutorials(app) -> None:
    """Mirror ``tutorials/*.ipynb`` into ``docs/notebooks/`` and write the toctree that lists them.

    Works with zero notebooks (the tutorials page then says so, and no empty-glob warning is raised).
    Files are only rewritten when their content changed, so incremental builds stay incremental.
    """
    src_dir, dst_dir = REPO / "tutorials", HERE / "notebooks"
    dst_dir.mkdir(exist_ok=True)
    notebooks = sorted(src_dir.glob("*.ipynb")) if src_dir.is_dir() else []
    wanted = {nb.name for nb in notebooks}
    for old in dst_dir.glob("*.ipynb"):
        if old.name not in wanted:
            old.unlink()
    for nb in notebooks:
        dst = dst_dir / nb.name
        if not dst.exists() or not filecmp.cmp(nb, dst, shallow=False):
            shutil.copyfile(nb, dst)

    if notebooks:
        entries = "\n".join(f"notebooks/{nb.stem}" for nb in notebooks)
        text = f"```{{toctree}}\n:maxdepth: 1\n\n{entries}\n```\n"
    else:
        scripts = sorted(src_dir.glob("*.py")) if src_dir.is_dir() else []
        text = "*No tutorial notebooks yet.*"
        if scripts:
            listed = ", ".join(f"`tutorials/{s.name}`" for s in scripts)
            text += f" Until they arrive, the repository's walk-through script(s) {listed} can be run as is."
        text += "\n"
    toc = dst_dir / "_toctree.inc"
    if not toc.exists() or toc.read_text() != text:
        toc.write_text(text)


def setup(app):
    app.connect("builder-inited", _sync_tutorials)
