"""The race: ``n`` concurrent requests fired by this Zope at itself, with
the plain page probed meanwhile, reported as one JSON line per finished
request (NDJSON) for the demo page to draw as it comes.

Runs on: :func:`own_server` on the Zope worker (the view); :func:`run` on
the stream's executor thread; the race itself on its own daemon threads
(``collective.futures-demo-race``, ``...-race-request-N``,
``...-race-probe``); :meth:`Race.output` on the stream pool. Never on a Zope
worker: the race loads the two workers, it must not hold one.

Why from the server: a browser opens at most 6 connections to one host, so
10 requests fired by the page would queue in the browser, futures or not,
and hide the difference the demo is about.

Safety (the endpoint is public): the race connects only to 127.0.0.1, on
the port of the waitress server that received the request (never the Host
header), to two fixed paths; ``n`` and ``delay`` are capped; one race runs
at a time per process; every connection has a timeout and the race ends by
itself within :attr:`Race.deadline`, read or not.
"""

import http.client
import json
import logging
import math
import queue
import socket
import threading
import time

from waitress.server import BaseWSGIServer

from collective.futures import StreamResult


logger = logging.getLogger("collective.futures.demo")

#: The views a race may call: the only paths it ever requests.
TARGETS = {
    "futures": "/@@futures-demo-futures",
    "blocking": "/@@futures-demo-blocking",
}
PLAIN = "/@@futures-demo-plain"
MAX_REQUESTS = 20
MAX_DELAY = 3.0
#: Seconds between two probes of the plain page (each waits for its answer).
PROBE_INTERVAL = 0.1
#: Head start of the requests over the first probe, so that the probe finds
#: the queue they make (it would otherwise race them to a free worker).
PROBE_HEAD_START = 0.05
#: Seconds added to the slowest possible run (all requests one after the
#: other) to make every connection's timeout.
SLACK = 10.0
#: Seconds the race may outlive its connections' timeout.
GRACE = 5.0

# Held by the running race, from Race.start() until its last line is queued
# (released by the race's own thread, whoever reads its output or not).
_slot = threading.Lock()


class RaceBusy(Exception):
    """Another race is running in this process: try again when it ends
    (a race ends within its deadline)."""


def parameters(form):
    """``(how, n, delay)`` from the request's form.

    ``how`` must be ``futures`` or ``blocking``; ``n`` a whole number and
    ``delay`` a finite number, else ValueError naming the argument (the
    view answers 400). Numbers out of range are clamped to 1..20 requests
    and 0..3 seconds (the race's first line says what was used).
    """
    how = form.get("how")
    if not isinstance(how, str) or how not in TARGETS:  # a list if repeated
        raise ValueError("how must be futures or blocking")
    try:
        n = int(form.get("n", 10))
    except (TypeError, ValueError):
        raise ValueError(
            f"n must be a whole number (1 to {MAX_REQUESTS})") from None
    try:
        delay = float(form.get("delay", 1))
    except (TypeError, ValueError):
        delay = math.nan
    if not math.isfinite(delay):
        raise ValueError(
            f"delay must be a number of seconds (0 to {MAX_DELAY:g})")
    return how, max(1, min(n, MAX_REQUESTS)), max(0.0, min(delay, MAX_DELAY))


def own_server(environ):
    """``(port, threads)`` of the waitress server that received this
    request, if 127.0.0.1 reaches it; else LookupError.

    The server is found through the request's own connection (waitress
    puts its channel's ``check_client_disconnected`` in the environ), so
    neither the Host header nor a rewritten ``SERVER_PORT`` (a trusted
    proxy's X-Forwarded-Port) can point the race at another service.
    """
    check = environ.get("waitress.client_disconnected")
    server = getattr(getattr(check, "__self__", None), "server", None)
    if not isinstance(server, BaseWSGIServer):
        raise LookupError("the race needs this Zope served by waitress")
    host = str(server.effective_host)
    if server.family != socket.AF_INET or not (
            host == "0.0.0.0" or host.startswith("127.")):
        raise LookupError(
            f"the race connects only to 127.0.0.1, and this waitress server "
            f"listens on {host}")
    return int(server.effective_port), server.adj.threads


def run(port, threads, how, n, delay):
    """The stream's fn (executor thread): start a race and return its
    output, or a 503 line when another race is running."""
    race = Race(port, threads, how, n, delay)
    try:
        race.start()
    except RaceBusy:
        return StreamResult(
            encode({"kind": "error", "error": "another race is running; "
                    "try again when it ends"}),
            status=503, headers={"Retry-After": "5"},
            content_type="application/x-ndjson; charset=utf-8")
    return StreamResult(race.output(),
                        content_type="application/x-ndjson; charset=utf-8")


def encode(line):
    return json.dumps(line, separators=(",", ":")).encode() + b"\n"


class Race:
    """One race. Its lines, in order of completion:

    * ``{"kind": "start", "how", "n", "delay", "threads"}`` first;
    * ``{"kind": "request" | "plain", "index", "start_ms", "end_ms",
      "status"}`` per finished request (``status`` 0 and ``error``, the
      exception's class name, when it got no answer), times counted from
      the start of the race;
    * ``{"kind": "end", "total_ms", "requests", "ok", "plain_count",
      "plain_worst_ms"}`` last (``total_ms``: the last answer).
    """

    def __init__(self, port, threads, how, n, delay, clock=time.monotonic):
        self.port = port
        self.threads = threads
        self.how = how
        self.n = n
        self.delay = delay
        self.clock = clock
        #: Each connection's timeout: longer than all requests served one
        #: after the other.
        self.call_timeout = n * delay + SLACK
        #: Seconds from the start after which the race ends, done or not.
        self.deadline = self.call_timeout + GRACE
        self.started = None
        self.lines = queue.Queue()
        self._results = []
        self._results_lock = threading.Lock()  # request threads append
        self._stop = threading.Event()  # set: no more probes

    def start(self):
        """Start the race's thread, or raise RaceBusy."""
        if not _slot.acquire(blocking=False):
            raise RaceBusy()
        try:
            self.started = self.clock()
            self.lines.put({"kind": "start", "how": self.how, "n": self.n,
                            "delay": self.delay, "threads": self.threads})
            threading.Thread(target=self._run, name="collective.futures-demo-race",
                             daemon=True).start()
        except BaseException:
            _slot.release()
            raise

    def _ms(self):
        return round((self.clock() - self.started) * 1000, 1)

    def _remaining(self):
        return max(0.0, self.started + self.deadline - self.clock())

    # The race's own threads

    def _run(self):
        """The race's thread: fire the requests, probe, summarize."""
        try:
            target = TARGETS[self.how]
            requests = [
                threading.Thread(
                    target=self._request, name=f"collective.futures-demo-race-request-{i}",
                    args=("request", i, f"{target}?delay={self.delay:g}&i={i}"),
                    daemon=True)
                for i in range(self.n)]
            for thread in requests:
                thread.start()
            probe = threading.Thread(target=self._probe, daemon=True,
                                     name="collective.futures-demo-race-probe")
            probe.start()
            for thread in requests:
                # Why wait: the summary needs every answer; bounded by the
                # race's deadline (each connection has a shorter timeout).
                thread.join(self._remaining())
            self._stop.set()
            probe.join(self._remaining())  # the probe in flight, bounded
            end = self._summary()
        except Exception:
            logger.exception("demo race failed")
            end = {"kind": "error", "error": "the race failed (see the log)"}
        finally:
            self._stop.set()
            _slot.release()
        self.lines.put(end)

    def _probe(self):
        """The probe's thread: ask for the plain page every PROBE_INTERVAL
        seconds while requests run (at least once)."""
        # Why wait: the head start of the requests (see PROBE_HEAD_START).
        self._stop.wait(PROBE_HEAD_START)
        index = 0
        while True:
            self._request("plain", index, PLAIN)
            index += 1
            # Why wait: the pause between probes; the race's end cuts it.
            if self._stop.wait(PROBE_INTERVAL) or not self._remaining():
                return

    def _request(self, kind, index, path):
        """One GET of this Zope on 127.0.0.1 (a request or probe thread)."""
        line = {"kind": kind, "index": index, "start_ms": self._ms()}
        status, error = 0, None
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=self.call_timeout)
        try:
            connection.request("GET", path, headers={"Cache-Control": "no-store"})
            with connection.getresponse() as response:
                response.read()
                status = response.status
        except (OSError, http.client.HTTPException) as exc:
            error = type(exc).__name__
        except Exception as exc:
            logger.exception("demo race: %s %d failed", kind, index)
            error = type(exc).__name__
        finally:
            connection.close()
        line.update(end_ms=self._ms(), status=status)
        if error is not None:
            line["error"] = error
        with self._results_lock:
            self._results.append(line)
        self.lines.put(line)

    def _summary(self):
        with self._results_lock:
            results = list(self._results)
        requests = [r for r in results if r["kind"] == "request"]
        plain = [r for r in results if r["kind"] == "plain"]
        return {
            "kind": "end",
            "total_ms": max((r["end_ms"] for r in requests), default=0.0),
            "requests": len(requests),
            "ok": sum(1 for r in requests if r["status"] == 200),
            "plain_count": len(plain),
            "plain_worst_ms": max(
                (round(r["end_ms"] - r["start_ms"], 1) for r in plain), default=0.0),
        }

    # The stream pool

    def output(self):
        """The stream's output: the race's lines as they come, until its
        last; a client that goes away stops the probes."""
        try:
            while True:
                try:
                    # Why wait: the race's threads hand their lines over
                    # here; bounded by the race's deadline (and a second,
                    # for the last line).
                    line = self.lines.get(timeout=self._remaining() + 1.0)
                except queue.Empty:
                    yield encode({"kind": "error",
                                  "error": "the race did not end in time"})
                    return
                yield encode(line)
                if line["kind"] in ("end", "error"):
                    return
        finally:
            self._stop.set()
