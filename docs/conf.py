"""Sphinx configuration for the dice documentation (cookiecutter-scverse layout, myst-nb pages).

Build: ``make docs`` (= ``sphinx-build -W --keep-going -b html docs docs/_build/html``).
The build is offline: no intersphinx, nothing fetched at build time, notebooks are not executed.
"""

from __future__ import annotations

import filecmp
import importlib
import pkgutil
import re
import shutil
import sys
import warnings
from datetime import date
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.docutils import SphinxDirective

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
# MathJax from the package's own copy (docs extra), so formulas render without a network connection;
# without it Sphinx points at the MathJax CDN.
try:
    importlib.import_module("sphinx-mathjax-offline")
    extensions.append("sphinx-mathjax-offline")
except ImportError:
    pass

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
autodoc_default_options = {"members": True}  # no "Bases: object" lines under plain classes
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
html_theme_options = {"navigation_with_keys": True}
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
        text = "*No tutorial notebooks yet.*\n"
    toc = dst_dir / "_toctree.inc"
    if not toc.exists() or toc.read_text() != text:
        toc.write_text(text)
        app.config._dice_tutorials_changed = True  # read by _reread_all_on_new_toc


def _reread_all_on_new_toc(app, env, added, changed, removed):
    """A tutorial added or removed changes every page's navigation: re-read (and rewrite) them all."""
    if getattr(app.config, "_dice_tutorials_changed", False):
        return sorted(env.found_docs)
    return []


# -- Docstrings: prose "Returns" sections -------------------------------------------------------
_HEADER_RULE = re.compile(r"^\s*-{3,}\s*$")


def _prose_returns_to_field(app, what, name, obj, options, lines) -> None:
    """Make a numpy "Returns" section written as prose readable by napoleon (runs before napoleon).

    The package's docstrings describe return values in sentences (``Returns / ------- / The matplotlib
    Axes.``) with the type in the annotation. Napoleon would read every unindented line as a separate
    "type" entry (and split lines at ``" : "``), which garbles the page. A section counts as typed, and is
    left to napoleon, when its first line is followed directly by an indented description.
    """
    i = 0
    while i + 1 < len(lines):
        if lines[i].strip() in ("Returns", "Return") and _HEADER_RULE.match(lines[i + 1]):
            base = len(lines[i]) - len(lines[i].lstrip())
            start = i + 2
            end = start
            while end < len(lines):
                if end + 1 < len(lines) and lines[end].strip() and _HEADER_RULE.match(lines[end + 1]):
                    break  # the next section's header
                end += 1
            body = lines[start:end]
            while body and not body[-1].strip():
                body.pop()
            content = [line for line in body if line.strip()]
            if not content:
                i = end
                continue
            first = next(k for k, line in enumerate(body) if line.strip())
            typed = (
                first + 1 < len(body)
                and body[first + 1].strip()
                and len(body[first + 1]) - len(body[first + 1].lstrip()) > base
                and not body[first].rstrip().endswith((".", ":"))
            )
            if typed:
                i = end
                continue
            # An untyped numpy entry: a bare ":" (no name, no type) with the prose indented below it;
            # napoleon turns it into ":returns: <prose>" and the annotation supplies the return type.
            entry = [" " * base + ":"] + ["    " + line if line.strip() else "" for line in body]
            lines[start:end] = [*entry, ""]
            i = start + len(entry) + 1
        else:
            i += 1


# -- Docstrings: constants re-exported from private modules ---------------------------------------
def _constant_doc(app, what, name, obj, options, lines) -> None:
    """Use a constant's ``#:`` comment from the private module that defines it.

    ``dice.metrics.EVALUATE_KEYS`` is defined (and documented with ``#:``) in ``dice.metrics._evaluate``;
    autodoc only looks for the comment in ``dice/metrics/__init__.py`` and falls back to the docstring of
    the value's type ("Built-in immutable sequence."), which says nothing about the constant.
    """
    if what not in ("data", "attribute") or getattr(obj, "__doc__", None) != type(obj).__doc__:
        return
    package_name, _, attr = name.rpartition(".")
    package = sys.modules.get(package_name)
    doc: list[str] = []
    for info in pkgutil.iter_modules(getattr(package, "__path__", [])):
        try:
            attr_docs = ModuleAnalyzer.for_module(f"{package_name}.{info.name}").find_attr_docs()
        except Exception:  # unparsable or unimportable submodule: nothing to take from it
            continue
        if ("", attr) in attr_docs:
            doc = list(attr_docs[("", attr)])
            break
    lines[:] = doc


# -- API page: one member table per namespace, straight from its __all__ -------------------------
class NamespaceMembers(SphinxDirective):
    """``.. dice-namespace-members:: dice.tl`` -> an autosummary table of ``dice.tl.__all__``.

    The member pages themselves are generated by the module template (generated/<module>.rst), so the
    table only links to them. The module's ``__init__`` is recorded as a dependency: changing
    ``__all__`` re-reads the page.
    """

    required_arguments = 1
    has_content = False

    def run(self):
        modname = self.arguments[0]
        module = importlib.import_module(modname)
        self.env.note_dependency(module.__file__)
        names = list(getattr(module, "__all__", []))
        rst = [".. autosummary::", "   :nosignatures:", ""] + [f"   {modname}.{n}" for n in names]
        container = nodes.container()
        self.state.nested_parse(StringList(rst, source=f"<{modname}.__all__>"), self.content_offset, container)
        return container.children


def setup(app):
    app.connect("builder-inited", _sync_tutorials)
    app.connect("env-get-outdated", _reread_all_on_new_toc)
    app.connect("autodoc-process-docstring", _prose_returns_to_field, priority=400)  # napoleon: 500
    app.connect("autodoc-process-docstring", _constant_doc)
    app.add_directive("dice-namespace-members", NamespaceMembers)
