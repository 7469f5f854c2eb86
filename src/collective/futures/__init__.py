"""collective.futures: give Zope's worker thread back while slow work runs,
and answer on the same request.

``from collective import futures`` and call ``futures.submit`` /
``futures.result`` / ``futures.resultOrSubmit`` from a view; see README.rst.
"""

from .api import cancel, clear, reset, result, resultOrSubmit
from .api import result_or_submit, submit
from .stream import AsyncWorkerStreamIterator, StreamResult
from .exceptions import (
    ConfigurationError,
    FutureAlreadyResolvedError,
    FutureCancelledError,
    FutureNotResolvedError,
    FutureNotSubmittedError,
    FuturesException,
    FutureTimeoutError,
    NoRequestError,
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
]
