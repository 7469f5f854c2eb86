"""A soak: N mixed requests (futures on each executor -- threads, asyncio,
processes --, streams, disconnects), then idle: RSS, threads and
descriptors back within 10 % of their baseline.

Usage: python benchmarks/soak.py [--n 20000] [--concurrency 64]
                                 [--delay 0.02] [--json FILE]

Real parts only: one Zope instance with the package, served by waitress
(runwsgi) in a subprocess, and the slow upstream (tests/slow_upstream.py)
in a process of its own; requests go over real sockets from a closed-loop
asyncio client (C virtual users, keep-alive connections renewed every
RECONNECT requests).

The mix, in a fixed cycle of ten: futures on the threads executor (2),
on the asyncio executor (2), on the processes executor (1), a stream (2),
a longer stream of CHUNKS chunks read to its end (1), a client that sends a
futures request (threads and asyncio in turn) and leaves before the answer
(1; every other one with a reset, SO_LINGER 0), and a client that leaves a
long stream after its first bytes (1, the same). Every answer read to its
end is checked (status 200 and the body the view renders); a leaving
client must at least have been answered 200 when it read the head.

Baseline: after a warm-up -- a burst of C concurrent requests of each
kind, then WARMUP mixed requests, so that the lazily created side pools
have grown to what C concurrent requests ask of them and the asyncio loop
and the worker processes exist -- the figures of the Zope process are read
once they settle (/proc/PID/status VmRSS and
Threads, the entries of /proc/PID/fd). Peak: sampled every 100 ms during
the load. End: after the load the instance is left idle and the figures
polled until they are settled and within their limits, or until the idle
deadline (default 75 s, long enough for idle side-pool threads to retire:
they do after 60 s without work; 20 s when N < 2000).

Limits on the end figures: RSS at most baseline + 10 %; threads at most
baseline + 10 % or + 2, whichever is larger; descriptors at most
baseline + 10 % or + 4, whichever is larger (a thread or a descriptor or
two are the noise of a server at rest, not a leak). An end figure over its
limit, a wrong answer, an instance that died or a request that timed out
fails the run (exit status 1).
"""

import argparse
import asyncio
import os
import pathlib
import re
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time


HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "tests")]
import loadgen  # noqa: E402
from common import Checks, command_line, machine  # noqa: E402
from zopeinstance import ZopeInstance, subprocess_env  # noqa: E402


#: As suite.FUTURES_CONFIG (copied: the suite imports the benchmarks), with
#: the two worker processes of the processes executor said explicitly.
FUTURES_CONFIG = {"max_workers": "512", "max_streams": "512",
                  "asyncio_max_concurrency": "2000", "timeout": "60",
                  "process_workers": "2"}
#: As suite.SERVER_EXTRA.
SERVER_EXTRA = "connection_limit = 4000\nbacklog = 4096\nasyncore_use_poll = true"

#: The kinds of request, in the cycle they are sent in.
MIX = ("futures", "asyncio", "stream", "processes", "futures", "asyncio",
       "stream", "stream-chunks", "disconnect", "disconnect-midstream")
#: The long stream: CHUNKS chunks of CHUNK_SIZE bytes, CHUNK_PAUSE s apart.
CHUNKS, CHUNK_SIZE, CHUNK_PAUSE = 10, 16384, 0.005
#: A keep-alive connection is closed (and a new one opened) after this
#: many requests: connections come and go during the soak too.
RECONNECT = 50
REQUEST_TIMEOUT = 60.0
WARMUP = 320
#: The warm-up starts with a burst of C concurrent requests of each kind.
BURSTS = ("futures", "stream-chunks", "asyncio", "processes", "disconnect")
#: Limits: end <= baseline * (1 + RATIO), and for threads and descriptors
#: also end <= baseline + the absolute slack, whichever is larger.
RATIO = 0.10
SLACK = {"rss_mib": 0, "threads": 2, "fds": 4}
SAMPLE_INTERVAL = 0.1
#: The report traces RSS during the load every this many seconds.
TRACE_INTERVAL = 5.0
POLL_INTERVAL = 0.5
#: Figures are settled when they held still this long (RSS within 1 MiB).
QUIET_SECONDS = 2.0
BASELINE_TIMEOUT = 20.0


class Upstream:
    """The slow service, in its own process (as suite.Upstream, with a
    deadline on its start)."""

    def __enter__(self):
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "tests/slow_upstream.py"), "0"],
            stdout=subprocess.PIPE, text=True, env=subprocess_env())
        ready, _, _ = select.select([self.process.stdout], [], [], 15)
        line = self.process.stdout.readline() if ready else ""
        match = re.match(r"listening on (\d+)", line)
        if not match:
            self.process.kill()
            self.process.wait(10)
            raise RuntimeError(f"the upstream did not start: {line!r}")
        self.port = int(match.group(1))
        return self

    def __exit__(self, *exc):
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


# the figures of the Zope process

def figures(pid):
    """RSS (MiB), threads and open descriptors of process ``pid``."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                values["rss_mib"] = int(line.split()[1]) / 1024
            elif line.startswith("Threads:"):
                values["threads"] = int(line.split()[1])
    values["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return values


def limits(baseline):
    return {key: max(baseline[key] * (1 + RATIO), baseline[key] + SLACK[key])
            for key in baseline}


def within(values, bounds):
    return all(values[key] <= bounds[key] for key in bounds)


def settle(zope, timeout, bounds=None):
    """Poll the figures until they held still for QUIET_SECONDS (and, with
    ``bounds``, are within them), or until ``timeout``. Returns (the last
    figures, seconds waited, settled, within bounds)."""
    start = time.monotonic()
    history = []
    while True:
        now = time.monotonic()
        values = figures(zope.pid)
        history.append((now, values))
        recent = [v for t, v in history if t >= now - QUIET_SECONDS]
        quiet = (now - history[0][0] >= QUIET_SECONDS
                 and len({(v["threads"], v["fds"]) for v in recent}) == 1
                 and max(v["rss_mib"] for v in recent)
                 - min(v["rss_mib"] for v in recent) < 1.0)
        fits = bounds is None or within(values, bounds)
        if (quiet and fits) or now - start >= timeout:
            return values, round(now - start, 1), quiet, fits
        if zope.process.poll() is not None:
            raise RuntimeError(f"the Zope instance died (exit code "
                               f"{zope.process.returncode}) while idle")
        time.sleep(POLL_INTERVAL)


class Peaks:
    """The largest figures of the Zope process, sampled every 100 ms in a
    thread of its own."""

    def __init__(self, zope):
        self.zope = zope
        self.peak = figures(zope.pid)
        #: (seconds since the start, RSS MiB) every TRACE_INTERVAL
        self.trace = [(0.0, round(self.peak["rss_mib"], 1))]
        self.error = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-peaks",
                                        daemon=True)

    def _run(self):
        start = time.monotonic()
        while not self._stop.wait(SAMPLE_INTERVAL):
            try:
                values = figures(self.zope.pid)
            except (OSError, ValueError) as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                return
            self.peak = {k: max(v, values[k]) for k, v in self.peak.items()}
            elapsed = time.monotonic() - start
            if elapsed >= self.trace[-1][0] + TRACE_INTERVAL:
                self.trace.append((round(elapsed, 1), round(values["rss_mib"], 1)))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


# the client

def _request(path):
    return f"GET {path} HTTP/1.1\r\nHost: soak\r\n\r\n".encode()


def _reset_on_close(writer):
    """Make close() send a reset (RST) instead of a FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class Client:
    """One virtual user's keep-alive connection."""

    def __init__(self, port):
        self.port = port
        self.reader = self.writer = None
        self.used = 0

    async def get(self, path):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(
                "127.0.0.1", self.port)
            self.used = 0
        try:
            self.writer.write(_request(path))
            await self.writer.drain()
            status, body, close = await loadgen.read_response(self.reader)
        except BaseException:
            self.close()
            raise
        self.used += 1
        if close or self.used >= RECONNECT:
            self.close()
        return status, body

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Mix:
    """The requests of one run (warm-up or soak) and what they answered."""

    def __init__(self, port, upstream_port, delay):
        self.port = port
        query = f"port={upstream_port}&delay={delay:g}"
        # The upstream answers {"delay": <float>}; the views say its length.
        upstream = f'{{"delay": {float(delay)}}}'.encode()
        chunks = f"&count={CHUNKS}&size={CHUNK_SIZE}&pause={CHUNK_PAUSE:g}"
        # Leaving clients wait for a slower answer, so they leave first.
        slow = f"port={upstream_port}&delay={max(5 * delay, 0.1):g}"
        self.slow_wait = max(5 * delay, 0.1) / 2
        #: kind -> (path, the body expected: bytes, or a prefix as a tuple)
        self.kinds = {
            "futures": (f"/@@bench-futures?{query}",
                        f"futures {len(upstream)}".encode()),
            "asyncio": (f"/@@bench-asyncio?{query}", (b"asyncio ",)),
            "processes": (f"/@@bench-processes?{query}",
                          f"processes {len(upstream)}".encode()),
            "stream": (f"/@@bench-stream?{query}", upstream),
            "stream-chunks": (f"/@@bench-stream-chunks?{query}{chunks}",
                              upstream + b"x" * (CHUNKS * CHUNK_SIZE)),
        }
        self.leaving = {
            "disconnect": (f"/@@bench-futures?{slow}", f"/@@bench-asyncio?{slow}"),
            "disconnect-midstream": (f"/@@bench-stream-chunks?{query}{chunks}",),
        }
        self.counts = {kind: {"sent": 0, "ok": 0} for kind in MIX}
        self.wrong = []

    def check(self, kind, status, body):
        expected = self.kinds[kind][1]
        if isinstance(expected, tuple):
            good = body.startswith(expected[0])
        else:
            good = body == expected
        return status == 200 and good

    def failed(self, kind, what):
        if len(self.wrong) < 5:
            self.wrong.append(f"{kind}: {what}")

    async def one(self, index, client, mix=MIX):
        kind = mix[index % len(mix)]
        self.counts[kind]["sent"] += 1
        try:
            if kind in self.leaving:
                paths = self.leaving[kind]
                turn = index // len(mix)
                ok = await asyncio.wait_for(
                    self.leave(kind, paths[turn % len(paths)], reset=turn % 2 == 1),
                    REQUEST_TIMEOUT)
            else:
                status, body = await asyncio.wait_for(
                    client.get(self.kinds[kind][0]), REQUEST_TIMEOUT)
                ok = self.check(kind, status, body)
                if not ok:
                    self.failed(kind, f"{status} {body[:120]!r}")
        except asyncio.TimeoutError:
            ok = False
            self.failed(kind, f"no answer within {REQUEST_TIMEOUT:g} s")
        except (ConnectionError, OSError, asyncio.IncompleteReadError,
                ValueError, IndexError) as exc:
            ok = False
            self.failed(kind, f"{type(exc).__name__}: {exc}")
        if ok:
            self.counts[kind]["ok"] += 1

    async def leave(self, kind, path, reset):
        """A client that leaves: before the answer ("disconnect") or after
        the first bytes of a long stream ("disconnect-midstream")."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(_request(path))
            await writer.drain()
            if kind == "disconnect":
                await asyncio.sleep(self.slow_wait)
                return True
            status, body, _ = await loadgen.read_response(reader, first_bytes=True)
            if status != 200 or not body:
                self.failed(kind, f"{status} {body[:120]!r}")
                return False
            return True
        finally:
            if reset:
                _reset_on_close(writer)
            writer.close()

    async def run(self, n, concurrency, mix=MIX):
        """Send ``n`` requests of the kinds in ``mix``, in turn, from
        ``concurrency`` virtual users."""
        counter = iter(range(n))

        async def user():
            client = Client(self.port)
            try:
                for index in counter:
                    await self.one(index, client, mix)
            finally:
                client.close()

        # Backstop (each request is bounded by REQUEST_TIMEOUT already): at
        # least 20 requests per second.
        await loadgen.run_users(user, concurrency, 120 + n / 20)

    def report(self):
        sent = sum(c["sent"] for c in self.counts.values())
        ok = sum(c["ok"] for c in self.counts.values())
        return {"requests": sent, "ok": ok, "wrong": sent - ok,
                "by_kind": self.counts, "wrong_examples": self.wrong}


def load(zope, upstream, phases, concurrency, delay):
    """Run the ``phases`` ((n, kinds) each) one after the other; the
    figures of all of them."""
    mix = Mix(zope.port, upstream.port, delay)

    async def all_phases():
        for n, kinds in phases:
            await mix.run(n, concurrency, kinds)

    start = time.monotonic()
    asyncio.run(all_phases())
    seconds = time.monotonic() - start
    figures_ = mix.report()
    figures_["seconds"] = round(seconds, 1)
    figures_["requests_per_s"] = round(figures_["requests"] / seconds, 1)
    return figures_


def answers_after(zope, upstream, delay, checks):
    """One request of each kind, one after the other, after the idle."""
    mix = Mix(zope.port, upstream.port, delay)
    answers = {}
    for kind, (path, _) in mix.kinds.items():
        status, _, body = zope.request(path, timeout=REQUEST_TIMEOUT)
        answers[kind] = mix.check(kind, status, body)
        checks.expect(answers[kind], f"after the idle: {kind} answered {status} "
                                     f"{body[:120]!r}")
    return answers


def log_lines(zope, count=40):
    """The last lines of the instance's log but the one-line request
    reports (for a run that failed: the instance's side of it)."""
    return [line for line in zope.log().splitlines()
            if "[collective.futures.requests]" not in line
            and "Task queue depth" not in line][-count:]


def log_errors(zope):
    """The lines of the instance's log that say ERROR or Traceback."""
    return [line for line in zope.log().splitlines()
            if " ERROR " in line or line.startswith("Traceback")]


def soak(zope, upstream, n, concurrency, delay, warmup, idle_timeout, checks,
         report):
    # Bursts first: each side pool grows to what C concurrent requests ask
    # of it (idle pool threads retire only after 60 s without work).
    phases = [(concurrency, (kind,)) for kind in BURSTS] + [(warmup, MIX)]
    report["warmup"] = load(zope, upstream, phases, concurrency, delay)
    checks.expect(not report["warmup"]["wrong"], (
        f"warm-up: {report['warmup']['wrong']} of {report['warmup']['requests']} "
        f"requests went wrong, e.g. {report['warmup']['wrong_examples'][:2]}"))
    baseline, waited, quiet, _ = settle(zope, BASELINE_TIMEOUT)
    report["baseline_wait_s"] = waited
    checks.expect(quiet, f"the figures did not settle within {BASELINE_TIMEOUT:g} s "
                         f"after the warm-up: {baseline}")
    bounds = limits(baseline)
    with Peaks(zope) as peaks:
        report["load"] = load(zope, upstream, [(n, MIX)], concurrency, delay)
    checks.expect(peaks.error is None, f"sampling the figures failed: {peaks.error}")
    report["load"]["rss_trace_mib"] = peaks.trace
    checks.expect(not report["load"]["wrong"], (
        f"{report['load']['wrong']} of {n} requests went wrong, e.g. "
        f"{report['load']['wrong_examples'][:2]}"))
    end, waited, quiet, fits = settle(zope, idle_timeout, bounds)
    report["idle"] = {"waited_s": waited, "settled": quiet}
    report["figures"] = {key: {
        "baseline": round(baseline[key], 1), "peak": round(peaks.peak[key], 1),
        "end": round(end[key], 1), "limit": round(bounds[key], 1),
        "end_ratio": round(end[key] / baseline[key], 3),
        "peak_ratio": round(peaks.peak[key] / baseline[key], 3),
    } for key in baseline}
    names = {"rss_mib": "RSS (MiB)", "threads": "threads", "fds": "descriptors"}
    for key, f in report["figures"].items():
        checks.expect(f["end"] <= f["limit"], (
            f"{names[key]} did not come back after {waited:g} s idle: "
            f"{f['end']:g} against a baseline of {f['baseline']:g} (limit "
            f"{f['limit']:g})"))
    report["answers_after_idle"] = answers_after(zope, upstream, delay, checks)
    errors = log_errors(zope)
    report["log_errors"] = {"count": len(errors), "first": errors[:3]}


def run(n=20000, concurrency=64, delay=0.02, warmup=WARMUP, idle_timeout=None):
    """The soak on one fresh instance. Returns the report (plain data:
    "parameters", "warmup", "load", "figures" (baseline, peak, end, limit
    and ratios of rss_mib, threads, fds), "idle", "failures"); raises
    BenchmarkFailed, with the report, when an answer was wrong, a figure did
    not come back within its limit or the instance died."""
    if idle_timeout is None:
        idle_timeout = 75.0 if n >= 2000 else 20.0
    checks = Checks()
    report = {"machine": machine(), "parameters": {
        "requests": n, "concurrency": concurrency, "delay_s": delay,
        "warmup_requests": warmup, "idle_timeout_s": idle_timeout,
        "mix": list(MIX), "stream_chunks": [CHUNKS, CHUNK_SIZE, CHUNK_PAUSE],
        "reconnect_every": RECONNECT, "limit_ratio": RATIO,
        "limit_slack": SLACK, "futures_config": FUTURES_CONFIG,
        "waitress": SERVER_EXTRA.replace("\n", "; ")}}
    with checks.guard(report), Upstream() as upstream, \
            tempfile.TemporaryDirectory() as tmp:
        zope = ZopeInstance(
            pathlib.Path(tmp) / "zope", threads=2, packages=("benchapp",),
            product_config=FUTURES_CONFIG, server_extra=SERVER_EXTRA
        ).create().start()
        with checks.running(zope, "soak"):
            report["pid"] = zope.pid
            try:
                soak(zope, upstream, n, concurrency, delay, warmup, idle_timeout,
                     checks, report)
            except BaseException:
                report["log_tail"] = log_lines(zope)
                raise
            if checks.failures:
                report["log_tail"] = log_lines(zope)
    return checks.finish(report)


def summary(report):
    p, load_ = report["parameters"], report["load"]
    lines = [
        f"soak: {load_['requests']} mixed requests at C = {p['concurrency']} "
        f"(upstream {p['delay_s']:g} s) in {load_['seconds']:g} s "
        f"({load_['requests_per_s']:g} req/s), {load_['wrong']} wrong; "
        f"{report['machine']['cpus']} CPUs",
        f"{'':12} {'baseline':>9} {'peak':>8} {'end':>8} {'end/base':>9} {'limit':>8}"]
    names = {"rss_mib": "RSS MiB", "threads": "threads", "fds": "descriptors"}
    for key, f in report["figures"].items():
        lines.append(f"{names[key]:12} {f['baseline']:9g} {f['peak']:8g} "
                     f"{f['end']:8g} {f['end_ratio']:9.3f} {f['limit']:8g}")
    trace = report["load"]["rss_trace_mib"]
    if len(trace) > 2:
        step = max(1, (len(trace) - 1) // 6)
        points = trace[::step] + ([trace[-1]] if (len(trace) - 1) % step else [])
        lines.append("RSS during the load (s: MiB): " + ", ".join(
            f"{t:g}: {rss:g}" for t, rss in points))
    idle = report["idle"]
    lines.append(f"end figures read after {idle['waited_s']:g} s idle "
                 f"({'settled' if idle['settled'] else 'not settled'}); "
                 f"log ERROR/Traceback lines: {report['log_errors']['count']}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--delay", type=float, default=0.02)
    parser.add_argument("--warmup", type=int, default=WARMUP)
    parser.add_argument("--idle-timeout", type=float, default=None,
                        help="seconds (default 75, 20 when N < 2000)")
    parser.add_argument("--json", help="also write the report to this file")
    args = parser.parse_args(argv)
    return command_line(run, summary, args.json, n=args.n,
                        concurrency=args.concurrency, delay=args.delay,
                        warmup=args.warmup, idle_timeout=args.idle_timeout)


if __name__ == "__main__":
    main()
