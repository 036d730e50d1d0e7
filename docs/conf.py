"""Sphinx configuration for skdynamo.

``SKDYNAMO_DOCS_GALLERY`` chooses which gallery examples are executed:

- unset or ``0`` (light mode): examples are listed but not executed; the build takes
  under a minute.
- ``1``: every example runs and renders its figures and thumbnails (before a release;
  docs/developers.md, release checklist).
- a regular expression, e.g. ``plot_quickstart|plot_twins`` (what CI builds): the examples
  whose file name matches run, the others are listed.

Why CI runs only a subset: every one of the eight examples trains a meta-model (40-100
epochs on 12-36 networks, 1-3 fits each, about 11 fits in all), and most first train or
load a model zoo, which is well over ten minutes on a 2-core CI machine. The quickstart
and the twins example (one zoo of 8 or 6 networks, one fit each; about 100 s each at one
torch thread on a loaded 2-core machine) cover the first thing a user runs and the
invariance the method is built on; the other examples' code paths are covered by the tests
(same estimators, tiny populations).
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
# Page titles are one or two words (the heading's longer phrase is the page's first line),
# so the top bar holds every page on one line without wrapping; the rest go to "More".
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2,
                      "header_links_before_dropdown": 7}
html_title = f"skdynamo {release}"

_gallery = os.environ.get("SKDYNAMO_DOCS_GALLERY", "0").strip()
_run_gallery = _gallery not in ("", "0")
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    # Executed examples: all of them with "1", those whose file name matches otherwise.
    "filename_pattern": r"/plot_" if _gallery in ("", "0", "1") else rf"/({_gallery})\.py",
    "plot_gallery": _run_gallery,
    "download_all_examples": False,
    "within_subsection_order": "FileNameSortKey",
    "reset_modules": ("matplotlib",),
}
