"""AsyncWorkerStreamIterator: stream the output of slow work to the client
without holding a Zope worker thread.

Runs on: created by a view on a Zope worker; bound at ``IPubBeforeCommit``
(worker); then either handed off to a side thread (waitress, see
``server/streaming.py``) or iterated inline by the WSGI server's thread.

A view returns ``AsyncWorkerStreamIterator(fn, request, *args, **kwargs)``.
There is no second pass: the view's transaction commits as usual, and
``fn(*args, **kwargs)`` runs in the side pool. What ``fn`` returns becomes
the body: bytes, str, an iterable of bytes (or str), a binary file object,
or a :class:`StreamResult` wrapping one of those with a status and headers.
"""

import concurrent.futures
import http
import logging
import os
import sys
import urllib.parse

from zope.interface import implementer
from ZPublisher.Iterators import IUnboundStreamIterator

from .promises import SUSPEND_KEY, make_promise
from .runtime import get_runtime


logger = logging.getLogger("collective.futures")

CHUNK_SIZE = 1 << 16

# Hop-by-hop headers belong to the server (PEP 3333).
_HOP_BY_HOP = frozenset((
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "trailers", "transfer-encoding", "upgrade",
))


class StreamResult:
    """What ``fn`` may return to set the response's status and headers once
    its work is done, before the first byte goes out.

    ``body`` is bytes, str, an iterable of bytes/str or a binary file object.
    ``filename`` adds ``Content-Disposition: attachment``; ``content_length``
    (when known) lets the client show progress; ``headers`` is a mapping or
    a list of pairs and replaces the view's headers of the same names.
    """

    def __init__(self, body, status=200, headers=None, content_type=None,
                 filename=None, content_length=None):
        self.body = body
        self.status = status
        self.headers = list(dict(headers or {}).items()) if isinstance(
            headers, dict) else list(headers or [])
        if content_type is not None:
            self.headers.append(("Content-Type", content_type))
        if filename is not None:
            self.headers.append(("Content-Disposition", attachment(filename)))
        if content_length is not None:
            self.headers.append(("Content-Length", str(int(content_length))))


def attachment(filename):
    """A ``Content-Disposition`` value for downloading ``filename``
    (RFC 6266: an ASCII fallback plus the UTF-8 name)."""
    fallback = "".join(
        ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in filename)
    value = f'attachment; filename="{fallback}"'
    if fallback != filename:
        value += f"; filename*=UTF-8''{urllib.parse.quote(filename, safe='')}"
    return value


def status_line(status):
    """``200`` or ``"200 OK"`` -> ``"200 OK"``."""
    if isinstance(status, int):
        try:
            return f"{status} {http.HTTPStatus(status).phrase}"
        except ValueError:
            return f"{status} Unknown"
    text = str(status)
    if not text[:3].isdigit():
        raise ValueError(f"bad status {status!r}")
    return text


def merge_headers(base, overrides):
    """``base`` with every header named in ``overrides`` replaced."""
    names = {name.lower() for name, _ in overrides}
    return [(n, v) for n, v in base if n.lower() not in names] + list(overrides)


def check_headers(headers):
    for name, value in headers:
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"header {name!r}: names and values must be str")
        if "\r" in name + value or "\n" in name + value:
            raise ValueError(f"header {name!r}: CR or LF in name or value")
        if name.lower() in _HOP_BY_HOP:
            raise ValueError(f"header {name!r} is hop-by-hop: the server sets it")
        if name.lower() == "content-length" and not value.strip().isdigit():
            raise ValueError(f"Content-Length {value!r} is not a number of bytes")


def charset_of(headers, default="utf-8"):
    for name, value in headers:
        if name.lower() == "content-type":
            for param in value.split(";")[1:]:
                key, _, val = param.strip().partition("=")
                if key.lower() == "charset" and val:
                    return val.strip('"')
    return default


class Prepared:
    """``fn``'s output, ready to send: status, headers (the view's merged
    with fn's) and an iterator of byte chunks that must be closed."""

    def __init__(self, status, headers, chunks, close):
        self.status = status
        self.headers = headers
        self.chunks = chunks
        self.close = close

    @property
    def content_length(self):
        for name, value in self.headers:
            if name.lower() == "content-length":
                return int(value)
        return None


def _file_length(fileobj):
    try:
        return os.fstat(fileobj.fileno()).st_size - fileobj.tell()
    except (AttributeError, OSError, ValueError):
        return None


def prepare(result, view_status, view_headers):
    """Turn what ``fn`` returned into a :class:`Prepared`. Raises TypeError
    or ValueError, naming the problem, for output it cannot send."""
    status, extra = view_status, []
    if isinstance(result, StreamResult):
        status = status_line(result.status)
        extra = result.headers
        result = result.body
    check_headers(extra)
    check_headers(view_headers)
    headers = merge_headers(view_headers, extra)
    charset = charset_of(headers)
    has_length = any(n.lower() == "content-length" for n, _ in extra)

    def close():
        closer = getattr(result, "close", None)
        if closer is not None:
            closer()

    if result is None:
        result = b""
    if isinstance(result, str):
        result = result.encode(charset)
    if isinstance(result, (bytes, bytearray, memoryview)):
        data = bytes(result)
        if not has_length:
            headers = merge_headers(headers, [("Content-Length", str(len(data)))])
        return Prepared(status, headers, iter([data] if data else []), close)
    if hasattr(result, "read"):
        length = _file_length(result)
        if length is not None and not has_length:
            headers = merge_headers(headers, [("Content-Length", str(length))])

        def read_chunks():
            while True:
                data = result.read(CHUNK_SIZE)
                if not data:
                    return
                if isinstance(data, str):
                    raise TypeError("the file object returned str: open it in binary mode")
                yield data

        return Prepared(status, headers, read_chunks(), close)
    if hasattr(result, "__aiter__"):
        iterator = _from_async(result)
        close = lambda: _aclose(result)  # noqa: E731
    else:
        iterator = None
    try:
        iterator = iterator or iter(result)
    except TypeError:
        raise TypeError(
            f"fn returned {type(result).__name__}: return bytes, str, an "
            f"iterable of bytes, a binary file or a StreamResult") from None

    def encoded():
        for chunk in iterator:
            if isinstance(chunk, str):
                chunk = chunk.encode(charset)
            elif not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise TypeError(
                    f"fn's iterable yielded {type(chunk).__name__}, not bytes")
            if chunk:
                yield bytes(chunk)

    return Prepared(status, headers, encoded(), close)


def _loop():
    from .aioloop import AsyncioExecutor
    executor = get_runtime().executor_for("asyncio")
    if not isinstance(executor, AsyncioExecutor):
        raise TypeError("fn returned an async iterable but the asyncio "
                        "executor is not collective.futures' own")
    return executor.loop


def _from_async(aiterable, chunk_timeout=None):
    """Iterate an async iterable (an async generator from an ``async def``
    fn) from this thread, one item at a time, on the asyncio executor's
    loop."""
    import asyncio

    loop = _loop()
    iterator = aiterable.__aiter__()
    timeout = chunk_timeout or get_runtime().settings.timeout
    while True:
        future = asyncio.run_coroutine_threadsafe(iterator.__anext__(), loop)
        try:
            # Why wait: this thread writes each item; bounded per item.
            yield future.result(timeout)
        except StopAsyncIteration:
            return


def _aclose(aiterable):
    import asyncio

    aclose = getattr(aiterable, "aclose", None)
    if aclose is not None:
        asyncio.run_coroutine_threadsafe(aclose(), _loop()).result(5)


class StreamHandoff(BaseException):
    """Control flow, not an error: the server hands this stream to a side
    thread. Raised by the iterator's first ``__next__`` when waitress's own
    task iterates it (so nothing between them would lose the stream)."""

    def __init__(self, stream):
        super().__init__(stream)
        self.stream = stream
        self.task = None


def _called_from_server_task(frame):
    # The first __next__ comes straight from waitress's WSGITask.execute
    # (its `for chunk in app_iter`) unless a middleware wrapped the body.
    from .server.internals import WSGITask
    return frame is not None and frame.f_code is WSGITask.execute.__code__


@implementer(IUnboundStreamIterator)
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
        self.name = self.promise.name
        self.method = environ.get("REQUEST_METHOD", "GET").upper()
        self.suspendable = bool(environ.get(SUSPEND_KEY))
        self.mode = None          # "head", "handoff" or "inline", once bound
        self.prepared = None      # inline: fn's output
        self.handed_off = False
        self._chunks = None

    def __repr__(self):
        return f"<AsyncWorkerStreamIterator {self.name} mode={self.mode}>"

    def call(self):
        """Run ``fn``: here (a side thread) for the ``threads`` executor,
        else on its executor, waiting for it (bounded by ``timeout``)."""
        promise = self.promise
        if promise.executor == "threads":
            from .runtime import promise_context
            with promise_context():
                return promise()
        runtime = get_runtime()
        future = runtime.submit(promise)
        try:
            # Why wait: this side thread writes what fn returns. The stream's
            # own deadline answers 504 at `timeout`; the grace bounds this.
            return future.result(runtime.settings.timeout + 5.0)
        except concurrent.futures.TimeoutError:
            if not future.cancel():
                runtime.interrupt(promise, future)
            raise

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
                caller = sys._getframe(1)
                if _called_from_server_task(caller):
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


def error_prepared(status, message):
    body = (message + "\n").encode()
    return Prepared(
        status_line(status),
        [("Content-Type", "text/plain; charset=utf-8"),
         ("Content-Length", str(len(body)))],
        iter([body]), lambda: None)


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
        return prepare(result, view_status or "200 OK", view_headers)
    except (TypeError, ValueError):
        logger.exception("stream %s returned output that cannot be sent: 500",
                         stream.name)
        return error_prepared(500, "Internal Server Error")

