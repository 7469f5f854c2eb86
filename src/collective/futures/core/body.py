"""A response body from what a stream's ``fn`` returned, and the
responses the server writes itself (500, 503, 504).

Runs on: the thread that writes the response (a stream's writer thread,
the server's thread for an inline stream, a waitress worker for a 503).
Pure: status, headers and chunks of bytes, no server and no Zope.
"""

import http
import io
import os
import urllib.parse


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
    with fn's) and its byte chunks, which must be closed once sent.

    Synchronous output (bytes, a file, an iterable) has ``chunks``, an
    iterator, and ``close()``. Asynchronous output (an async iterable) has
    ``achunks``, an async iterator to drive on an event loop, and
    ``aclose()``, a coroutine function; its ``chunks`` is None.
    """

    def __init__(self, status, headers, chunks, close, message=None,
                 achunks=None, aclose=None):
        self.status = status
        self.headers = headers
        self.chunks = chunks
        self.close = close
        self.achunks = achunks
        self.aclose = aclose
        #: The text of a response the server makes itself (error_prepared).
        self.message = message

    @property
    def is_async(self):
        return self.achunks is not None

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
    or ValueError, naming the problem, for output it cannot send. An async
    iterable gives an asynchronous Prepared (``achunks``)."""
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
        # Asked of the file itself: a text file may hide behind a wrapper
        # (NamedTemporaryFile("w+"), codecs.open).
        if isinstance(result, io.TextIOBase) or isinstance(result.read(0), str):
            raise TypeError("fn returned a file in text mode: open it in "
                            "binary mode")
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
    def encode(chunk):
        if isinstance(chunk, str):
            return chunk.encode(charset)
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"fn's iterable yielded {type(chunk).__name__}, not bytes")
        return bytes(chunk)

    if hasattr(result, "__aiter__"):
        aiterator = result.__aiter__()

        async def aencoded():
            async for chunk in aiterator:
                chunk = encode(chunk)
                if chunk:
                    yield chunk

        achunks = aencoded()

        async def aclose():
            await achunks.aclose()
            closer = getattr(result, "aclose", None)
            if closer is not None:
                await closer()

        return Prepared(status, headers, None, lambda: None,
                        achunks=achunks, aclose=aclose)
    try:
        iterator = iter(result)
    except TypeError:
        raise TypeError(
            f"fn returned {type(result).__name__}: return bytes, str, an "
            f"iterable of bytes, a binary file or a StreamResult") from None

    def encoded():
        for chunk in iterator:
            chunk = encode(chunk)
            if chunk:
                yield chunk

    return Prepared(status, headers, encoded(), close)


def error_prepared(status, message):
    body = (message + "\n").encode()
    return Prepared(
        status_line(status),
        [("Content-Type", "text/plain; charset=utf-8"),
         ("Content-Length", str(len(body)))],
        iter([body]), lambda: None, message=message)


def unavailable(reason, retry_after):
    """The one 503: ``Service Unavailable: <reason>; retry later``, with a
    ``Retry-After`` of ``retry_after`` seconds. Every 503 of the package
    (overload, a shutdown refusing what waits) is this one."""
    prepared = error_prepared(503, f"Service Unavailable: {reason}; retry later")
    prepared.headers.append(("Retry-After", str(retry_after)))
    return prepared
