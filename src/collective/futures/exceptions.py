"""The collective.futures exception family.

Every error the package raises on purpose derives from
:class:`FuturesException`; each docstring says what the caller should do.
The four names of the 0.9 API keep their meaning.
"""

import concurrent.futures


class FuturesException(Exception):
    """Root of every error collective.futures raises on purpose.

    Catch this to handle any futures problem in one place.
    """


class FutureNotSubmittedError(FuturesException):
    """No promise was submitted for this key, and it has no result.

    Submit one (``futures.submit``) or use ``futures.resultOrSubmit``.
    """


class FutureNotResolvedError(FuturesException):
    """A promise was submitted for this key in this pass; its result is not
    there yet.

    Its result arrives in the next pass: render a placeholder now.
    """


class FutureAlreadyResolvedError(FuturesException):
    """The key already has a result, so it cannot be submitted again.

    Use ``futures.result(key)``, or ``futures.clear(key)`` first when a new
    computation is really wanted.
    """


class FutureTimeoutError(FuturesException, concurrent.futures.TimeoutError):
    """The promise did not finish within its timeout.

    Raised by ``futures.result(key)`` in the next pass. Render a fallback, or
    raise the ``timeout`` setting if the upstream is known to be that slow.
    """


class FutureCancelledError(FuturesException, concurrent.futures.CancelledError):
    """The promise was cancelled before it produced a result (for example
    because the client hung up, or the server is stopping).

    Nothing to do: no response is rendered for a client that is gone.
    """


class FutureAbortedError(FuturesException):
    """The promise raised a BaseException that is not an Exception
    (``SystemExit``, ``KeyboardInterrupt``, ``GeneratorExit``): it is
    reported as this error, with the original as its ``__cause__``, so it
    can stop neither the request nor the server.

    Treat it as the promise's failure; fix the promise.
    """


class TooManyPassesError(FuturesException):
    """The request submitted promises in more passes than ``max_passes``
    allows.

    Submit independent promises in the same pass, or raise ``max_passes``.
    """


class NoRequestError(FuturesException, RuntimeError):
    """A futures function was called outside a request (a script, a side
    thread, a promise itself).

    Futures belong to a request: call them while publishing one.
    """


class ReplayImpossibleError(FuturesException):
    """The server cannot suspend this request, and Zope's retry budget for it
    is used up, so the next pass cannot run.

    Serve with waitress (suspend mode), or raise ``max-conflict-retries`` in
    zope.conf to at least ``max_passes - 1``.
    """


class ConfigurationError(FuturesException, ValueError):
    """A ``<product-config collective.futures>`` key or value is wrong.

    Fix zope.conf: the message names the key.
    """


class ExecutorFullError(FuturesException):
    """The executor's queue bound is reached: the promise was not queued.

    ``result()`` raises this in the next pass: render a fallback, or raise
    the executor's queue and concurrency bounds if the load is expected.
    """


class WorkerProcessDiedError(FuturesException):
    """The worker process running this promise died (``os._exit``, a crash,
    the OOM killer) or was stopped past the deadline.

    Only the promises that process held fail; the pool starts a new process
    for the next ones.
    """


class TaskQueueError(FuturesException):
    """A background task could not be queued as asked (bad arguments to
    ``taskqueue.add``: the message names the argument).

    Fix the call; nothing was queued.
    """


class TaskQueueUnavailableError(TaskQueueError):
    """The task queue's backend could not be reached or written (a locked,
    full or unreadable SQLite file, a Redis that does not answer).

    Raised at the transaction's vote, before anything is committed: the
    transaction fails as a whole and nothing is half-done. Retry later;
    the message names the backend and the cause.
    """


class TaskLeaseLostError(TaskQueueError):
    """This delivery of a background task lost its lease before its
    transaction committed (it ran longer than its consumer waited, or
    its consumer vanished), and the task was delivered again.

    Its work is not committed: the task's current delivery does it, so
    that its effect happens once. Raised at the commit of the task's
    request; nothing to do but look at why the task ran so long.
    """
