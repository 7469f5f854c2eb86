"""N concurrent requests whose slow part takes L seconds, on a Zope with
``threads = 2``: stock Zope (the view waits) against collective.futures (the
promise waits, the worker is freed). A plain page is probed during the load.

Usage: python benchmarks/slow_requests.py [--n 20] [--delay 1] [--json FILE]

Real parts only: each configuration is a fresh Zope instance served by
waitress (runwsgi) in a subprocess; requests go over real sockets. Every
answer is checked (status 200 and the body the view renders): a wrong
answer, an error or an instance that died fails the run (exit status 1).
"""

import argparse
import concurrent.futures
import pathlib
import statistics
import sys
import tempfile
import time


sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
from common import Checks, command_line, machine  # noqa: E402
from zopeinstance import ZopeInstance  # noqa: E402


#: name -> the instance (with the package or stock), the slow view, and
#: the body it answers when it worked (formatted with the delay).
CONFIGURATIONS = {
    "stock Zope, blocking view": dict(
        futures=False, path="/@@slow-blocking", body="blocking: slow after {delay:g}s"),
    "collective.futures": dict(
        futures=True, path="/@@slow-futures", body="futures: slow after {delay:g}s"),
    "stream iterator": dict(
        futures=True, path="/@@stream?kind=bytes", body="streamed"),
}
PLAIN, PLAIN_BODY = "/@@plain", "plain page"
PROBE_INTERVAL = 0.1


def timed_get(zope, path):
    """(status, body, seconds)."""
    start = time.monotonic()
    status, body = zope.get(path, timeout=120)
    return status, body, time.monotonic() - start


def wrong_answers(answers, expected):
    """The (status, body) of the answers that are not 200 with ``expected``."""
    return [(status, body[:200]) for status, body, _ in answers
            if status != 200 or body != expected]


def measure(zope, name, config, n, delay, checks):
    url = f"{config['path']}{'&' if '?' in config['path'] else '?'}delay={delay:g}"
    expected = config["body"].format(delay=delay)
    # Warm up: first publish of each view compiles/loads things.
    for path, body in ((url, expected), (PLAIN, PLAIN_BODY)):
        wrong = wrong_answers([timed_get(zope, path)], body)
        checks.expect(not wrong, f"{name}: warm-up of {path} answered {wrong}")
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        start = time.monotonic()
        slow = [pool.submit(timed_get, zope, url) for _ in range(n)]
        probes = []
        time.sleep(0.05)
        while not all(f.done() for f in slow):
            probes.append(timed_get(zope, PLAIN))
            time.sleep(PROBE_INTERVAL)
        results = [f.result() for f in slow]
        total = time.monotonic() - start
    wrong = wrong_answers(results, expected)
    checks.expect(not wrong, f"{name}: {len(wrong)} of {n} slow requests answered "
                             f"wrongly, e.g. {wrong[:1]}")
    wrong = wrong_answers(probes, PLAIN_BODY)
    checks.expect(not wrong, f"{name}: {len(wrong)} of {len(probes)} plain-page "
                             f"probes answered wrongly, e.g. {wrong[:1]}")
    checks.expect(probes, f"{name}: no plain-page probe ran during the load")
    latencies = sorted(t for _, _, t in results)
    probe_times = [t for _, _, t in probes]
    return {
        "requests": n,
        "delay_s": delay,
        "statuses": sorted({s for s, _, _ in results}),
        "total_s": round(total, 3),
        "min_s": round(latencies[0], 3),
        "median_s": round(statistics.median(latencies), 3),
        "max_s": round(latencies[-1], 3),
        "plain_probes": len(probes),
        "plain_median_ms": (round(statistics.median(probe_times) * 1000, 1)
                            if probes else None),
        "plain_max_ms": round(max(probe_times) * 1000, 1) if probes else None,
    }


def run(n=20, delay=1.0, threads=2):
    """Measure each configuration on a fresh instance. Returns the report
    (plain data: "parameters", "results" by configuration, "failures");
    raises BenchmarkFailed, with the report, when an answer was wrong or
    an instance died."""
    checks = Checks()
    report = {
        "machine": machine(),
        "parameters": {"requests": n, "delay_s": delay, "threads": threads,
                       "probe_interval_s": PROBE_INTERVAL},
        "threads": threads,  # as the first version wrote it
        "results": {},
    }
    with checks.guard(report), tempfile.TemporaryDirectory() as tmp:
        for name, config in CONFIGURATIONS.items():
            zope = ZopeInstance(pathlib.Path(tmp) / name.replace(" ", "-"),
                                threads=threads, futures=config["futures"]
                                ).create().start()
            with checks.running(zope, name):
                report["results"][name] = measure(zope, name, config, n, delay,
                                                  checks)
    return checks.finish(report)


def summary(report):
    p, m = report["parameters"], report["machine"]
    lines = [
        f"{p['requests']} concurrent requests, slow part {p['delay_s']:g} s, "
        f"threads = {p['threads']} ({m['cpus']} CPUs, Python {m['python']})",
        f"{'configuration':28} {'total':>7} {'min':>6} {'median':>7} {'max':>6}"
        f" {'plain median':>13} {'plain max':>10}"]
    for name, r in report["results"].items():
        lines.append(
            f"{name:28} {r['total_s']:6.2f}s {r['min_s']:5.2f}s {r['median_s']:6.2f}s"
            f" {r['max_s']:5.2f}s {r['plain_median_ms']:10.1f} ms"
            f" {r['plain_max_ms']:7.1f} ms")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the report to this file")
    args = parser.parse_args(argv)
    return command_line(run, summary, args.json, n=args.n, delay=args.delay,
                        threads=args.threads)


if __name__ == "__main__":
    main()
