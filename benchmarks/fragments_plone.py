"""Fragments on a real Plone front page: what one slow viewlet costs the
Zope process, written as a fragment (one pass), as an ordinary promise (two
passes), and not there at all; the fragment page under load; progressive
delivery's first byte.

Usage (in the Plone environment, ``.venv-plone``):
    python benchmarks/fragments_plone.py [--n 200] [--reps 3] [--json FILE]

Real parts only: a classic Plone 6.2 site (Barceloneta, Diazo on: requests
go to ``localhost``) made by ``tests_plone/make_site.py`` and served by
waitress (``threads = 2``); the viewlet is ``docs/fragments.rst``'s
(``tests_plone/futures_plone_app``: ``WeatherViewlet``, below the content
of every page, shown when the query asks for it), its upstream a real HTTP
server on 127.0.0.1 (``tests/slow_upstream.py``) answering the feed.

1. **CPU per request.** The front page ``/Plone`` three ways: without the
   viewlet (``?weather=none``), with it as a fragment
   (``?weather=fragment``) and as a two-pass promise (``?weather=twopass``),
   the upstream answering at once. Each repetition sends N requests of each
   way in turn (one keep-alive connection, one at a time; the order rotates
   between repetitions; plone.app.caching off, so that every page is
   rendered); what counts is the CPU time of the Zope process
   (utime + stime, all threads) over the N requests, divided by N. The
   ratios (fragment / without, two passes / without) are per repetition;
   reported: their median and spread (min-max). Every answer must be a 200
   with the theme and, with the viewlet, its list, and no placeholder left.
2. **Under load.** 20 visitors at once ask for the fragment page whose
   upstream takes 1 s, ``threads = 2``; meanwhile the page without the
   viewlet is asked for every 50 ms (the probe). Reported: when all 20 were
   answered, and the probe's median and slowest time.
3. **Progressive delivery.** The fragment page, upstream 1 s, asked for
   with ``progressive=1``, against the same page delivered filled and the
   two-pass page: time to the first byte of the response and to its end (the
   fragment's arrival), medians of a few requests.
"""

import argparse
import concurrent.futures
import http.client
import pathlib
import socket
import statistics
import sys
import tempfile
import time


HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "tests_plone"), str(ROOT / "tests")]
from common import Checks, command_line, cpu_seconds, machine  # noqa: E402
from ploneinstance import PloneInstance  # noqa: E402
from slow_upstream import SlowUpstream  # noqa: E402


WAYS = {"without": "none", "fragment": "fragment", "two_passes": "twopass"}
HOLE = b"data-futures-fragment"
WEATHER = b"Day 1: Story 1"


class Client:
    """One keep-alive connection to the site, as ``localhost`` (themed)."""

    def __init__(self, plone):
        self.plone = plone
        self.connection = http.client.HTTPConnection(*plone.address, timeout=60)

    def get(self, path):
        self.connection.request("GET", path, headers=self.plone.host_headers())
        response = self.connection.getresponse()
        return response.status, response.read()

    def close(self):
        self.connection.close()


def check_page(checks, way, status, body, what=None):
    what = what or way
    ok = checks.expect(status == 200, f"{what}: status {status}")
    ok = ok and checks.expect(b"++theme++barceloneta" in body,
                              f"{what}: the page is not themed")
    ok = ok and checks.expect(HOLE not in body, f"{what}: a placeholder was left")
    if way == "without":
        return ok and checks.expect(WEATHER not in body, f"{what}: the viewlet shows")
    return ok and checks.expect(body.count(WEATHER) == 1,
                                f"{what}: the viewlet's list is not there once")


def cpu_turn(plone, client, checks, way, n):
    path = f"/Plone?weather={WAYS[way]}&delay=0"
    before = cpu_seconds(plone.process.pid)
    for i in range(n):
        status, body = client.get(path)
        if i == 0 or status != 200:
            check_page(checks, way, status, body)
            if status != 200:
                break
    return (cpu_seconds(plone.process.pid) - before) / n * 1000.0  # ms


def timed_get(plone, path):
    started = time.monotonic()
    client = Client(plone)
    try:
        status, body = client.get(path)
    finally:
        client.close()
    return status, body, time.monotonic() - started


def under_load(plone, checks, visitors, delay):
    path = f"/Plone?weather=fragment&delay={delay:g}"
    probe = "/Plone?weather=none"
    with concurrent.futures.ThreadPoolExecutor(visitors) as pool:
        started = time.monotonic()
        pages = [pool.submit(timed_get, plone, path) for _ in range(visitors)]
        time.sleep(0.1)
        probes = []
        while not all(page.done() for page in pages):
            status, body, took = timed_get(plone, probe)
            check_page(checks, "without", status, body, what="probe")
            probes.append(took)
            time.sleep(0.05)
        results = [page.result(timeout=120) for page in pages]
        total = time.monotonic() - started
    for status, body, _ in results:
        check_page(checks, "fragment", status, body, what="fragment under load")
    checks.expect(probes, "no probe was answered while the pages ran")
    return {
        "visitors": visitors, "upstream_seconds": delay,
        "all_answered_seconds": round(total, 3),
        "blocking_would_take_seconds": round(visitors * delay / plone.threads, 1),
        "probes": len(probes),
        "probe_p50_ms": round(statistics.median(probes) * 1000, 1) if probes else None,
        "probe_max_ms": round(max(probes) * 1000, 1) if probes else None,
    }


def first_and_last_byte(plone, path, end_marker):
    """Seconds to the first byte of the response and to ``end_marker``."""
    with socket.create_connection(plone.address, timeout=30) as sock:
        started = time.monotonic()
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost:{plone.port}\r\n"
                     f"Connection: close\r\n\r\n".encode())
        data, first = b"", None
        deadline = started + 60
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            if first is None:
                first = time.monotonic() - started
            data += chunk
            if end_marker in data:
                break
        return first, time.monotonic() - started, data


def progressive(plone, checks, delay, tries):
    ways = {
        "progressive": f"/Plone?weather=fragment&progressive=1&delay={delay:g}",
        "filled": f"/Plone?weather=fragment&delay={delay:g}",
        "two_passes": f"/Plone?weather=twopass&delay={delay:g}",
    }
    figures = {}
    for way, path in ways.items():
        firsts, lasts = [], []
        for _ in range(tries):
            first, last, data = first_and_last_byte(plone, path, WEATHER)
            checks.expect(WEATHER in data, f"{way}: the viewlet's list never came")
            if way == "progressive":
                checks.expect(b"Transfer-Encoding: chunked" in data,
                              "progressive: the response is not chunked")
            firsts.append(first or last)
            lasts.append(last)
        figures[way] = {"first_byte_ms": round(statistics.median(firsts) * 1000, 1),
                        "fragment_ms": round(statistics.median(lasts) * 1000, 1)}
    checks.expect(figures["progressive"]["first_byte_ms"] < delay * 1000,
                  "progressive: the first byte did not come before the slow result")
    return {"upstream_seconds": delay, "tries": tries, **figures}


def run(n=200, reps=3, visitors=20, delay=1.0, tries=3, warmup=30):
    checks = Checks()
    report = {"machine": machine(), "n": n, "reps": reps}
    upstream = SlowUpstream(delay=0).start()
    home = pathlib.Path(tempfile.mkdtemp(prefix="bench-fragments-"))
    # Without plone.app.caching's RAM cache, which would answer the page
    # without the viewlet from memory: what is compared is rendering.
    plone = PloneInstance(home / "plone", feed_url=f"{upstream.url}feed.xml?delay=0",
                          threads=2, server_extra="connection_limit = 500",
                          environment={"FUTURES_PLONE_CACHING": "off"})
    with checks.guard(report):
        plone.create().start()
        try:
            client = Client(plone)
            for way in WAYS:  # warm: templates compiled, caches filled
                cpu_turn(plone, client, checks, way, warmup)
            per_request = {way: [] for way in WAYS}
            order = list(WAYS)
            for rep in range(reps):
                for way in order[rep % len(order):] + order[:rep % len(order)]:
                    per_request[way].append(round(cpu_turn(plone, client, checks, way, n), 3))
            client.close()
            ratios = {}
            for way in ("fragment", "two_passes"):
                per_rep = [w / b for w, b in zip(per_request[way], per_request["without"])]
                ratios[way] = {
                    "median": round(statistics.median(per_rep), 2),
                    "min": round(min(per_rep), 2), "max": round(max(per_rep), 2)}
            report["cpu_ms"] = {way: {"per_rep": values,
                                      "median": round(statistics.median(values), 2)}
                                for way, values in per_request.items()}
            report["ratio"] = ratios
            report["extra_ms"] = {
                way: round(report["cpu_ms"][way]["median"]
                           - report["cpu_ms"]["without"]["median"], 2)
                for way in ("fragment", "two_passes")}
            report["load"] = under_load(plone, checks, visitors, delay)
            report["progressive"] = progressive(plone, checks, delay, tries)
            checks.alive(plone, "the Plone instance")
        finally:
            plone.stop()
            upstream.stop()
    return checks.finish(report)


def summary(report):
    cpu, ratio = report["cpu_ms"], report["ratio"]
    load, prog = report["load"], report["progressive"]
    return "\n".join([
        f"  Plone front page, CPU per request (median of {report['reps']} x "
        f"{report['n']}): without the viewlet {cpu['without']['median']} ms, "
        f"fragment {cpu['fragment']['median']} ms "
        f"({ratio['fragment']['median']}x, {ratio['fragment']['min']}-"
        f"{ratio['fragment']['max']}), two passes {cpu['two_passes']['median']} ms "
        f"({ratio['two_passes']['median']}x, {ratio['two_passes']['min']}-"
        f"{ratio['two_passes']['max']})",
        f"  {load['visitors']} visitors, upstream {load['upstream_seconds']:g} s, "
        f"threads=2: all answered in {load['all_answered_seconds']} s; page without "
        f"the viewlet meanwhile p50 {load['probe_p50_ms']} ms, max {load['probe_max_ms']} ms",
        "  first byte / fragment in (ms): " + ", ".join(
            f"{way} {prog[way]['first_byte_ms']} / {prog[way]['fragment_ms']}"
            for way in ("progressive", "filled", "two_passes")),
    ])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--visitors", type=int, default=20)
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument("--tries", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    command_line(run, summary, args.json, n=args.n, reps=args.reps,
                 visitors=args.visitors, delay=args.delay, tries=args.tries)


if __name__ == "__main__":
    main()
