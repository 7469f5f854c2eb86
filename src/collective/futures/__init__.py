"""collective.futures: give Zope's worker thread back while slow work runs,
and answer on the same request.

``from collective import futures`` and call ``futures.submit`` /
``futures.result`` / ``futures.resultOrSubmit`` from a view; see the
manual in docs/.

The public API is what this module exports; everything else is the
package's own: ``core/`` (pure Python), ``executors/`` (the side pools),
``zope/`` (the publisher glue, the sandbox, startup, the views) and
``server/`` (the waitress glue).
"""

from .api import cancel, clear, reset, result, resultOrSubmit
from .api import resultOrSubmitMultiprocess, result_or_submit, submit
from .api import submitMultiprocess
from .core.promise import promise
from .stream import AsyncWorkerStreamIterator, StreamResult
from .exceptions import (
    ConfigurationError,
    ExecutorFullError,
    FutureAlreadyResolvedError,
    FutureCancelledError,
    FutureNotResolvedError,
    FutureNotSubmittedError,
    FuturesException,
    FutureTimeoutError,
    NoRequestError,
    WorkerProcessDiedError,
    ReplayImpossibleError,
    TooManyPassesError,
)


__all__ = [
    "submit",
    "result",
    "resultOrSubmit",
    "result_or_submit",
    "cancel",
    "clear",
    "reset",
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
    "TooManyPassesError",
    "NoRequestError",
    "ReplayImpossibleError",
    "ConfigurationError",
    "ExecutorFullError",
    "WorkerProcessDiedError",
]
