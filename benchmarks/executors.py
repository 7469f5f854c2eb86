"""Executor figures: 1,000 asyncio promises in one request against a slow
HTTP service (time, server threads, RSS); 100 concurrent requests for one
shared key (executions); a worker process killed mid-task (what happens).

Usage: python benchmarks/executors.py [--n 1000] [--delay 1] [--json FILE]
"""

import argparse
import concurrent.futures
import json
import pathlib
import platform
import sys
import tempfile
import threading
import time


sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
from slow_upstream import SlowUpstream  # noqa: E402
from zopeinstance import ZopeInstance  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    report = {"machine": {"platform": platform.platform(),
                          "python": platform.python_version()}}
    upstream = SlowUpstream(args.delay).start()
    with tempfile.TemporaryDirectory() as tmp:
        zope = ZopeInstance(
            pathlib.Path(tmp) / "zope", threads=2,
            product_config={"asyncio_max_concurrency": str(max(1000, args.n))},
            # waitress's default (100, the listener included) would hold
            # back some of the 100 concurrent clients.
            server_extra="connection_limit = 1000").create().start()
        try:
            zope.get(f"/@@async-fanout?n=5&port={upstream.port}&delay=0.05")
            threads, rss = zope.thread_count(), zope.rss()
            peak = [rss]
            stop = threading.Event()

            def sample():
                while not stop.wait(0.02):
                    peak[0] = max(peak[0], zope.rss())

            sampler = threading.Thread(target=sample, name="rss-sampler", daemon=True)
            sampler.start()
            start = time.monotonic()
            status, body = zope.get(
                f"/@@async-fanout?n={args.n}&port={upstream.port}&delay={args.delay:g}",
                timeout=120)
            took = time.monotonic() - start
            stop.set()
            sampler.join(5)
            report["asyncio"] = {
                "promises": args.n, "latency_s": args.delay,
                "status": status, "answer": json.loads(body),
                "seconds": round(took, 3),
                "threads_before": threads, "threads_after": zope.thread_count(),
                "rss_before_mib": round(rss / 2**20, 1),
                "rss_peak_mib": round(peak[0] / 2**20, 1),
            }

            with concurrent.futures.ThreadPoolExecutor(100) as pool:
                results = list(pool.map(
                    lambda _: zope.get("/@@shared?counter=bench&delay=2"), range(100)))
            counts = json.loads(zope.get("/@@counters")[1])
            report["shared"] = {
                "requests": 100, "ok": sum(r[0] == 200 for r in results),
                "executions": counts["bench.executions"],
            }

            start = time.monotonic()
            status, body = zope.get("/@@process-crash?how=SIGKILL", timeout=60)
            after = zope.get("/@@process-pid")[1]
            report["process_crash"] = {
                "status": status, "page": body, "next_call": after,
                "seconds": round(time.monotonic() - start, 2),
            }
        finally:
            zope.stop()
            upstream.stop()
    a = report["asyncio"]
    print(f"asyncio: {a['promises']} promises x {a['latency_s']:g} s latency in one "
          f"request: {a['seconds']} s, answer {a['answer']}; server threads "
          f"{a['threads_before']} -> {a['threads_after']}; RSS "
          f"{a['rss_before_mib']} MiB, peak {a['rss_peak_mib']} MiB")
    s = report["shared"]
    print(f"shared: {s['requests']} concurrent requests, {s['ok']} answered, "
          f"function executed {s['executions']} time(s)")
    p = report["process_crash"]
    print(f"process killed mid-task: HTTP {p['status']}: {p['page']!r}; next call: "
          f"{p['next_call']!r} ({p['seconds']} s for both)")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
