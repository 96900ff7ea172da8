"""Sphinx configuration of the randperc_plugins documentation (`make docs`)."""
import importlib
import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import randperc_plugins  # noqa: E402

project = "randperc_plugins"
author = "randperc_plugins contributors"
copyright = "randperc_plugins contributors, Apache-2.0"
release = randperc_plugins.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "requirements.txt"]

# MyST: `#heading` anchors for links within and between pages, GitHub-style.
myst_heading_anchors = 4
# $...$ and $$...$$ maths (rendered by MathJax), as GitHub renders it.
myst_enable_extensions = ["dollarmath"]

# autodoc: members in source order, with the signatures' type hints in the description.
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "furo"
html_title = f"randperc_plugins {release}"


# The API reference documents each framework adapter by importing it, which imports its framework.
# Where a framework is not installed (detectron2 is not on PyPI), the page says so instead of failing
# the build; the adapter's docstrings are in its source file.
ADAPTERS = ["randperc_plugins.mmseg", "randperc_plugins.mmagic", "randperc_plugins.mmdet",
            "randperc_plugins.openmmlab", "randperc_plugins.detectron2"]


def _missing_adapters(app, docname, source):
    if docname != "api":
        return
    for module in ADAPTERS:
        try:
            importlib.import_module(module)
        except ImportError as error:
            path = module.replace(".", "/") + ".py"
            source[0] = source[0].replace(
                f".. automodule:: {module}\n",
                f".. note:: ``{module}`` could not be imported where this page was built "
                f"({error}); its reference is the docstrings of ``{path}``.\n")


def setup(app):
    app.connect("source-read", _missing_adapters)
