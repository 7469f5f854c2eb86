"""A closed-loop HTTP load generator on asyncio: C virtual users, each with
its own keep-alive connection, request after request, plus a probe that
requests another path at a steady low rate. One thread, no dependency.

Requests still in flight when the run ends are reported as censored: their
latency is at least the time they had waited.
"""

import asyncio
import random
import time


class Sample:
    """One request: ``end`` is None while it is in flight."""

    __slots__ = ("user", "start", "end", "status", "censored")

    def __init__(self, user, start):
        self.user, self.start, self.end = user, start, None
        self.status, self.censored = 0, False

    @property
    def latency(self):
        return self.end - self.start


async def read_response(reader, first_bytes=False):
    """``(status, body, close)`` of one response on ``reader``.
    ``first_bytes``: read the head, then only what the first read of the
    body gives (a client that leaves a stream)."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed before the status line")
    status = int(status_line.split()[1])
    length, chunked, close = None, False, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value:
            chunked = True
        elif name == "connection" and value == "close":
            close = True
    if first_bytes:
        return status, await reader.read(4096), True
    if chunked:
        parts = []
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                break
            parts.append((await reader.readexactly(size + 2))[:-2])
        body = b"".join(parts)
    elif length is not None:
        body = await reader.readexactly(length)
    else:
        body, close = await reader.read(), True
    return status, body, close


async def run_users(user, concurrency, deadline):
    """Run ``concurrency`` coroutines ``user()`` at once, for at most
    ``deadline`` seconds (a backstop: each request has its own bound);
    re-raises what one of them raised, and RuntimeError past the deadline."""
    users = [asyncio.ensure_future(user()) for _ in range(concurrency)]
    done, pending = await asyncio.wait(users, timeout=deadline)
    for task in pending:
        task.cancel()
    await asyncio.gather(*users, return_exceptions=True)
    for task in done:
        if task.exception() is not None:
            raise task.exception()
    if pending:
        raise RuntimeError(f"the load did not end within {deadline:g} s")


class _Client:
    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def get(self, path):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        await self.writer.drain()
        status, _, close = await read_response(self.reader)
        if close:
            self.close()
        return status

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _loop(user, client, path, samples, stagger, stop_at, pause=0.0):
    await asyncio.sleep(stagger)
    while time.monotonic() < stop_at:
        sample = Sample(user, time.monotonic())
        samples.append(sample)
        try:
            sample.status = await client.get(path)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            client.close()
        sample.end = time.monotonic()
        start = sample.start
        if pause:
            await asyncio.sleep(max(0.0, pause - (time.monotonic() - start)))


async def run(host, port, path, concurrency, duration, probe_path=None,
              probe_interval=0.1, stagger=1.0):
    """Run the load; returns (load samples, probe samples)."""
    started = time.monotonic()
    stop_at = started + duration
    load, probes = [], []
    tasks = [asyncio.ensure_future(_loop(
        user, _Client(host, port), path, load,
        random.uniform(0, stagger) if concurrency > 1 else 0, stop_at))
        for user in range(concurrency)]
    if probe_path:
        tasks.append(asyncio.ensure_future(_loop(
            -1, _Client(host, port), probe_path, probes, 0.05, stop_at,
            probe_interval)))
    await asyncio.sleep(duration)
    end = time.monotonic()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for sample in load + probes:
        if sample.end is None:
            sample.end, sample.censored = end, True
    return load, probes, started, end
