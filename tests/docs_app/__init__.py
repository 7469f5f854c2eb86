"""The manual's Python examples (docs/*.rst), run as they are written in a
real Zope: loaded only by tests/test_docs_examples.py.

Each module runs snippets of one page at import, in its own namespace, so
that configure.zcml (and the page's ZCML, which the test writes into the
instance and includes with this package as its package) finds what they
define: ``.views.WeatherView``, ``.streams.ExportView``,
``.feeds.fetch_feed``. The only change to a page's code is an upstream's
address, replaced by the test's local HTTP server, whose URL the test
passes in the environment variable named by UPSTREAM_VARIABLE.

Runs on: the Zope process's main thread, at ZCML loading (the imports).
"""

import os
import textwrap

from doc_snippets import snippet, substituted


#: The environment variable holding the test's local upstream (its
#: ``http://127.0.0.1:PORT``, no trailing slash).
UPSTREAM_VARIABLE = "DOCS_EXAMPLES_UPSTREAM"


def local_upstream():
    """The test's local upstream's URL, from the environment."""
    try:
        return os.environ[UPSTREAM_VARIABLE]
    except KeyError:
        raise RuntimeError(
            f"docs_app needs {UPSTREAM_VARIABLE}: the URL of the local "
            f"upstream that tests/test_docs_examples.py starts") from None


def run_snippet(source, name, namespace, replace=None):
    """Run the snippet ``name`` of ``source`` (``docs/api.rst``) in
    ``namespace`` (a module's globals), with ``replace`` (old, new)
    applied first if given."""
    code = snippet(source, name)
    if replace is not None:
        code = substituted(code, *replace)
    exec(compile(code, f"{source} (snippet {name})", "exec"), namespace)


def method_from_body(source, name, namespace):
    """A method ``(self)`` whose body is the snippet ``name`` of ``source``,
    for a snippet that is a method's body (it returns), its globals
    ``namespace``."""
    code = "def method(self):\n" + textwrap.indent(snippet(source, name), "    ")
    local = {}
    exec(compile(code, f"{source} (snippet {name}, as a method's body)", "exec"),
         namespace, local)
    return local["method"]
