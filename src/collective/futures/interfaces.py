"""The contracts between the parts of collective.futures.

What one part may expect of another is written here, once: the WSGI
environ keys the server glue and the publisher glue share, the control-flow
exceptions that carry a request from the publisher to the server, and the
interfaces of the objects that cross thread boundaries. Implementations say
"See IFoo" and the unit tests start with ``verifyObject``.

Module roles and threads are in docs/design.rst (the theory of operation).
"""

from zope.interface import Attribute, Interface


# WSGI environ keys

#: The :class:`IRequestFutures` of a client request, in the environ the
#: server gives the application: set by the server for a resumed pass
#: (suspend mode), or by the API in the request's ``_orig_env`` for
#: ``request.retry()`` (wait mode). At ``IPubStart`` the publisher glue
#: moves it to the request (:data:`STATE_ATTRIBUTE`) and removes it from
#: ``request.environ``, which restricted code can read and change.
STATE_KEY = "collective.futures.state"

#: Where the publisher keeps a request's :class:`IRequestFutures` while it
#: is published: an attribute restricted code cannot name (underscore).
STATE_ATTRIBUTE = "_collective_futures_state"

#: Set by a server that can suspend a request between passes (the waitress
#: task); its value names the server. Without it a pass waits and replays.
SUSPEND_KEY = "collective.futures.suspend"

#: Set by a server that can take a stream over from the worker (the
#: waitress task): the code object of the one frame allowed to receive
#: :class:`StreamHandoff` from the stream's first ``__next__``. A stream
#: iterated by any other frame (a wrapping middleware) runs inline.
HANDOFF_KEY = "collective.futures.handoff"


# Control flow between the publisher and the server: not errors.
# BaseExceptions, so that ZPublisher's and the WSGI middleware's ``except
# Exception`` handlers (error views, the error log) let them through to the
# server that asked for them. (Wait mode's ReplayRequest is Zope's own
# kind of control flow, a TransientError: it lives in zope/publisher.py.)

class SuspendRequest(BaseException):
    """This pass is over: the server runs ``state.pending`` with the worker
    freed, then publishes the request again.

    Raised by the publisher glue at ``IPubBeforeCommit`` (after the
    transaction was aborted), before ``start_response``; caught by the
    server's channel around the stock ``service()``.
    """

    def __init__(self, state):
        super().__init__(state)
        #: The request's :class:`IRequestFutures`.
        self.state = state


class RefuseRequest(BaseException):
    """This request is turned away (admission: ``max_suspended``, a full
    executor, the descriptor budget, the shutdown drain): the server
    answers it 503 with ``Retry-After`` itself.

    Raised by the publisher glue at ``IPubBeforeCommit`` (after the
    transaction was aborted), before ``start_response``, so that no error
    view of the site (Plone's renders every exception it sees with a 500)
    and no error log gets it; caught by the server's task.
    """

    def __init__(self, reason):
        super().__init__(reason)
        #: Why, as the 503's body and the log say it.
        self.reason = reason


class StreamHandoff(BaseException):
    """The server takes this stream over: a side thread runs ``fn`` and
    writes its output through the server's task.

    Raised by an ``AsyncWorkerStreamIterator``'s first ``__next__`` when the
    frame iterating it is the one named by :data:`HANDOFF_KEY`; the task
    sets ``task`` on the way out, the channel catches it.
    """

    def __init__(self, stream):
        super().__init__(stream)
        self.stream = stream
        #: The server task the stream writes through; set by the task.
        self.task = None


# Objects that cross threads

class IRequestFutures(Interface):
    """The promises and results of one client request, across passes.

    Used by one thread at a time: the Zope worker during a pass, the thread
    that settles a round between passes (the hand-over is the suspension
    or the wait), so it needs no lock.
    """

    resolved = Attribute("key -> Outcome; survives passes and retries")
    pending = Attribute("key -> Promise submitted by the current pass")
    rounds = Attribute("Rounds run so far")
    passes = Attribute("Passes published so far, the current one included")
    started = Attribute("Monotonic time of the first pass")
    unavailable = Attribute(
        "None, or the reason the next pass must be a 503 instead (set when "
        "a graceful shutdown refuses the suspended request)")

    def begin_pass():
        """A pass starts (or is retried): forget what was submitted."""

    def take_pending():
        """Hand this pass's promises (key -> Promise) to a round; counts
        the round."""

    def record(outcomes):
        """Store a finished round's outcomes (key -> Outcome)."""

    def summary():
        """One line naming each result, for the request log."""


class IDetachedJob(Interface):
    """What a request waits for while no worker holds it: the round of a
    suspended request, or the job of a handed-off stream.

    ``start`` is called once by the worker that detaches the request. The
    job ends by calling the completion it was made with exactly once, from
    whichever thread finishes it; ``cancel`` and ``refuse`` may race with
    that end and with each other, and are then no-ops.
    """

    def start():
        """Start the work (submit promises, arm the deadline). Returns
        the job."""

    def cancel(reason):
        """The client is gone: drop work not started, stop what can be
        stopped, and end the job. Main loop (hang-up) or any thread."""

    def refuse(reason):
        """The server is stopping: end the job so that the client gets a
        503 with Retry-After instead of its response (unless the response
        has started, which then ends with the process). Any thread."""


class IBoundedExecutor(Interface):
    """An executor of the side pools: a ``concurrent.futures.Executor`` with
    bounds the admission check can read.

    The built-in ones are ``threads``, ``processes`` and ``asyncio``
    (``executors/``); a custom ``executor.NAME`` factory may return any
    ``concurrent.futures.Executor``, and what it lacks of this interface is
    treated as unbounded.
    """

    runs_in = Attribute(
        "Where submitted work runs: 'threads' (a thread of this process: "
        "the promise runs in the sandbox), 'processes' (another process: "
        "the call is pickled, once, when submitted) or 'loop' (an asyncio "
        "event loop: the promise may be a coroutine function)")
    capacity = Attribute("Work items that run at once (workers, slots)")
    max_queue = Attribute(
        "Work items that may wait beyond ``capacity``; None: unbounded")
    queued = Attribute("Work items waiting now")
    running = Attribute("Work items running now")

    def submit(fn, *args, **kwargs):
        """Schedule ``fn(*args, **kwargs)``; return a
        ``concurrent.futures.Future``. Never blocks; raises
        ``ExecutorFullError`` past ``max_queue`` and RuntimeError after
        ``shutdown``. Whatever ``fn`` raises, BaseException included, goes
        into the future and never kills a worker."""

    def interrupt(future):
        """Stop the running work of ``future`` if this executor can (a
        process is killed and replaced); True if it did."""

    def shutdown(wait=True, *, cancel_futures=False):
        """Stop accepting work; idempotent; ``wait`` is bounded."""


class INamedPromise(Interface):
    """A function that templates and restricted code may submit by name
    (registered with ``<futures:promise>``)."""

    name = Attribute("The name restricted code uses")
    fn = Attribute("The function (trusted code, registered in ZCML)")
    permission = Attribute("The Zope permission needed to submit it")
    executor = Attribute("The executor it runs on (None: the default)")
    shared = Attribute("Whether concurrent requests share one execution")
    ttl = Attribute("Seconds a shared result is kept")
