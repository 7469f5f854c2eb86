"""The README's examples, run as they are written in a real Zope: loaded
only by tests/test_readme_examples.py.

Each module runs one Python snippet of README.rst at import, in its own
namespace, so that the README's ZCML (which the test writes into the
instance and includes with this package as its package) finds what it
names: ``.views.WeatherView``, ``.feeds.fetch_feed``. The only change to
the README's code is its upstream's address, replaced by the test's
local HTTP server, whose URL the test passes in the environment variable
named by UPSTREAM_VARIABLE.

Runs on: the Zope process's main thread, at ZCML loading (the imports).
"""

import os

from doc_snippets import snippet, substituted


#: The environment variable holding the test's local upstream (its
#: ``http://127.0.0.1:PORT``, no trailing slash).
UPSTREAM_VARIABLE = "README_EXAMPLES_UPSTREAM"


def local_upstream():
    """The test's local upstream's URL, from the environment."""
    try:
        return os.environ[UPSTREAM_VARIABLE]
    except KeyError:
        raise RuntimeError(
            f"readme_app needs {UPSTREAM_VARIABLE}: the URL of the local "
            f"upstream that tests/test_readme_examples.py starts") from None


def run_snippet(name, namespace, replace=None):
    """Run the README's snippet ``name`` in ``namespace`` (a module's
    globals), with ``replace`` (old, new) applied first if given."""
    code = snippet("README.rst", name)
    if replace is not None:
        code = substituted(code, *replace)
    exec(compile(code, f"README.rst (snippet {name})", "exec"), namespace)
