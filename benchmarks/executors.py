"""Executor figures: 1,000 asyncio promises in one request against a slow
HTTP service (time, server threads, RSS); 100 concurrent requests for one
shared key (executions); a worker process killed mid-task (what happens).

Usage: python benchmarks/executors.py [--n 1000] [--delay 1] [--json FILE]

Each part checks what it claims: every promise answered OK, the shared
function ran exactly once and every request got its value, the killed
process was reported as killed and the next call ran in a new process. A
claim that does not hold, an error or an instance that died fails the run
(exit status 1).
"""

import argparse
import concurrent.futures
import json
import pathlib
import re
import sys
import tempfile
import time


sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
from common import Checks, RssSampler, command_line, machine  # noqa: E402
from slow_upstream import SlowUpstream  # noqa: E402
from zopeinstance import ZopeInstance  # noqa: E402


SHARED_REQUESTS, SHARED_DELAY = 100, 2.0
CRASH_PAGE = re.compile(
    r"square=49; died: worker process (\d+) died \(killed by signal SIGKILL\) "
    r"while running promise 'die'")
PID_PAGE = re.compile(r"pid=(\d+) zope=(\d+)")


def asyncio_fanout(zope, upstream, n, delay, checks):
    status, body = zope.get(f"/@@async-fanout?n=5&port={upstream.port}&delay=0.05")
    checks.expect((status, body) == (200, '{"ok": 5, "n": 5}'),
                  f"asyncio: warm-up answered {status} {body[:200]!r}")
    threads, rss = zope.thread_count(), zope.rss()
    with RssSampler(zope) as sampler:
        start = time.monotonic()
        status, body = zope.get(
            f"/@@async-fanout?n={n}&port={upstream.port}&delay={delay:g}",
            timeout=120)
        took = time.monotonic() - start
    try:
        answer = json.loads(body)
    except ValueError:
        answer = body[:200]
    checks.expect(status == 200 and answer == {"ok": n, "n": n},
                  f"asyncio: {n} promises answered {status} {answer!r}")
    checks.expect(sampler.error is None, f"asyncio: sampling RSS failed: "
                                         f"{sampler.error}")
    return {
        "promises": n, "latency_s": delay,
        "status": status, "answer": answer,
        "seconds": round(took, 3),
        "threads_before": threads, "threads_after": zope.thread_count(),
        "rss_before_mib": round(rss / 2**20, 1),
        "rss_peak_mib": round(sampler.peak / 2**20, 1),
    }


def shared(zope, checks):
    with concurrent.futures.ThreadPoolExecutor(SHARED_REQUESTS) as pool:
        results = list(pool.map(
            lambda _: zope.get(f"/@@shared?counter=bench&delay={SHARED_DELAY:g}",
                               timeout=120),
            range(SHARED_REQUESTS)))
    counts = zope.counters()
    ok = sum(r == (200, "computed once for bench") for r in results)
    executions = counts.get("bench.executions", 0)
    checks.expect(ok == SHARED_REQUESTS,
                  f"shared: {ok} of {SHARED_REQUESTS} requests answered the "
                  f"value, e.g. {[r for r in results if r[0] != 200][:1]}")
    checks.expect(executions == 1, f"shared: the function ran {executions} "
                                   f"times, not once")
    return {"requests": SHARED_REQUESTS, "function_s": SHARED_DELAY,
            "ok": ok, "executions": executions}


def process_crash(zope, checks):
    start = time.monotonic()
    status, page = zope.get("/@@process-crash?how=SIGKILL", timeout=60)
    crash_s = time.monotonic() - start
    next_status, after = zope.get("/@@process-pid")
    seconds = time.monotonic() - start
    died = CRASH_PAGE.fullmatch(page)
    checks.expect(status == 200 and died,
                  f"processes: the crash page answered {status} {page[:200]!r}")
    pids = PID_PAGE.fullmatch(after)
    checks.expect(next_status == 200 and pids,
                  f"processes: the next call answered {next_status} {after[:200]!r}")
    if died and pids:
        checks.expect(pids[1] not in (died[1], pids[2]) and int(pids[2]) == zope.pid,
                      f"processes: the next call did not run in a new worker "
                      f"process: {after!r} after {page!r}")
    return {
        "status": status, "page": page, "next_call": after,
        "killed_pid": int(died[1]) if died else None,
        "next_pid": int(pids[1]) if pids else None,
        "crash_request_s": round(crash_s, 2),
        "seconds": round(seconds, 2),
    }


def run(n=1000, delay=1.0, threads=2):
    """The three parts on one fresh instance. Returns the report (plain
    data: "parameters", "asyncio", "shared", "process_crash",
    "failures"); raises BenchmarkFailed, with the report, when a part's
    claim did not hold or the instance died."""
    checks = Checks()
    report = {"machine": machine(), "parameters": {
        "promises": n, "latency_s": delay, "threads": threads,
        "shared_requests": SHARED_REQUESTS, "shared_function_s": SHARED_DELAY}}
    upstream = SlowUpstream(delay).start()
    try:
        with checks.guard(report), tempfile.TemporaryDirectory() as tmp:
            zope = ZopeInstance(
                pathlib.Path(tmp) / "zope", threads=threads,
                product_config={"asyncio_max_concurrency": str(max(1000, n))},
                # waitress's default (100, the listener included) would hold
                # back some of the 100 concurrent clients.
                server_extra="connection_limit = 1000").create().start()
            with checks.running(zope, "executors"):
                report["asyncio"] = asyncio_fanout(zope, upstream, n, delay, checks)
                report["shared"] = shared(zope, checks)
                report["process_crash"] = process_crash(zope, checks)
    finally:
        upstream.stop()
    return checks.finish(report)


def summary(report):
    a, s, p = report["asyncio"], report["shared"], report["process_crash"]
    return "\n".join([
        f"asyncio: {a['promises']} promises x {a['latency_s']:g} s latency in one "
        f"request: {a['seconds']} s, answer {a['answer']}; server threads "
        f"{a['threads_before']} -> {a['threads_after']}; RSS "
        f"{a['rss_before_mib']} MiB, peak {a['rss_peak_mib']} MiB",
        f"shared: {s['requests']} concurrent requests, {s['ok']} answered, "
        f"function executed {s['executions']} time(s)",
        f"process killed mid-task: HTTP {p['status']}: {p['page']!r}; next call: "
        f"{p['next_call']!r} ({p['seconds']} s for both)"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument("--json", help="also write the report to this file")
    args = parser.parse_args(argv)
    return command_line(run, summary, args.json, n=args.n, delay=args.delay)


if __name__ == "__main__":
    main()
