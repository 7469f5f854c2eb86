"""A round: the promises one pass submitted, run concurrently outside the
worker, with one deadline.

Runs on: created and started by the thread that ends a pass (a Zope worker);
settled by side-pool threads (a promise finished), the deadline thread (time
is up), the server's main loop (the client hung up) or the shutdown thread
(refused). Whichever settles the
last promise calls ``on_done`` once, outside the lock.
"""

import dataclasses
import logging
import threading
import time

from zope.interface import implementer

from ..exceptions import (
    ExecutorFullError, FutureAbortedError, FutureCancelledError, FutureTimeoutError)
from ..interfaces import IDetachedJob
from .promise import NO_FALLBACK, Outcome


logger = logging.getLogger("collective.futures")


@implementer(IDetachedJob)
class Round:
    """See IDetachedJob (the channel detaches a suspended request on its
    round). Runs ``promises`` (key -> Promise): ``submit(promise)`` starts one and
    returns its ``concurrent.futures.Future``.

    ``schedule(when, callback)`` arranges a call at monotonic time ``when``
    and returns something with ``cancel()``; ``deadline`` is that time.
    ``on_done(outcomes)`` receives key -> :class:`Outcome` exactly once.
    ``interrupt(promise, future)`` stops running work where the executor
    can (processes); ``metrics`` (see metrics.Metrics) is told what
    happened to each promise. ``on_settled(key, outcome)``, when given, is
    called once for each promise as it settles (a fragment is filled as
    soon as its own result is in), outside the lock, on the settling
    thread; a promise settled by one thread may be announced after the
    round's last one made another thread call ``on_done``.
    """

    def __init__(self, promises, submit, schedule, deadline, timeout,
                 on_done=None, interrupt=None, metrics=None, clock=time.monotonic,
                 on_settled=None, degrade=False):
        self.promises = dict(promises)
        #: A full executor fails only the promise it refused (a fragment
        #: falls back) instead of refusing the request (a 503).
        self.degrade = degrade
        self.on_settled = on_settled
        self.submit = submit
        self.interrupt = interrupt
        self.metrics = metrics
        self.clock = clock
        self.started = clock()
        self.schedule = schedule
        self.deadline = deadline
        self.timeout = timeout
        self.on_done = on_done
        self.outcomes = {}
        self.abandoned = 0
        self.interrupted = 0
        #: Why the request is refused (a 503) instead of rendered, or None.
        self.refusal = None
        # Guards outcomes/_futures/_finished: settled from several threads.
        self._lock = threading.Lock()
        self._futures = {}
        self._finished = False
        #: Set (under _lock) once the round is over and its timer cancelled.
        self._over = False
        # Made only by wait() (rounds waited for inline): thousands of
        # suspended requests hold a round each, and every object they hold
        # is work for the garbage collector.
        self._done = None
        self._timer = None

    @property
    def done(self):
        return self._over

    def start(self):
        """Submit every promise and arm the deadline. Returns self.

        A promise without ``on_error`` that a full executor refuses
        (ExecutorFullError: the request's admission saw room, another
        request took it meanwhile) makes the request a 503, as the
        admission would have: the round is refused, its other promises
        dropped, and ``refusal`` says why."""
        self._timer = self.schedule(self.deadline, self.expire)
        full = None
        for key, promise in self.promises.items():
            if self.metrics is not None:
                self.metrics.promise_submitted(promise.executor)
            try:
                future = self.submit(promise)
            except Exception as exc:  # executor full, shut down, refusing
                if (isinstance(exc, ExecutorFullError) and not self.degrade
                        and promise.on_error is NO_FALLBACK):
                    full = (f"the {promise.executor or 'default'} executor's queue "
                            f"is full (max_queue)")
                    with self._lock:
                        # Before the outcome: whoever the round's end
                        # wakes reads the refusal.
                        if not self._finished and self.refusal is None:
                            self.refusal = full
                    self._settle(key, Outcome(error=exc))
                    break
                self._settle(key, Outcome(error=exc))
                continue
            with self._lock:
                late = self._finished
                if not late:
                    self._futures[key] = future
            if late:
                # Ended while submitting (deadline, hang-up): drop it. Outside
                # the lock: cancel() runs the future's callbacks.
                if not promise.shared:  # others may be waiting on it
                    future.cancel()
                continue
            future.add_done_callback(
                lambda f, key=key: self._future_done(key, f))
        if full is not None:
            self.refuse(full)  # the rest: not submitted, or dropped
        if not self.promises:
            self._finish()
        return self

    def _future_done(self, key, future):
        if future.cancelled():
            # Cancelled by this round (then already settled: a no-op), or
            # by the promise itself (a coroutine raising CancelledError):
            # that is its outcome, now, not a timeout later.
            self._settle(key, Outcome(error=FutureCancelledError(
                f"promise {key!r} was cancelled")))
            return
        error = future.exception()
        if error is not None and not isinstance(error, Exception):
            # Re-raised by result() in the next pass, a BaseException would
            # escape every handler up to the server and leave the request
            # unanswered: it becomes this promise's failure.
            aborted = FutureAbortedError(
                f"promise {key!r} raised {type(error).__name__}: {error}")
            aborted.__cause__ = error
            error = aborted
        outcome = Outcome(error=error) if error is not None else Outcome(
            value=future.result())
        self._settle(key, outcome)

    def _stamp(self, key, outcome):
        """The outcome with where it ran and how long it took; counted."""
        promise = self.promises[key]
        seconds = self.clock() - self.started
        if self.metrics is not None:
            self.metrics.promise_settled(promise.executor, promise.name,
                                         outcome.kind, seconds)
        return dataclasses.replace(outcome, executor=promise.executor,
                                   seconds=seconds, fallback=promise.on_error)

    def _settle(self, key, outcome):
        with self._lock:
            if self._finished or key in self.outcomes:
                return
            self.outcomes[key] = outcome = self._stamp(key, outcome)
            complete = len(self.outcomes) == len(self.promises)
        self._announce([(key, outcome)])
        if complete:
            self._finish()

    def _settle_rest(self, make_error, refusal=None):
        """Settle every unsettled promise with an error; cancel its work:
        queued work is dropped, asyncio tasks are cancelled, processes are
        stopped, thread work is abandoned (and counted). ``refusal`` is
        recorded if, and only if, a promise was still unsettled."""
        unsettled, settled = [], []
        with self._lock:
            if self._finished:
                return
            if refusal is not None and len(self.outcomes) < len(self.promises):
                self.refusal = refusal
            for key, promise in self.promises.items():
                if key in self.outcomes:
                    continue
                self.outcomes[key] = outcome = self._stamp(
                    key, Outcome(error=make_error(key)))
                settled.append((key, outcome))
                future = self._futures.get(key)
                if future is not None and not promise.shared:
                    unsettled.append((promise, future))
                # A shared execution goes on for the other requests.
        # Outside the lock: cancel() runs the futures' callbacks, and
        # interrupt() may take the executor's locks.
        abandoned = interrupted = 0
        for promise, future in unsettled:
            if future.cancel() or future.done():
                continue
            if self.interrupt is not None and self.interrupt(promise, future):
                interrupted += 1
            else:
                # Running in a thread: it cannot be interrupted. It keeps its
                # pool thread until it returns; its result is ignored.
                abandoned += 1
        self.abandoned += abandoned
        self.interrupted += interrupted
        if self.metrics is not None:
            self.metrics.work_stopped(abandoned, interrupted)
        self._announce(settled)
        self._finish()

    def _announce(self, settled):
        if self.on_settled is None:
            return
        for key, outcome in settled:
            try:
                self.on_settled(key, outcome)
            except Exception:
                logger.exception("round callback for promise %r failed", key)

    def expire(self):
        """The deadline passed: unfinished promises time out."""
        self._settle_rest(lambda key: FutureTimeoutError(
            f"promise {key!r} did not finish within {self.timeout:g} s"))

    def cancel(self, reason="cancelled"):
        """Drop the round now (client gone)."""
        self._settle_rest(
            lambda key: FutureCancelledError(f"promise {key!r}: {reason}"))

    def refuse(self, reason):
        """The server is stopping: drop the round now; ``refusal`` tells
        the completion that the request gets a 503, not its next pass. A
        round whose promises have all settled is left as it ended (its pass
        renders)."""
        self._settle_rest(
            lambda key: FutureCancelledError(f"promise {key!r}: {reason}"),
            refusal=reason)

    def _finish(self):
        with self._lock:
            if self._finished:
                return
            self._finished = True
            outcomes = dict(self.outcomes)
        if self._timer is not None:
            self._timer.cancel()
        if self.abandoned or self.interrupted:
            logger.warning(
                "promise(s) still running when the round ended: %d abandoned "
                "(threads cannot be interrupted), %d stopped: %s",
                self.abandoned, self.interrupted,
                ", ".join(k for k, f in self._futures.items() if f.running()))
        with self._lock:
            self._over = True
            event = self._done
            # Nothing reads them once the round is over, and each future
            # keeps its done-callback, which points back at the round.
            self._futures = {}
        if event is not None:
            event.set()
        # Called once; dropped, as it usually holds what holds the round.
        on_done, self.on_done = self.on_done, None
        if on_done is not None:
            try:
                on_done(outcomes)
            except Exception:
                logger.exception("round completion callback failed")

    def wait(self, timeout):
        """Block until done, at most ``timeout`` seconds; True when done."""
        with self._lock:
            if self._over:
                return True
            if self._done is None:
                self._done = threading.Event()
            event = self._done
        return event.wait(timeout)
