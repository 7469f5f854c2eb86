"""AsyncWorkerStreamIterator: stream the output of slow work to the client
without holding a Zope worker thread.

Runs on: created by a view on a Zope worker; bound at ``IPubBeforeCommit``
(worker); then either handed off (waitress: ``fn`` on its executor, its
output pumped on the stream pool or the asyncio loop, see
``server/streaming.py``) or iterated inline by the WSGI server's thread.

A view returns ``AsyncWorkerStreamIterator(fn, request, *args, **kwargs)``.
There is no second pass: the view's transaction commits as usual, and
``fn(*args, **kwargs)`` runs in the side pool. What ``fn`` returns becomes
the body: bytes, str, an iterable of bytes (or str), a binary file object,
or a :class:`StreamResult` wrapping one of those with a status and headers.
"""

import asyncio
import concurrent.futures
import logging
import sys

from zope.interface import implementer
from ZPublisher.Iterators import IUnboundStreamIterator

from .api import make_promise
from .core.body import StreamResult, error_prepared, prepare
from .core.printable import printable
from .core.promise import NO_FALLBACK
from .executors.asyncio import AsyncioExecutor
from .interfaces import HANDOFF_KEY, SUSPEND_KEY, IHandedOff, StreamHandoff
from .runtime import get_runtime
from .sandbox import promise_context


__all__ = ["AsyncWorkerStreamIterator", "StreamResult"]

logger = logging.getLogger("collective.futures")
request_log = logging.getLogger("collective.futures.requests")

def _loop():
    executor = get_runtime().executor_for("asyncio")
    if not isinstance(executor, AsyncioExecutor):
        raise TypeError("fn returned an async iterable but the asyncio "
                        "executor is not collective.futures' own")
    return executor.loop


def _synchronous(prepared):
    """An inline stream's asynchronous output, iterated from this thread one
    chunk at a time on the asyncio executor's loop (this thread waits: it is
    the inline path). The loop is looked up now, so that output that cannot
    be iterated fails before a status is chosen."""
    if not prepared.is_async:
        return prepared
    loop = _loop()
    timeout = get_runtime().settings.timeout
    achunks, aclose = prepared.achunks, prepared.aclose

    def chunks():
        while True:
            future = asyncio.run_coroutine_threadsafe(achunks.__anext__(), loop)
            try:
                # Why wait: this thread writes each chunk; bounded per chunk.
                yield future.result(timeout)
            except StopAsyncIteration:
                return

    def close():
        # Bounded: the generator's finally blocks get 5 s.
        asyncio.run_coroutine_threadsafe(aclose(), loop).result(5)

    prepared.chunks, prepared.close = chunks(), close
    prepared.achunks = prepared.aclose = None
    return prepared


@implementer(IUnboundStreamIterator, IHandedOff)
class AsyncWorkerStreamIterator:
    """Return this from a view to run ``fn(*args, **kwargs)`` outside the
    Zope worker and stream what it returns to the client.

    ``fn`` runs in the side pool with no ZODB connection, no security
    context and no request: pass it plain data. Under waitress the worker
    thread is released as soon as the view returns; elsewhere ``fn`` runs
    while the worker waits (with the same output and errors).
    """

    def __init__(self, fn, request, /, *args, **kwargs):
        environ = getattr(request, "environ", None)
        if not isinstance(environ, dict):
            raise TypeError(
                f"AsyncWorkerStreamIterator(): request must be the Zope "
                f"request (self.request), not {type(request).__name__}")
        # fn may carry options from futures.promise() (an executor).
        self.promise = make_promise(
            "AsyncWorkerStreamIterator", "stream", fn, args, kwargs)
        if self.promise.shared:
            raise TypeError(
                "AsyncWorkerStreamIterator(): a stream cannot be shared (each "
                "client reads its own output); drop shared=True")
        if self.promise.on_error is not NO_FALLBACK:
            raise TypeError(
                "AsyncWorkerStreamIterator(): on_error is for submit() and "
                "resultOrSubmit(); a stream's fn answers its own errors "
                "(a 500 before the first byte, a truncated body after)")
        self.name = self.promise.name
        self.method = environ.get("REQUEST_METHOD", "GET").upper()
        self.suspendable = bool(environ.get(SUSPEND_KEY))
        # The frame of the server's task that may take this stream over.
        self.handoff_frame = environ.get(HANDOFF_KEY)
        self.mode = None          # "head", "handoff" or "inline", once bound
        self.prepared = None      # inline: fn's output
        self.handed_off = False
        self._chunks = None

    def __repr__(self):
        return f"<AsyncWorkerStreamIterator {self.name} mode={self.mode}>"

    def call(self):
        """Run ``fn`` for an inline stream: here (a side thread) for the
        ``threads`` executor, else on its executor, waiting for it (bounded
        by ``timeout``). A handed-off stream submits ``fn`` instead."""
        promise = self.promise
        if promise.executor == "threads":
            with promise_context():
                return promise()
        runtime = get_runtime()
        future = runtime.submit(promise)
        try:
            # Why wait: inline, this thread writes what fn returns (the
            # caller bounds it by `timeout`); the grace bounds this.
            return future.result(runtime.settings.timeout + 5.0)
        except concurrent.futures.TimeoutError:
            if not future.cancel():
                runtime.interrupt(promise, future)
            raise

    def prepare(self, result, view_status, view_headers):
        """What ``fn`` returned, ready to send (core.body.prepare): a
        handed-off stream pumps asynchronous output on the loop itself."""
        return prepare(result, view_status, view_headers)

    # IHandedOff: what the server's stream job asks of it

    #: Seconds to the 504 (None: the ``timeout`` setting).
    deadline = None

    def start_work(self, runtime):
        return runtime.submit(self.promise)

    def fallback(self, reason):
        """None: a refused or late stream is a 503 or a 504."""
        return None

    def stop_work(self, runtime, future):
        """Drop fn if it has not started; stop it if its executor can."""
        if future is not None and not future.cancel() and not future.done():
            runtime.interrupt(self.promise, future)

    def finished(self, runtime, task, outcome, sent, seconds):
        runtime.metrics.stream_done(outcome)
        request_log.info(
            "%s %s: stream %s %s: %s, %d bytes in %.3fs",
            printable(task.request.command), printable(task.request.path),
            self.name, self.promise.executor, outcome, sent, seconds)

    # Worker thread, at IPubBeforeCommit

    def bind(self, response):
        """Decide how this stream runs, before ZPublisher finalizes the
        response. Inline streams run ``fn`` now (in the side pool, the
        worker waiting up to ``timeout``) so its status and headers reach
        the response."""
        if self.method == "HEAD":
            self.mode = "head"      # headers only; fn is not run
        elif self.suspendable and get_runtime().settings.suspend:
            self.mode = "handoff"
        else:
            self.mode = "inline"
            self._prepare_inline(response)

    def _prepare_inline(self, response):
        view_headers = [(n, v) for n, v in response.listHeaders()
                        if n.lower() not in ("date", "server")]
        prepared = run_and_prepare(self, f"{response.status} {response.errmsg}",
                                   view_headers)
        code, _, _ = prepared.status.partition(" ")
        response.setStatus(int(code))
        for name, value in prepared.headers:
            response.setHeader(name, value)
        self.prepared = prepared

    # The server's thread

    def __iter__(self):
        return self

    def __next__(self):
        if self._chunks is None:
            if self.mode == "head" or self.method == "HEAD":
                self._chunks = iter(())
            elif self.mode is None:
                logger.warning(
                    "stream %s was not bound at IPubBeforeCommit (is the "
                    "collective.futures ZCML loaded?): it runs inline, and "
                    "headers set by fn are not applied", self.name)
                self.prepared = run_and_prepare(self, None, [])
                self._chunks = self.prepared.chunks
            elif self.mode == "handoff":
                # The first __next__ comes straight from the server task's
                # own loop unless a middleware wrapped the body.
                caller = sys._getframe(1)
                if caller.f_code is self.handoff_frame:
                    self.handed_off = True
                    raise StreamHandoff(self)
                logger.warning(
                    "%s wraps the stream iterator of %s, so it cannot be "
                    "handed to a side thread: it runs inline, holding this "
                    "worker thread, and headers set by fn are not applied",
                    _describe(caller), self.name)
                self.prepared = run_and_prepare(self, None, [])
                self._chunks = self.prepared.chunks
            else:
                self._chunks = self.prepared.chunks
        return next(self._chunks)

    def close(self):
        """Called by the server when it is done (or the client is gone):
        closes fn's output (a generator's ``finally`` runs)."""
        if self.handed_off:
            return  # the side thread owns the output now
        if self.prepared is not None:
            self.prepared.close()


def _describe(frame):
    code = frame.f_code
    module = frame.f_globals.get("__name__", "?")
    return f"{module}.{getattr(code, 'co_qualname', code.co_name)}"


def run_and_prepare(stream, view_status, view_headers):
    """Inline: run ``fn`` in the side pool, the calling thread waiting up to
    ``timeout``; a 500 or 504 Prepared when it fails or is late."""
    runtime = get_runtime()
    timeout = runtime.settings.timeout
    future = runtime.executor.submit(stream.call)
    try:
        # Why wait: this server cannot release the thread; fn's status and
        # headers must be known before the response starts. Bounded.
        result = future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        logger.error("stream %s produced nothing within %g s: 504",
                     stream.name, timeout)
        return error_prepared(504, "Gateway Timeout")
    except Exception:
        logger.exception("stream %s raised before its first byte: 500",
                         stream.name)
        return error_prepared(500, "Internal Server Error")
    try:
        return _synchronous(
            stream.prepare(result, view_status or "200 OK", view_headers))
    except (TypeError, ValueError):
        logger.exception("stream %s returned output that cannot be sent: 500",
                         stream.name)
        return error_prepared(500, "Internal Server Error")

