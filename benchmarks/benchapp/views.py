import asyncio
import time
import urllib.request

from collective import futures
from collective.futures import AsyncWorkerStreamIterator


def fetch(port, delay):
    """The slow call: one HTTP GET to the upstream (a new connection)."""
    with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/?delay={delay}", timeout=60) as response:
        return response.read()


async def fetch_async(port, delay):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET /?delay={delay} HTTP/1.1\r\nHost: up\r\n"
                     f"Connection: close\r\n\r\n".encode())
        await writer.drain()
        return await reader.read()
    finally:
        writer.close()


def chunks(port, delay, count, size, pause):
    """The upstream's answer, then ``count`` chunks of ``size`` bytes,
    ``pause`` seconds apart: a stream a client can leave midway."""
    yield fetch(port, delay)
    for _ in range(count):
        time.sleep(pause)
        yield b"x" * size


class _View:
    def __init__(self, context, request):
        self.context = context
        self.request = request

    def call(self):
        form = self.request.form
        return int(form["port"]), float(form.get("delay", 1))


class Plain(_View):
    def __call__(self):
        return "plain"


class Blocking(_View):
    def __call__(self):
        body = fetch(*self.call())
        return f"blocking {len(body)}"


class Futures(_View):
    def __call__(self):
        body = futures.resultOrSubmit("up", None, fetch, *self.call())
        return "placeholder" if body is None else f"futures {len(body)}"


class Asyncio(_View):
    def __call__(self):
        body = futures.resultOrSubmit("up", None, fetch_async, *self.call())
        return "placeholder" if body is None else f"asyncio {len(body)}"


class Stream(_View):
    def __call__(self):
        return AsyncWorkerStreamIterator(fetch, self.request, *self.call())


class Processes(_View):
    def __call__(self):
        body = futures.resultOrSubmit(
            "up", None, futures.promise(fetch, executor="processes"), *self.call())
        return "placeholder" if body is None else f"processes {len(body)}"


class StreamChunks(_View):
    def __call__(self):
        form = self.request.form
        return AsyncWorkerStreamIterator(
            chunks, self.request, *self.call(), int(form.get("count", 20)),
            int(form.get("size", 16384)), float(form.get("pause", 0.005)))


class StreamAsync(_View):
    """A stream whose fn is a coroutine: no thread while it awaits."""

    def __call__(self):
        return AsyncWorkerStreamIterator(fetch_async, self.request, *self.call())
