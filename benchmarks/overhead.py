"""The package's overhead on a plain page: CPU time of the Zope process per
plain-page request, stock Zope against Zope with collective.futures.

Usage: python benchmarks/overhead.py [--rounds 5] [--n 3000]
                                     [--concurrency 8] [--json FILE]

Real parts only: two Zope instances (threads = 2, stock waitress settings,
the benchmark app's views), one without the package's ZCML (stock) and one
with it (the package's default settings), served by waitress (runwsgi) in
subprocesses; requests go over real sockets from a closed-loop asyncio
client (C virtual users, keep-alive connections).

Measured to be stable on a shared machine: what counts is the CPU time the
Zope process used (utime + stime of /proc/PID/stat, all its threads, read
before and after each turn) divided by the requests of the turn, not the
wall-clock time a neighbour can steal. Both instances are up the whole
time and measured in alternating turns -- ROUNDS rounds of one turn each,
in the order stock, package in even rounds and package, stock in odd ones
-- so that a drift of the machine hits both alike. Each turn sends N
requests (after a warm-up of WARMUP per instance, not measured).

Reported, per configuration: the CPU per request (µs) of each round, their
median and their spread (min-max); the ratio of the medians
(package / stock) with its spread, given as the min-max of the per-round
ratios (package / stock of the same round), and the pooled ratio (all
the package's CPU over all of stock's); throughput per turn, for
information only (it depends on what else runs). A clock tick is 10 ms:
with the defaults a turn uses a few seconds of CPU, a resolution of well
under 1 %.

An answer other than 200 (or none), or an instance that died, fails the
run (exit status 1).
"""

import argparse
import asyncio
import os
import pathlib
import statistics
import sys
import tempfile
import time


HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]
import loadgen  # noqa: E402
from common import Checks, command_line, cpu_seconds, machine  # noqa: E402
from zopeinstance import ZopeInstance  # noqa: E402


PATH = "/@@bench-plain"
#: name -> (the package's ZCML loaded, waitress settings). "stock" is Zope
#: as shipped (waitress's select() loop); "stock, poll" runs the loop the
#: package sets, so that the package's own cost and the loop's can be told
#: apart.
CONFIGS = {"stock": (False, ""),
           "stock, poll": (False, "asyncore_use_poll = true"),
           "package": (True, "")}
WARMUP = 300
REQUEST_TIMEOUT = 30.0


async def _requests(port, n, concurrency):
    """``n`` GETs of PATH from ``concurrency`` users: the statuses (0: no
    answer, a broken connection or a timeout)."""
    statuses = []
    counter = iter(range(n))

    async def user():
        client = loadgen._Client("127.0.0.1", port)
        try:
            for _ in counter:
                try:
                    status = await asyncio.wait_for(client.get(PATH),
                                                    REQUEST_TIMEOUT)
                except (ConnectionError, OSError, asyncio.IncompleteReadError,
                        asyncio.TimeoutError, ValueError, IndexError):
                    client.close()
                    status = 0
                statuses.append(status)
        finally:
            client.close()

    # Backstop (each request is bounded already): at least 20 per second.
    await loadgen.run_users(user, concurrency, 60 + n / 20)
    return statuses


def turn(zope, n, concurrency):
    """One turn: (CPU µs per request, requests per second, statuses other
    than 200)."""
    cpu = cpu_seconds(zope.pid)
    start = time.monotonic()
    statuses = asyncio.run(_requests(zope.port, n, concurrency))
    wall = time.monotonic() - start
    cpu = cpu_seconds(zope.pid) - cpu
    return cpu / n * 1e6, n / wall, [s for s in statuses if s != 200]


def spread(values):
    return [round(min(values), 1), round(max(values), 1)]


def run(rounds=5, n=3000, concurrency=8):
    """Measure both configurations in alternating turns. Returns the report
    (plain data: "parameters", "results" by configuration (cpu_us per
    round, median, spread, throughput per round), "ratio", "failures");
    raises BenchmarkFailed, with the report, when an answer was not 200 or
    an instance died."""
    checks = Checks()
    report = {"machine": machine(), "parameters": {
        "rounds": rounds, "requests_per_turn": n, "concurrency": concurrency,
        "threads": 2, "path": PATH, "warmup_requests": WARMUP,
        "clock_tick_s": 1 / os.sysconf("SC_CLK_TCK")},
        "results": {name: {"cpu_us": [], "throughput_rps": []}
                    for name in CONFIGS},
        "order": []}
    with checks.guard(report), tempfile.TemporaryDirectory() as tmp:
        zopes = {}
        try:
            for name, (futures, server_extra) in CONFIGS.items():
                zopes[name] = ZopeInstance(
                    pathlib.Path(tmp) / name.replace(", ", "-"), threads=2,
                    futures=futures, server_extra=server_extra,
                    packages=("benchapp",)).create().start()
            for name, zope in zopes.items():
                statuses = asyncio.run(_requests(zope.port, WARMUP, concurrency))
                bad = [s for s in statuses if s != 200]
                checks.expect(not bad, f"{name}: warm-up: {len(bad)} of {WARMUP} "
                                       f"answers were not 200: {sorted(set(bad))}")
            for number in range(rounds):
                order = list(CONFIGS) if number % 2 == 0 else list(CONFIGS)[::-1]
                report["order"].append(order)
                for name in order:
                    cpu_us, rate, bad = turn(zopes[name], n, concurrency)
                    results = report["results"][name]
                    results["cpu_us"].append(round(cpu_us, 1))
                    results["throughput_rps"].append(round(rate, 1))
                    checks.expect(not bad, (
                        f"{name}, round {number + 1}: {len(bad)} of {n} answers "
                        f"were not 200: {sorted(set(bad))} (0: none)"))
        finally:
            for name, zope in zopes.items():
                checks.alive(zope, f"{name}, at the end")
                zope.stop()
    for results in report["results"].values():
        if results["cpu_us"]:
            results["median_cpu_us"] = round(statistics.median(results["cpu_us"]), 1)
            results["spread_cpu_us"] = spread(results["cpu_us"])
            results["median_throughput_rps"] = round(
                statistics.median(results["throughput_rps"]), 1)
    package = report["results"]["package"]
    for key, base in (("ratio", "stock"), ("ratio_same_loop", "stock, poll")):
        stock = report["results"][base]
        if stock["cpu_us"] and len(stock["cpu_us"]) == len(package["cpu_us"]):
            per_round = [round(p / s, 3)
                         for p, s in zip(package["cpu_us"], stock["cpu_us"])]
            report[key] = {
                "against": base,
                "medians": round(package["median_cpu_us"] / stock["median_cpu_us"], 3),
                "per_round": per_round,
                "spread": [min(per_round), max(per_round)],
                "spread_is": f"min-max of the per-round ratios package / {base}",
                # All rounds' CPU over all rounds' requests: another estimate.
                "pooled": round(sum(package["cpu_us"]) / sum(stock["cpu_us"]), 3),
            }
    return checks.finish(report)


def summary(report):
    p, m = report["parameters"], report["machine"]
    lines = [
        f"plain page ({p['path']}): Zope CPU per request, {p['rounds']} rounds x "
        f"{p['requests_per_turn']} requests at C = {p['concurrency']}, "
        f"threads = {p['threads']} ({m['cpus']} CPUs, Python {m['python']})",
        f"{'':12} {'median':>8} {'min-max':>15}  per round (µs)  |  req/s per round"]
    for name, r in report["results"].items():
        low, high = r["spread_cpu_us"]
        lines.append(
            f"{name:12} {r['median_cpu_us']:6.1f}µs {low:7.1f}-{high:<7.1f} "
            f"{' '.join(f'{v:.1f}' for v in r['cpu_us'])}  |  "
            f"{' '.join(f'{v:.0f}' for v in r['throughput_rps'])}")
    for key in ("ratio", "ratio_same_loop"):
        ratio = report[key]
        lines.append(
            f"package / {ratio['against']}: {ratio['medians']:.3f} (ratio of the "
            f"medians); per-round ratios {ratio['spread'][0]:.3f}-"
            f"{ratio['spread'][1]:.3f}; pooled {ratio['pooled']:.3f}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", help="also write the report to this file")
    args = parser.parse_args(argv)
    return command_line(run, summary, args.json, rounds=args.rounds, n=args.n,
                        concurrency=args.concurrency)


if __name__ == "__main__":
    main()
