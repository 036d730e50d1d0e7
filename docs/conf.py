"""Sphinx configuration for skdynamo.

Light mode (default, what CI builds): gallery examples are listed but not executed, so
the build takes seconds. ``SKDYNAMO_DOCS_GALLERY=1`` runs every example and renders its
figures and thumbnails (several minutes on a CPU).
"""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))
os.environ.setdefault("MPLBACKEND", "Agg")

import skdynamo  # noqa: E402

project = "skdynamo"
author = "skdynamo developers"
copyright = "2026, skdynamo developers"
release = skdynamo.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints", "auto_examples/*.md5",
                    "auto_examples/*.py", "auto_examples/*.ipynb", "auto_examples/*.zip"]
templates_path = ["_templates"]
suppress_warnings = ["myst.header"]

autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# numpydoc validation of every docstring in the API reference: all checks, except
#   SA01 (See Also): cross-references are in the user guide pages and the summaries link
#        to related objects where it helps; a See Also section on every method is noise;
#   EX01 (Examples): runnable examples are given where they are cheap (tools and small
#        modules); most methods train a meta-model, and an example that trains is slow
#        as a doctest and unreadable as an excerpt: the gallery shows them instead;
#   ES01 (extended summary): one line is enough for many functions and methods;
#   RT02 (type only on a Returns line): scikit-learn names its return values
#        (``self : object``, ``embeddings : ndarray``), so the description can refer
#        to them; we follow it.
# Members inherited from scikit-learn or torch.nn.Module are not listed on our pages
# (docs/_templates/autosummary/class.rst), so they are not validated here.
# ``tools/check_public_api.py`` checks what this does not: every public callable of the
# package, listed here or not, has a docstring with Parameters/Returns and annotations.
numpydoc_validation_checks = {"all", "SA01", "EX01", "ES01", "RT02"}
numpydoc_validation_exclude = {
    # The methods of the model-family protocol are developer API, documented in prose by
    # ModelFamily (families/_base.py) and docs/developers.md; subclasses override them
    # without repeating the docstring. The family classes themselves are validated.
    r"^skdynamo\.families\.\w*Family\.\w+$",
}

html_theme = "pydata_sphinx_theme"
html_static_path = ["_static"]
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}
html_title = f"skdynamo {release}"

_run_gallery = os.environ.get("SKDYNAMO_DOCS_GALLERY", "0") not in ("", "0")
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "plot_gallery": _run_gallery,
    "download_all_examples": False,
    "within_subsection_order": "FileNameSortKey",
    "reset_modules": ("matplotlib",),
}
