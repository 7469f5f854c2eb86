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
    fragments = Attribute(
        "key -> Fragment (core.fragments) submitted by the current pass")
    held = Attribute(
        "key -> Promise of the fragments whose holes the page will fill "
        "once it is committed (a one-pass page)")
    progressive = Attribute(
        "True or False when the page asked for (no) progressive delivery; "
        "None: the site's setting")
    mixed = Attribute(
        "Keys of fragments that ran in a round with ordinary promises (so "
        "the page took another pass)")

    def begin_pass():
        """A pass starts (or is retried): forget what was submitted."""

    def take_pending():
        """Hand this pass's promises (key -> Promise) to a round; counts
        the round."""

    def only_fragments():
        """True if the current pass submitted promises, all fragments'."""

    def hold_fragments():
        """Move the current pass's promises (all fragments') to ``held``;
        returns them."""

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


class IHandedOff(Interface):
    """A response body the server takes over from the worker
    (``StreamHandoff``) and writes with a stream job: an
    ``AsyncWorkerStreamIterator``, or a one-pass page filling its
    fragments' holes. Called by the job, from the threads it runs on."""

    name = Attribute("What the logs call it")
    deadline = Attribute(
        "Seconds from the hand-off to a 504 when ``start_work``'s future "
        "is not done; None: the ``timeout`` setting")

    def start_work(runtime):
        """Start computing the body; return a ``concurrent.futures.Future``
        whose result ``prepare`` turns into the response. Never blocks."""

    def stop_work(runtime, future):
        """The client is gone, the deadline passed or the server refuses:
        drop or stop what ``start_work`` started. ``future`` may be None."""

    def prepare(result, view_status, view_headers):
        """``start_work``'s result as a ``core.body.Prepared``."""

    def fallback(reason):
        """What to send instead when the job is refused (a bound, the
        shutdown) or late (``deadline``), as a result for ``prepare``; or
        None for the job's 503 or 504."""

    def finished(runtime, task, outcome, sent, seconds):
        """The response is over (``outcome`` as the stream metrics count
        it, ``sent`` body bytes): count it and write the request's log
        line."""


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
    renderer = Attribute(
        "None, or the function that turns its result into HTML (then "
        "templates may submit it as a fragment)")


# Background tasks (collective.futures.tasks)

class IPeriodicTask(Interface):
    """A periodic background task declared with ``<futures:periodic>``
    (a named utility; ``task_periodic.NAME`` in zope.conf overrides it
    or, with ``off``, switches it off)."""

    name = Attribute("The name (the same on every instance)")
    schedule = Attribute("When it fires (tasks.schedule.Schedule)")
    path = Attribute("The path requested, from the root, with its query")
    queue = Attribute("The queue (None: the first of task_queues)")


#: A task's states. ``prepared``: written by a transaction that has voted
#: but not finished (invisible to consumers); ``queued``: waiting for its
#: ``eta``; ``running``: leased by a consumer until ``lease_until``;
#: ``done``; ``dead``: out of attempts, failed for good, or in doubt (see
#: ITaskBackend.recover). ``failed`` is not stored: a failure that will be
#: retried puts the task back to ``queued`` with its error.
TASK_STATES = ("prepared", "queued", "running", "done", "dead")


class ITaskBackend(Interface):
    """Where tasks wait between the transaction that queued them and the
    consumer that runs them: durable, shared by the instances that use
    the same backend, safe to call from any thread.

    A task is a mapping of plain data (collective.futures.tasks.model):
    ``id``, ``queue``, ``method``, ``path``, ``headers``, ``payload``
    (bytes), ``user``, ``created``, ``eta``, ``attempts`` (deliveries so
    far), ``max_attempts``, ``backoff``, ``dedup``; what a backend returns
    also has ``state``, ``lease_until``, ``consumer``, ``last_error`` and
    ``finished``.

    Delivery is at least once: a task is leased to one consumer at a time
    for ``lease_seconds``; a consumer that dies (or overruns its lease
    without ``extend``) loses it, and the next ``lease`` delivers the task
    again. Every operation on a leased task names its lease
    (``(task id, lease id)``, what ``lease`` returned) and answers False,
    changing nothing, when that lease was lost. Times are seconds since
    the epoch; ``now`` (default: the current time) lets tests drive the
    clock. Backends raise ``TaskQueueUnavailableError`` when they cannot
    be reached or written.

    The contract test suite (tests/test_tasks_backends.py) runs every
    backend through these sentences.
    """

    def prepare(tasks, token, now=None):
        """Store ``tasks`` (a list of task mappings, all new ids) as
        ``prepared`` (at ``now``) under the transaction ``token`` (a str), durably:
        when this returns, they survive a crash of this process.
        Invisible to ``lease``. A task whose ``dedup`` key is the key of
        a task of the same queue that is prepared, queued or running is
        not stored (nor is a task whose key an earlier task of the same
        call took); neither is a task whose id is already stored,
        whatever its state (a periodic task's slot, added by every
        instance). Returns the ids as stored, in order: the existing
        task's id in place of each such one. Raises
        ``TaskQueueUnavailableError`` and stores none of them when any
        cannot be stored."""

    def find(queue, dedup):
        """The id of the task of ``queue`` whose ``dedup`` key is
        ``dedup`` and that is prepared, queued or running; or None."""

    def confirm(token):
        """The transaction ``token`` committed: its prepared tasks become
        ``queued``. Idempotent. Returns how many changed."""

    def discard(token):
        """The transaction ``token`` aborted: its prepared tasks are
        removed. Idempotent. Returns how many."""

    def lease(queue, consumer, limit, lease_seconds, now=None):
        """Up to ``limit`` tasks of ``queue`` for ``consumer`` (a str
        naming it), each leased until ``now + lease_seconds``: queued ones
        whose ``eta`` has come, earliest ``eta`` first, and running ones
        whose lease has expired (delivered again). Each one's
        ``attempts`` grows by one. Returns ``[(lease, task), ...]``, the
        task as stored after the change. Two consumers (threads or
        processes) never hold the same task's lease at once."""

    def holds(lease):
        """True if ``lease`` is the current lease of its running task (the
        check that a task's request comes from its current delivery)."""

    def extend(lease, lease_seconds, now=None):
        """The task of ``lease`` is still being worked on: its lease runs
        until ``now + lease_seconds``. False if the lease was lost."""

    def ack(lease, now=None):
        """The task of ``lease`` is ``done`` (``finished`` = now). False
        if the lease was lost (another delivery owns the task now)."""

    def retry(lease, error, eta):
        """The task of ``lease`` failed with ``error`` (a str) and is to
        run again at ``eta``: ``queued`` with ``last_error``. False if the
        lease was lost."""

    def bury(lease, error, now=None):
        """The task of ``lease`` failed for good: ``dead`` with
        ``last_error`` = ``error`` and ``finished`` = now. False if the
        lease was lost."""

    def status(task_id):
        """The task ``task_id`` as stored (a mapping), or None."""

    def stats(queue, now=None):
        """Figures of ``queue``: a mapping with the count of tasks in each
        state of TASK_STATES (``queued`` split into ``queued``, whose eta
        has come, and ``scheduled``, whose eta is later), and
        ``oldest_queued_age``: seconds the longest-waiting due task has
        waited since its eta (0.0 when none)."""

    def queues():
        """The names of the queues holding tasks, sorted."""

    def dead_letters(queue, limit=100):
        """The dead tasks of ``queue``, most recently finished first, at
        most ``limit``."""

    def requeue(task_id, now=None):
        """A dead task runs again: ``queued`` at ``now``, its attempts
        back to 0, its last error kept. False if it is not dead."""

    def delete(task_id):
        """A dead or done task is removed. False if it is neither."""

    def next_eta(queue):
        """The earliest time ``lease`` could return a task of ``queue``:
        the earliest ``eta`` of its queued tasks or ``lease_until`` of its
        running ones; None when it has neither."""

    def recover(older_than, now=None):
        """Tasks prepared more than ``older_than`` seconds before ``now``
        and still not confirmed nor discarded are in doubt:
        the process that prepared them ended (or failed) between its
        transaction's vote and its confirmation, so whether that
        transaction committed is not known here. They become ``dead``
        with a ``last_error`` that says so (an operator requeues them if
        the work was committed), never run silently nor dropped. Returns
        how many."""

    def purge(older_than, now=None, dead_older_than=None):
        """Done tasks finished more than ``older_than`` seconds ago are
        removed, and dead ones buried more than ``dead_older_than``
        seconds ago (None: dead tasks are kept). Returns how many."""

    def secret():
        """A random secret (64 hexadecimal characters) made on the first
        call and kept: every process using this backend gets the same
        one (it signs task requests when the configuration names none)."""

    def close():
        """Release connections. Idempotent."""
