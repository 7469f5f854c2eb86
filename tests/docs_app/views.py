"""docs/api.rst's examples: "Example" (snippet ``api-example``, its
``fetch_json`` and ``WeatherView``, calling the test's local upstream
instead of ``https://api.example.org/weather``), and the 0.9 spelling
(snippet ``api-0.9-spelling``, the body of LegacyView's ``__call__``, with
the reader's ``my_slow_function``). configure.zcml registers both.

Runs on: a Zope worker thread (the views); fetch_json and
my_slow_function on the side pool.
"""

from Products.Five.browser import BrowserView

from . import local_upstream, method_from_body, run_snippet


#: The page, and the upstream its example shows.
API = "docs/api.rst"
API_UPSTREAM = "https://api.example.org/weather"

run_snippet(API, "api-example", globals(),
            replace=(API_UPSTREAM, local_upstream() + "/weather"))


def my_slow_function(arg, kwarg):
    """The 0.9 example's slow function: says how it was called."""
    return f"my_slow_function({arg!r}, kwarg={kwarg!r})"


class LegacyView(BrowserView):
    """The 0.9 spelling, as written, in a view (its ``futures`` is the
    one the page's first example imports)."""

    __call__ = method_from_body(API, "api-0.9-spelling", globals())
