"""N concurrent requests whose slow part takes L seconds, on a Zope with
``threads = 2``: stock Zope (the view waits) against collective.futures (the
promise waits, the worker is freed). A plain page is probed during the load.

Usage: python benchmarks/slow_requests.py [--n 20] [--delay 1] [--json FILE]

Real parts only: each configuration is a fresh Zope instance served by
waitress (runwsgi) in a subprocess; requests go over real sockets.
"""

import argparse
import concurrent.futures
import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time


sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
from zopeinstance import ZopeInstance  # noqa: E402


CONFIGURATIONS = {
    "stock Zope, blocking view": dict(futures=False, path="/@@slow-blocking"),
    "collective.futures": dict(futures=True, path="/@@slow-futures"),
    "stream iterator": dict(futures=True, path="/@@stream?kind=bytes"),
}


def timed_get(zope, path):
    start = time.monotonic()
    status, _ = zope.get(path, timeout=120)
    return status, time.monotonic() - start


def measure(zope, path, n, delay):
    url = f"{path}{'&' if '?' in path else '?'}delay={delay:g}"
    # Warm up: first publish of each view compiles/loads things.
    timed_get(zope, url)
    timed_get(zope, "/@@plain")
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        start = time.monotonic()
        slow = [pool.submit(timed_get, zope, url) for _ in range(n)]
        probes = []
        time.sleep(0.05)
        while not all(f.done() for f in slow):
            probes.append(timed_get(zope, "/@@plain")[1])
            time.sleep(0.1)
        results = [f.result() for f in slow]
        total = time.monotonic() - start
    latencies = sorted(t for _, t in results)
    return {
        "requests": n,
        "delay_s": delay,
        "statuses": sorted({s for s, _ in results}),
        "total_s": round(total, 3),
        "min_s": round(latencies[0], 3),
        "median_s": round(statistics.median(latencies), 3),
        "max_s": round(latencies[-1], 3),
        "plain_probes": len(probes),
        "plain_median_ms": round(statistics.median(probes) * 1000, 1) if probes else None,
        "plain_max_ms": round(max(probes) * 1000, 1) if probes else None,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    report = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "threads": 2,
        "results": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, config in CONFIGURATIONS.items():
            zope = ZopeInstance(pathlib.Path(tmp) / name.replace(" ", "-"), threads=2,
                                futures=config["futures"]).create().start()
            try:
                report["results"][name] = measure(
                    zope, config["path"], args.n, args.delay)
            finally:
                zope.stop()
    print(f"{args.n} concurrent requests, slow part {args.delay:g} s, threads = 2 "
          f"({report['machine']['cpus']} CPUs, Python {report['machine']['python']})")
    print(f"{'configuration':28} {'total':>7} {'min':>6} {'median':>7} {'max':>6}"
          f" {'plain median':>13} {'plain max':>10}")
    for name, r in report["results"].items():
        print(f"{name:28} {r['total_s']:6.2f}s {r['min_s']:5.2f}s {r['median_s']:6.2f}s"
              f" {r['max_s']:5.2f}s {r['plain_median_ms']:10.1f} ms"
              f" {r['plain_max_ms']:7.1f} ms")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
