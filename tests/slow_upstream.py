"""A slow upstream HTTP service on 127.0.0.1: answers ``GET /?delay=S``
after S seconds (default 1). asyncio, so it holds thousands of open
connections in one thread. Runs in a thread (``SlowUpstream``) or as a
program (``python slow_upstream.py PORT``)."""

import asyncio
import sys
import threading
import urllib.parse


FEED = ('<?xml version="1.0"?><rss version="2.0"><channel><title>Slow news</title>'
        + "".join(f"<item><title>Story {n}</title><link>https://example.org/{n}</link>"
                  f"</item>" for n in range(1, 4)) + "</channel></rss>").encode()

#: Requests served, by path (for tests that count upstream calls).
HITS = {}


async def _handle(reader, writer, default_delay):
    try:
        while True:
            request_line = await reader.readline()
            if not request_line:
                return
            close = False
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                if line.lower().replace(b" ", b"").startswith(b"connection:close"):
                    close = True
            target = request_line.split()[1].decode("latin-1")
            url = urllib.parse.urlsplit(target)
            query = urllib.parse.parse_qs(url.query)
            delay = float(query.get("delay", [default_delay])[0])
            HITS[url.path] = HITS.get(url.path, 0) + 1
            await asyncio.sleep(delay)
            if url.path == "/feed.xml":
                body, kind = FEED, b"application/rss+xml"
            else:
                body, kind = f'{{"delay": {delay}}}'.encode(), b"application/json"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: " + kind + b"\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
                         + body)
            await writer.drain()
            if close:
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def serve(port=0, delay=1.0, started=None):
    server = await asyncio.start_server(
        lambda r, w: _handle(r, w, delay), "127.0.0.1", port, backlog=4096)
    if started is not None:
        started(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


class SlowUpstream:
    """The service in a daemon thread of this process."""

    def __init__(self, delay=1.0):
        self.delay = delay
        self.port = None
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="slow-upstream",
                                        daemon=True)

    def _run(self):
        asyncio.set_event_loop(self._loop)

        def started(port):
            self.port = port
            self._ready.set()

        try:
            self._loop.run_until_complete(serve(0, self.delay, started))
        except asyncio.CancelledError:
            pass

    def start(self):
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the slow upstream did not start")
        return self

    def stop(self):
        def cancel():
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
        self._loop.call_soon_threadsafe(cancel)
        self._thread.join(5)
        self._loop.close()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/"


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    asyncio.run(serve(port, started=lambda p: print(f"listening on {p}", flush=True)))
