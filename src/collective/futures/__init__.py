"""collective.futures: give Zope's worker thread back while slow work runs,
and answer on the same request.

``from collective import futures`` and call ``futures.submit`` /
``futures.result`` / ``futures.resultOrSubmit`` from a view; see the
manual in docs/.

The public API is what this module exports; everything else is the
package's own: ``core/`` (pure Python), ``executors/`` (the side pools),
``sandbox`` (where a promise runs), ``zope/`` (the publisher glue,
startup, the views) and ``server/`` (the waitress glue).
"""

import importlib

from .exceptions import (
    ConfigurationError,
    ExecutorFullError,
    FutureAbortedError,
    FutureAlreadyResolvedError,
    FutureCancelledError,
    FutureNotResolvedError,
    FutureNotSubmittedError,
    FuturesException,
    FutureTimeoutError,
    NoRequestError,
    ReplayImpossibleError,
    TooManyPassesError,
    WorkerProcessDiedError,
)


#: Where the API lives. Loaded on first use (PEP 562), so that importing
#: the pure core (collective.futures.core, .executors) loads no Zope.
_LAZY = {
    **dict.fromkeys(
        ("submit", "result", "resultOrSubmit", "result_or_submit", "cancel",
         "clear", "reset", "submitMultiprocess", "resultOrSubmitMultiprocess",
         "fragment", "progressive"),
        ".api"),
    "promise": ".core.promise",
    "AsyncWorkerStreamIterator": ".stream",
    "StreamResult": ".core.body",
    "Markup": ".core.fragments",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "submit",
    "result",
    "resultOrSubmit",
    "result_or_submit",
    "cancel",
    "clear",
    "reset",
    "fragment",
    "progressive",
    "Markup",
    "promise",
    "submitMultiprocess",
    "resultOrSubmitMultiprocess",
    "AsyncWorkerStreamIterator",
    "StreamResult",
    "FuturesException",
    "FutureNotSubmittedError",
    "FutureNotResolvedError",
    "FutureAlreadyResolvedError",
    "FutureTimeoutError",
    "FutureCancelledError",
    "FutureAbortedError",
    "TooManyPassesError",
    "NoRequestError",
    "ReplayImpossibleError",
    "ConfigurationError",
    "ExecutorFullError",
    "WorkerProcessDiedError",
]
