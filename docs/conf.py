"""Sphinx configuration of the collective.futures manual.

Built by ``./scripts/docs``: HTML with warnings as errors, then the
doctest-checked examples (``.. doctest::`` blocks).
"""

import doctest
import pathlib
import sys
from importlib.metadata import version as _version


# The futures-options directive (the options, from settings.OPTIONS) and
# the benchmark chapter's figures (from benchmark.json).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "_ext"))

project = "collective.futures"
author = "collective.futures contributors"
copyright = "collective.futures contributors"
release = _version("collective.futures")
version = ".".join(release.split(".")[:2])

extensions = ["sphinx.ext.doctest", "futures_options", "benchmark_figures"]
root_doc = "index"
exclude_patterns = ["_build"]
language = "en"

# Doctests compare exception messages too: Sphinx's default flags would
# ignore them (IGNORE_EXCEPTION_DETAIL), and the messages are the point of
# several examples.
doctest_default_flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

html_theme = "alabaster"
html_title = f"collective.futures {release}"
html_theme_options = {
    "description": "Give Zope's worker thread back while slow work runs",
    "fixed_sidebar": True,
    "sidebar_width": "260px",
    "page_width": "1100px",
}
