"""A one-pass page: a page whose promises are all fragments is finished,
themed and committed with placeholders, and its holes are filled outside
the worker as the fragments' results arrive.

Runs on, in turn:

* ``fill_page``: the Zope worker, at ``IPubSuccess`` (the transforms,
  Diazo and plone.protect included, have run; the transaction is
  committed). Under the package's waitress channel the response body
  becomes a :class:`FragmentPage`, which the server takes over from the
  worker like a stream (``StreamHandoff``); elsewhere the worker waits for
  the fragments and fills the page itself.
* the fragments' promises: their executors, in one round with one deadline.
* the renderers: the stream pool (``stream_threads``), in the promises'
  sandbox (no request, no user), never the worker, the deadline thread or
  the asyncio loop.
* a progressive page's output: the asyncio executor's loop, which sends
  the page at once and each fragment as it is rendered.
"""

import asyncio
import concurrent.futures
import logging
import sys
import threading
import time

from zope.interface import implementer
from ZPublisher.Iterators import IUnboundStreamIterator

from .core.body import charset_of, prepare
from .core.fragments import (
    PROGRESSIVE_SCRIPT, fill, progressive_chunk, render, split_for_progressive,
    tokens_in)
from .core.printable import printable
from .core.promise import Outcome
from .exceptions import FutureTimeoutError
from .executors.asyncio import AsyncioExecutor
from .interfaces import HANDOFF_KEY, SUSPEND_KEY, IHandedOff, StreamHandoff
from .runtime import get_runtime
from .sandbox import promise_context


logger = logging.getLogger("collective.futures")
request_log = logging.getLogger("collective.futures.requests")

#: Seconds the renderers get after the promises' ``timeout``.
GRACE = 5.0


def _call(fn, value):
    with promise_context():
        return fn(value)


def _failed(fragment, exc):
    logger.error("the renderer of fragment %r (%s) raised: its hole gets "
                 "fragment_fallback", fragment.key, fragment.name, exc_info=exc)


def render_one(fragment, outcome, default):
    """``(html, kind)`` for one fragment, its renderer run in the sandbox.
    Called on a stream-pool thread."""
    return render(fragment, outcome, default, run=_call, failed=_failed)


def render_now(fragment, outcome):
    """A fragment whose result is already here (a page rendered again, a
    kept shared result): rendered on the stream pool while the worker waits
    (bounded: ``timeout``), so that the renderer never sees the worker's
    request or user. Returns the HTML."""
    runtime = get_runtime()
    default = runtime.settings.fragment_fallback
    try:
        future = runtime.streams.submit(render_one, fragment, outcome, default)
        # Why wait: this pass writes the fragment's HTML in its place now.
        html, kind = future.result(runtime.settings.timeout)
    except Exception as exc:  # the pool is full or shut down; too slow
        logger.error("fragment %r could not be rendered (%s): its place gets "
                     "fragment_fallback", fragment.key, type(exc).__name__)
        html, kind = default, "render_failed"
    runtime.metrics.fragments_done([kind])
    return html


def _response_charset(response):
    content_type = response.headers.get("content-type") or ""
    return charset_of([("Content-Type", content_type)])


def _why_not(request, response, body):
    """Why this response's holes are not to be filled, or None."""
    if request.get("REQUEST_METHOD", "GET").upper() == "HEAD":
        return "a HEAD response has no body"
    status = response.getStatus()
    if 300 <= status < 400 or status in (204, 205) or status < 200:
        return f"a {status} response is not a page anyone sees"
    if not isinstance(body, bytes):
        return f"its body is {type(body).__name__}, not a page"
    if response.headers.get("content-encoding"):
        return "its body is encoded (Content-Encoding)"
    return None


def fill_page(request, state):
    """IPubSuccess of a pass whose promises were all fragments (held in
    ``state.held``): hand the page to the server to fill, or fill it here."""
    runtime = get_runtime()
    settings = runtime.settings
    response = request.response
    body = response.body
    reason = _why_not(request, response, body)
    page = FragmentPage(request, state, body if reason is None else b"",
                        _response_charset(response))
    page.status = response.getStatus()
    if reason is not None and state.held:
        # An encoded page is a site's setting that silently loses parts:
        # loud. The others are pages nobody sees.
        log = logger.warning if "encoded" in reason else logger.info
        log("%s %s: %d fragment(s) dropped: %s",
            printable(request.get("REQUEST_METHOD")),
            printable(request.get("PATH_INFO")), len(state.held), reason)
    if not page.fragments:
        # No hole made it into the page (HEAD, a redirect, a theme that
        # left the part out): nothing to compute.
        page.delivery = "nothing to fill"
        page.finished(runtime, None, "complete",
                      len(body) if isinstance(body, bytes) else 0, 0.0,
                      status=response.getStatus())
        return
    suspendable = bool(request.environ.get(SUSPEND_KEY)) and settings.suspend
    if suspendable:
        wants = state.progressive
        if wants is None:
            wants = settings.fragments_progressive
        if wants and _progressive_ok(request, response):
            page.split = split_for_progressive(body)
        page.handoff_frame = request.environ.get(HANDOFF_KEY)
        # The server takes the body over from the worker (a stream).
        response.body = page
        response._streaming = 1
        response.headers.pop("content-length", None)
        return
    # Any other server (or suspend off): the worker waits and fills.
    started = time.monotonic()
    filled = page.fill_waiting(runtime)
    response.body = filled
    response.setHeader("Content-Length", str(len(filled)))
    page.finished(runtime, None, "complete", len(filled),
                  time.monotonic() - started, status=response.getStatus())


def _progressive_ok(request, response):
    """A client and a response that can take a page in pieces: a GET over
    HTTP/1.1 answered 200 with HTML."""
    return (request.get("REQUEST_METHOD", "GET").upper() == "GET"
            and request.environ.get("SERVER_PROTOCOL") == "HTTP/1.1"
            and response.getStatus() == 200
            and (response.headers.get("content-type") or "").startswith("text/html"))


def _asyncio_loop(runtime):
    executor = runtime.executor_for("asyncio")
    if not isinstance(executor, AsyncioExecutor):
        raise TypeError("progressive delivery needs collective.futures' own "
                        "asyncio executor")
    return executor.loop


@implementer(IUnboundStreamIterator, IHandedOff)
class FragmentPage:
    """The body of a one-pass page while its holes wait to be filled: a
    stream the server takes over (IHandedOff) or, where it cannot, fills
    while the calling thread waits."""

    name = "fragments"

    def __init__(self, request, state, body, charset):
        settings = get_runtime().settings
        self.method = request.get("REQUEST_METHOD", "GET")
        self.path = request.get("PATH_INFO", "")
        self.passes = state.passes
        present = set(tokens_in(body))
        #: key -> Fragment whose hole is in the page (the others are dropped)
        self.fragments = {
            key: fragment for key, fragment in state.fragments.items()
            if key in state.held and fragment.token in present}
        self.promises = {key: state.held[key] for key in self.fragments}
        self.dropped = sorted(set(state.held) - set(self.fragments))
        self.body = body
        self.charset = charset
        self.default = settings.fragment_fallback
        #: Seconds from the hand-off until the holes not filled yet get
        #: their fallbacks: the promises' timeout, and a grace for the
        #: renderers.
        self.deadline = settings.timeout + GRACE
        self.split = None            # (head, tail) for progressive delivery
        self.handoff_frame = None
        self.delivery = None         # filled | progressive | waited
        self.round = None
        self._stopped = False
        #: key -> (html, kind, outcome) as each hole is filled.
        self.results = {}
        #: What earlier passes ran (a page that took more than one).
        self.earlier = state.summary() if state.rounds else ""
        self.mixed = sorted(state.mixed)
        self._lock = threading.Lock()
        self._chunks = None
        self.handed_off = False
        self.status = None  # the response's, for the log line

    def __repr__(self):
        return (f"<FragmentPage {sorted(self.fragments)} "
                f"delivery={self.delivery}>")

    # Filling

    def _record(self, key, html, kind, outcome):
        """Keep how a hole was filled; the first answer stays (a late
        renderer never overwrites a fallback already sent)."""
        with self._lock:
            return self.results.setdefault(key, (html, kind, outcome))[0]

    def _render(self, key, outcome):
        """Stream pool: one renderer, in the sandbox."""
        html, kind = render_one(self.fragments[key], outcome, self.default)
        return self._record(key, html, kind, outcome)

    def _filled_with_defaults(self, reason):
        """Every hole not filled yet gets ``fragment_fallback``, no
        renderer called: safe on any thread."""
        holes = {}
        with self._lock:
            for key, fragment in self.fragments.items():
                if key not in self.results:
                    self.results[key] = (self.default, "fallback",
                                         Outcome(error=FutureTimeoutError(reason)))
                holes[fragment.token] = self.results[key][0]
        if self.delivery is None:
            self.delivery = "filled"
        return fill(self.body, holes, self.charset)

    def _start_filling(self, runtime):
        """Start the fragments' round; each renderer runs on the stream pool
        as its result arrives. Returns the future of the filled page."""
        page = concurrent.futures.Future()

        def complete():
            with self._lock:
                if len(self.results) < len(self.fragments) or page.done():
                    return
                holes = {self.fragments[key].token: html
                         for key, (html, _, _) in self.results.items()}
            try:
                page.set_result(fill(self.body, holes, self.charset))
            except concurrent.futures.InvalidStateError:
                pass  # stopped meanwhile: the job answers without it

        def render(key, outcome):
            if not page.done():
                self._render(key, outcome)
            complete()

        def settled(key, outcome):
            # The thread that settled it (an executor's, the deadline
            # thread, the main loop): never the renderer's place.
            if page.done() or self._stopped:
                return
            try:
                runtime.streams.submit(render, key, outcome)
            except Exception as exc:  # the pool's queue is full, or shut down
                logger.error("fragment %r could not be rendered (%s): its hole "
                             "gets fragment_fallback", key, exc)
                self._record(key, self.default, "render_failed", outcome)
                complete()

        self.round = runtime.make_round(self.promises, on_settled=settled,
                                        degrade=True)
        self.round.start()
        return page

    def fill_waiting(self, runtime):
        """The page with its holes filled, the calling thread waiting
        (bounded: ``deadline``): a server that cannot take it over."""
        self.delivery = "waited"
        page = self._start_filling(runtime)
        try:
            # Why wait: this server writes the response from this thread.
            return page.result(self.deadline)
        except Exception as exc:
            self.stop_work(runtime, page)
            logger.error("fragments of %s were not filled within %g s (%s): "
                         "their holes get fragment_fallback",
                         printable(self.path), self.deadline, type(exc).__name__)
            return self._filled_with_defaults(
                f"not filled within {self.deadline:g} s")

    # IHandedOff (the server's stream job)

    def start_work(self, runtime):
        if self.split is not None:
            self.delivery = "progressive"
            ready = concurrent.futures.Future()
            ready.set_result(self._progressive(runtime, self._start_progressive(runtime)))
            return ready
        self.delivery = "filled"
        return self._start_filling(runtime)

    def fallback(self, reason):
        """Refused or late: the page is committed, so it goes out, every
        hole not filled yet with ``fragment_fallback``."""
        return self._filled_with_defaults(reason)

    def stop_work(self, runtime, future):
        # The page first: the round's end must start no renderer for it.
        if future is not None:
            future.cancel()
        self._stopped = True
        if self.round is not None:
            self.round.cancel("the response was stopped")

    def prepare(self, result, view_status, view_headers):
        return prepare(result, view_status, view_headers)

    def _start_progressive(self, runtime):
        """Start the fragments' round now (the job's thread: a first use of
        an executor may be slow, never on the loop); its outcomes reach the
        loop through a queue. Returns the queue."""
        loop = _asyncio_loop(runtime)
        arrivals = asyncio.Queue()

        def settled(key, outcome):
            try:
                loop.call_soon_threadsafe(arrivals.put_nowait, (key, outcome))
            except RuntimeError:
                pass  # the loop is closed: the process is ending

        self.round = runtime.make_round(self.promises, on_settled=settled,
                                        degrade=True)
        self.round.start()
        return arrivals

    async def _progressive(self, runtime, arrivals):
        """The asyncio loop: the page with its holes at once, then each
        fragment as its result arrives and is rendered, then the end of
        the page."""
        loop = asyncio.get_running_loop()
        end = loop.time() + self.deadline
        head, tail = self.split
        try:
            yield head + PROGRESSIVE_SCRIPT.encode(self.charset)
            while len(self.results) < len(self.fragments):
                try:
                    key, outcome = await asyncio.wait_for(
                        arrivals.get(), max(0.0, end - loop.time()))
                except asyncio.TimeoutError:
                    break  # the rest: their fallbacks, below
                if key in self.results or key not in self.fragments:
                    continue
                html = await self._render_async(loop, runtime, key, outcome, end)
                yield progressive_chunk(
                    self.fragments[key].token, html, self.charset)
            for key, fragment in self.fragments.items():
                if key not in self.results:
                    html = self._record(key, self.default, "fallback", Outcome(
                        error=FutureTimeoutError(f"fragment {key!r} was not "
                                                 f"filled within {self.deadline:g} s")))
                    yield progressive_chunk(fragment.token, html, self.charset)
            yield tail
        finally:
            self._stopped = True
            self.round.cancel("the response was stopped")

    async def _render_async(self, loop, runtime, key, outcome, end):
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(runtime.streams, self._render, key, outcome),
                max(0.1, end - loop.time()))
        except Exception as exc:  # too slow, the pool full or shut down
            logger.error("fragment %r was not rendered (%s): its hole gets "
                         "fragment_fallback", key, type(exc).__name__)
            return self._record(key, self.default, "render_failed", outcome)

    def finished(self, runtime, task, outcome, sent, seconds, status=None):
        """Count the page and its fragments; the request's log line."""
        if status is None:
            status = (task.status.split(" ", 1)[0] if task is not None
                      else self.status)
        metrics = runtime.metrics
        metrics.request_done(self.passes, str(status))
        with self._lock:
            results = dict(self.results)
        if self.fragments:
            metrics.fragment_page_done(self.delivery)
        metrics.fragments_done(
            [results[key][1] if key in results else "dropped"
             for key in self.fragments] + ["dropped"] * len(self.dropped))
        parts = []
        for key in self.fragments:
            if key in results:
                _, kind, result = results[key]
                took = "-" if result.seconds is None else f"{result.seconds:.3f}s"
                why = "" if result.error is None else f" ({type(result.error).__name__})"
                parts.append(f"{key} [{result.executor or '-'}] {took} {kind}{why}")
            else:
                parts.append(f"{key} not filled")
        parts.extend(f"{key} dropped (no hole in the page)" for key in self.dropped)
        earlier = ""
        if self.earlier:
            earlier = f"; earlier passes: {self.earlier}"
        if self.mixed:
            earlier += (f"; fragments rendered in a later pass, as the page "
                        f"mixes them with promises: {', '.join(self.mixed)}")
        request_log.info(
            "%s %s: %s in %s, %d fragment(s) %s in %.3fs, %d bytes (%s); "
            "fragments: %s%s",
            printable(self.method), printable(self.path), status,
            "one pass" if self.passes == 1 else f"{self.passes} passes",
            len(self.fragments), self.delivery, seconds, sent, outcome,
            printable(", ".join(parts), limit=4000), printable(earlier, limit=4000))

    # The server's thread

    def __iter__(self):
        return self

    def __next__(self):
        if self._chunks is None:
            caller = sys._getframe(1)
            if (self.handoff_frame is not None
                    and caller.f_code is self.handoff_frame):
                self.handed_off = True
                raise StreamHandoff(self)
            logger.warning(
                "%s wraps the response of %s, so its fragments cannot be "
                "filled outside the worker: this worker thread waits for them",
                caller.f_globals.get("__name__", "?"), printable(self.path))
            self.split = None
            runtime = get_runtime()
            started = time.monotonic()
            filled = self.fill_waiting(runtime)
            self.finished(runtime, None, "complete", len(filled),
                          time.monotonic() - started)
            self._chunks = iter([filled])
        return next(self._chunks)

    def close(self):
        """Called by the server once done: the stream job owns a page
        handed over; one filled here is bytes."""
