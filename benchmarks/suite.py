"""The benchmark suite: collective.futures against stock Zope and against
the physical limit.

    ./scripts/bench            # the whole suite, about 4-5 minutes on 2 cores
    ./scripts/bench --quick    # a smoke run (well under a minute)

Real parts only: a slow upstream HTTP service on 127.0.0.1 (asyncio, in a
process of its own, latency L per request), real Zope instances served by
real waitress (``runwsgi``), and a closed-loop asyncio load generator whose
own ceiling is measured against a trivial server. Each measurement gets a
fresh instance (the quick run reuses one per configuration).

The full run then runs the other benchmarks whose figures the README
publishes, with the README's parameters (``slow_requests.py``: 20
requests, 1 s, threads = 2; ``stream_memory.py --mib 1024``;
``executors.py``), and stores their figures in the report under their
names; ``--quick`` runs them with the small parameters of CI's smoke runs.

Writes a table to stdout, and ``benchmark.json`` (every figure, the
machine, the commit measured) and ``benchmark.png`` (throughput and
plain-page p99 against C) to ``--out`` (default ``var/benchmark``). When one
of the other benchmarks fails (a wrong answer, an instance that died), the
files are still written, with the reasons under "failures", and the suite
exits with status 1.
"""

import argparse
import asyncio
import dataclasses
import json
import pathlib
import re
import subprocess
import sys
import tempfile
import threading
import time


HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "tests")]

import common  # noqa: E402
import executors  # noqa: E402
import fragments_plone  # noqa: E402
import loadgen  # noqa: E402
import overhead  # noqa: E402
import soak  # noqa: E402
import slow_requests  # noqa: E402
import stream_memory  # noqa: E402
import tasks  # noqa: E402
import tasks_redis  # noqa: E402
from zopeinstance import ZopeInstance, subprocess_env  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Config:
    name: str
    path: str
    threads: int = 2
    futures: bool = True
    #: product-config on top of FUTURES_CONFIG
    extra: tuple = ()
    #: the concurrencies it runs at (default: all)
    only: tuple = ()


CONFIGS = (
    Config("stock, threads=2", "/@@bench-blocking", futures=False),
    Config("stock, threads=64", "/@@bench-blocking", threads=64, futures=False),
    Config("futures, threads executor", "/@@bench-futures"),
    Config("stream iterator", "/@@bench-stream"),
    Config("futures, asyncio executor", "/@@bench-asyncio"),
    # The same as the third, without the fairness gate (resume_slots 0):
    # the "before" of the fairness remedy.
    Config("futures, threads, no fairness gate", "/@@bench-futures",
           extra=(("resume_slots", "0"),), only=(64, 256)),
    # A stream whose fn is a coroutine: no thread while it awaits.
    Config("stream iterator, async fn", "/@@bench-stream-async"),
)

#: The full run's scale measurements: thousands of concurrent slow requests
#: (configuration name -> concurrencies), at SCALE_LATENCY for SCALE_DURATION
#: seconds (five requests per virtual user), with the bounds raised so
#: that only the machine limits them.
SCALE = {"futures, asyncio executor": (1024, 4096),
         "stream iterator, async fn": (2048,)}
SCALE_LATENCY, SCALE_DURATION = 10.0, 60.0
SCALE_CONFIG = (("max_suspended", "10000"), ("max_streams", "10000"),
                ("asyncio_max_concurrency", "10000"), ("timeout", "120"))

#: Settings of the collective.futures instances, sized for the largest C
#: measured: the thread executor (max_workers) and the stream pool
#: (max_streams) hold a thread per slow request; with the defaults (32 and
#: 64) they would top out at 32 / L requests per second, and streams past 64
#: would be answered 503.
FUTURES_CONFIG = {"max_workers": "512", "max_streams": "512",
                  "asyncio_max_concurrency": "2000", "timeout": "60"}
#: waitress settings of every instance. asyncore_use_poll: waitress's
#: default select() loop dies (ValueError, exit 1) at the first descriptor
#: numbered 1024 or more, and a suspended request holds two (its client's
#: and its upstream's): at C = 512 the asyncio configuration crashed.
SERVER_EXTRA = "connection_limit = 4000\nbacklog = 4096\nasyncore_use_poll = true"

#: The other benchmarks whose figures the README publishes: report key ->
#: (module with run(), the full run's parameters (the README's), --quick's
#: (CI's smoke runs)).
class InPlone:
    """A benchmark that runs in the Plone environment (``.venv-plone``, whose
    interpreter ``FUTURES_PLONE_PYTHON`` names; scripts/bench makes it), as a
    program writing its report to a JSON file."""

    def __init__(self, module):
        self.module = module
        self.summary = module.summary

    def run(self, **parameters):
        import os
        python = os.environ.get("FUTURES_PLONE_PYTHON",
                                str(ROOT / ".venv-plone/bin/python"))
        with tempfile.TemporaryDirectory() as tmp:
            out = pathlib.Path(tmp) / "report.json"
            command = [python, str(HERE / f"{self.module.__name__}.py"),
                       "--json", str(out)]
            for name, value in parameters.items():
                command += [f"--{name}", str(value)]
            try:
                done = subprocess.run(command, capture_output=True, text=True,
                                      timeout=1800)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise common.BenchmarkFailed(
                    {"failures": [f"{type(exc).__name__}: {exc}"]}) from exc
            if not out.exists():
                raise common.BenchmarkFailed({"failures": [
                    f"{python} exited with {done.returncode} and no report: "
                    f"{(done.stdout + done.stderr)[-2000:]}"]})
            report = json.loads(out.read_text())
        if done.returncode and not report.get("failures"):
            report["failures"] = [f"exit status {done.returncode}"]
        if report.get("failures"):
            raise common.BenchmarkFailed(report)
        return report


OTHERS = {
    "slow_requests": (slow_requests, dict(n=20, delay=1.0, threads=2),
                      dict(n=4, delay=0.2)),
    "stream_memory": (stream_memory, dict(mib=1024), dict(mib=64)),
    "executors": (executors, dict(), dict(n=100, delay=0.2)),
    "overhead": (overhead, dict(rounds=5, n=3000), dict(rounds=2, n=300)),
    "soak": (soak, dict(n=20000), dict(n=400)),
    "tasks": (tasks, dict(n=2000, sparse=200, flood_tasks=10000),
              dict(n=100, sparse=10, flood_tasks=1000, seconds=1.0)),
    "tasks_redis": (tasks_redis, dict(n=1000, sparse=100),
                    dict(n=50, sparse=5, consumers=(1, 2))),
    "fragments_plone": (InPlone(fragments_plone),
                        dict(n=200, reps=3, visitors=20, delay=1.0, tries=3),
                        dict(n=20, reps=1, visitors=4, delay=0.5, tries=1)),
}


# measurement helpers

def percentile(samples, q):
    """(value, censored) at quantile q of the samples' latencies, in s."""
    if not samples:
        return None, False
    ordered = sorted(samples, key=lambda s: s.latency)
    sample = ordered[min(len(ordered) - 1, int(q * len(ordered)))]
    return sample.latency, sample.censored


def describe(samples, prefix):
    figures = {f"{prefix}_count": len(samples),
               f"{prefix}_censored": sum(s.censored for s in samples)}
    for q, label in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        value, censored = percentile(samples, q)
        figures[f"{prefix}_{label}_ms"] = None if value is None else round(value * 1000, 1)
        figures[f"{prefix}_{label}_censored"] = censored
    return figures


class Sampler:
    """Peak RSS and thread count of a process, sampled every 50 ms."""

    def __init__(self, zope):
        self.zope = zope
        self.rss = self.threads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler",
                                        daemon=True)

    def _run(self):
        while True:
            try:
                self.rss = max(self.rss, self.zope.rss())
                self.threads = max(self.threads, self.zope.thread_count())
            except (OSError, RuntimeError):
                return
            if self._stop.wait(0.05):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


def load(zope, path, concurrency, duration, probe="/@@bench-plain", stagger=1.0):
    return asyncio.run(loadgen.run(
        "127.0.0.1", zope.port, path, concurrency, duration,
        probe_path=probe, stagger=stagger))


def throughput(samples, started, end, warm):
    """Requests per second after ``warm`` seconds, summed over the virtual
    users. A user with two or more completions in the window contributes
    (k - 1) / (time between its first and last): exact for a closed loop,
    where counting completions in a fixed window is off by up to one per
    user. A user with one (an overloaded server) contributes its count over
    the window.

    Two completions are enough: their span is one whole cycle. Asking for
    three (as this did until the 4,096-request scale run) sent the users
    whose cycle fits about 2.5 times into the window to the count-over-the-
    window estimate, which undercounts them: at C = 4,096, L = 10 s, a
    40 s run, the figure came out about 10 % under C / cycle (Little's
    law), the throughput the server really sustained."""
    window_start = started + warm
    window = max(end - window_start, 1e-9)
    by_user = {}
    for s in samples:
        if not s.censored and s.status == 200 and s.end >= window_start:
            by_user.setdefault(s.user, []).append(s.end)
    total = 0.0
    for ends in by_user.values():
        if len(ends) >= 2:
            total += (len(ends) - 1) / max(max(ends) - min(ends), 1e-9)
        else:
            total += len(ends) / window
    return total


class Upstream:
    """The slow service, in its own process."""

    def __enter__(self):
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "tests/slow_upstream.py"), "0"],
            stdout=subprocess.PIPE, text=True, env=subprocess_env())
        line = self.process.stdout.readline()
        match = re.match(r"listening on (\d+)", line)
        if not match:
            self.process.kill()
            raise RuntimeError(f"the upstream did not start: {line!r}")
        self.port = int(match.group(1))
        return self

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait(10)


# the suite

class Suite:
    def __init__(self, args, tmp, upstream):
        self.args = args
        self.tmp = pathlib.Path(tmp)
        self.upstream = upstream
        self.instances = 0
        #: what went wrong in a measurement (see check()): report["failures"]
        self.failures = []
        self.report = {"machine": common.machine(), "settings": {
            "latency_s": args.latency, "duration_s": args.duration,
            "concurrency": args.concurrency, "futures_config": FUTURES_CONFIG,
            "waitress": SERVER_EXTRA.replace("\n", "; "),
            "fresh_instance_per_measurement": not args.quick,
        }, "results": {}, "ceilings": {}, "ratios": {},
            "scale": {"latency_s": SCALE_LATENCY, "duration_s": SCALE_DURATION,
                      "config": dict(SCALE_CONFIG)}}

    def instance(self, config):
        self.instances += 1
        zope = ZopeInstance(
            self.tmp / f"zope{self.instances}", threads=config.threads,
            futures=config.futures, packages=("benchapp",),
            product_config=({**FUTURES_CONFIG, **dict(config.extra)}
                            if config.futures else None),
            server_extra=SERVER_EXTRA).create().start()
        for path in (f"{config.path}?port={self.upstream.port}&delay=0",
                     "/@@bench-plain"):
            for _ in range(3):
                zope.request(path)
        return zope

    def url(self, config, latency):
        return f"{config.path}?port={self.upstream.port}&delay={latency:g}"

    def measure(self, zope, config, concurrency, latency, duration):
        unloaded = load(zope, "/@@bench-plain", 0, self.args.probe_seconds)[1]
        rss_before, cpu_before = zope.rss(), common.cpu_seconds(zope.pid)
        with Sampler(zope) as sampler:
            samples, probes, started, end = load(
                zope, self.url(config, latency), concurrency, duration,
                stagger=max(latency, 0.05))
        cpu = common.cpu_seconds(zope.pid) - cpu_before
        warm = min(latency + 0.5, duration / 3)
        rate = throughput(samples, started, end, warm)
        figures = {
            "concurrency": concurrency, "latency_s": latency,
            "throughput_rps": round(rate, 2),
            "errors": sum(1 for s in samples if not s.censored and s.status != 200),
            "rss_before_mib": round(rss_before / 2**20, 1),
            "rss_peak_mib": round(sampler.rss / 2**20, 1),
            "threads_peak": sampler.threads,
            "cpu_seconds": round(cpu, 3),
            "completed": sum(1 for s in samples if not s.censored),
        }
        figures.update(describe(samples, "slow"))
        figures.update(describe(probes, "plain"))
        figures.update(describe(unloaded, "plain_unloaded"))
        self.check(zope, f"{config.name}, C = {concurrency}, L = {latency:g} s",
                   samples, probes + unloaded)
        return figures

    def check(self, zope, what, samples, probes=()):
        """A measurement whose instance died, or whose requests failed (a
        status other than 200, a refused or broken connection), measured a
        failure: record it (the suite then exits with status 1). Requests
        still waiting at the end (censored) are not failures."""
        failed = [s.status for s in samples if not s.censored and s.status != 200]
        if failed:
            self.failures.append(f"{what}: {len(failed)} of {len(samples)} requests "
                                 f"failed (statuses {sorted(set(failed))}; 0: no "
                                 f"response)")
        failed = [s.status for s in probes if not s.censored and s.status != 200]
        if failed:
            self.failures.append(f"{what}: {len(failed)} of {len(probes)} plain-page "
                                 f"probes failed (statuses {sorted(set(failed))})")
        code = zope.process.poll()
        if code is not None:
            self.failures.append(f"{what}: the Zope instance died (exit code {code}); "
                                 f"its log ends: {common.log_tail(zope)!r}")

    def run_config(self, config):
        args = self.args
        results = self.report["results"][config.name] = {}
        concurrencies = list(args.concurrency)
        if args.full_extra and config.futures:
            concurrencies += args.full_extra
        if config.only:
            concurrencies = [c for c in concurrencies if c in config.only] or \
                concurrencies[-1:]
        zope = self.instance(config) if args.quick else None
        try:
            ceiling_zope = zope or self.instance(config)
            ceiling = self.measure(ceiling_zope, config, 16, 0.0, args.duration)
            if not args.quick:
                ceiling_zope.stop()
            self.report["ceilings"][config.name] = ceiling
            print(f"  {config.name}: CPU ceiling (L = 0, C = 16) "
                  f"{ceiling['throughput_rps']:.0f} req/s", flush=True)
            for concurrency in concurrencies:
                run_zope = zope or self.instance(config)
                try:
                    figures = self.measure(run_zope, config, concurrency,
                                           args.latency, args.duration)
                finally:
                    if not args.quick:
                        run_zope.stop()
                limit = min(concurrency / args.latency, ceiling["throughput_rps"])
                figures["limit_rps"] = round(limit, 2)
                figures["efficiency"] = round(figures["throughput_rps"] / limit, 3)
                unloaded = figures["plain_unloaded_p99_ms"] or 0
                figures["fairness"] = (
                    round(figures["plain_p99_ms"] / unloaded, 2)
                    if unloaded and figures["plain_p99_ms"] is not None else None)
                results[str(concurrency)] = figures
                print(f"  {config.name}: C = {concurrency}: "
                      f"{figures['throughput_rps']:.1f} req/s "
                      f"(efficiency {figures['efficiency']:.2f}), plain p99 "
                      f"{fmt_ms(figures, 'plain_p99')}", flush=True)
        finally:
            if zope is not None:
                zope.stop()

    def scale(self):
        """SCALE: each concurrency on a fresh instance; efficiency against
        min(C / L, the configuration's CPU ceiling)."""
        results = self.report["scale"]["results"] = {}
        by_name = {config.name: config for config in CONFIGS}
        for name, concurrencies in SCALE.items():
            config = dataclasses.replace(by_name[name],
                                         extra=by_name[name].extra + SCALE_CONFIG)
            ceiling = self.report["ceilings"][name]["throughput_rps"]
            for concurrency in concurrencies:
                zope = self.instance(config)
                try:
                    figures = self.measure(zope, config, concurrency,
                                           SCALE_LATENCY, SCALE_DURATION)
                finally:
                    zope.stop()
                limit = min(concurrency / SCALE_LATENCY, ceiling)
                figures["limit_rps"] = round(limit, 2)
                figures["efficiency"] = round(figures["throughput_rps"] / limit, 3)
                grown = figures["rss_peak_mib"] - figures["rss_before_mib"]
                figures["kib_per_request"] = round(grown * 1024 / concurrency, 1)
                figures["threads_per_request"] = round(
                    figures["threads_peak"] / concurrency, 4)
                results.setdefault(name, {})[str(concurrency)] = figures
                print(f"  scale: {name}, C = {concurrency}, L = {SCALE_LATENCY:g} s: "
                      f"{figures['throughput_rps']:.1f} req/s (efficiency "
                      f"{figures['efficiency']:.2f}), {figures['threads_peak']} "
                      f"threads, {figures['kib_per_request']} KiB per request",
                      flush=True)

    def loadgen_ceiling(self):
        """The load generator against a trivial server (the upstream, no
        delay): what it can deliver at most."""
        class Trivial:
            port = self.upstream.port
        samples, _, started, end = asyncio.run(loadgen.run(
            "127.0.0.1", Trivial.port, "/?delay=0", 64, self.args.duration))
        rate = throughput(samples, started, end, 0.2)
        self.report["loadgen_ceiling_rps"] = round(rate, 1)
        print(f"  load generator ceiling (trivial asyncio server, C = 64): "
              f"{rate:.0f} req/s", flush=True)

    def ratios(self):
        ratios = self.report["ratios"]
        results, ceilings = self.report["results"], self.report["ceilings"]
        for config in CONFIGS:
            for concurrency in ("64", "256"):
                if concurrency in results.get(config.name, {}):
                    ratios[f"efficiency C={concurrency}: {config.name}"] = \
                        results[config.name][concurrency]["efficiency"]
            worst = [f["fairness"] for f in results.get(config.name, {}).values()
                     if f["fairness"] is not None]
            if worst:
                ratios[f"fairness (worst C): {config.name}"] = max(worst)
        big = max(int(c) for c in results[CONFIGS[2].name])
        for config in CONFIGS[2:5]:
            f = results[config.name][str(big)]
            per = (f["rss_peak_mib"] - f["rss_before_mib"]) * 1024 / big
            ratios[f"KiB per suspended request, C={big}: {config.name}"] = round(per, 1)
        sixty_four = results[CONFIGS[1].name].get("64")
        if sixty_four:
            per = (sixty_four["rss_peak_mib"] - sixty_four["rss_before_mib"]) * 1024 / 64
            ratios["KiB per blocked request, threads=64, C=64"] = round(per, 1)
            ratios["RSS MiB, threads=64 holding 64 blocked requests"] = \
                sixty_four["rss_peak_mib"]
            for config in CONFIGS[2:5]:
                ratios[f"RSS MiB, {config.name} holding {big}"] = \
                    results[config.name][str(big)]["rss_peak_mib"]
        once = ceilings[CONFIGS[0].name]
        twice = ceilings[CONFIGS[2].name]
        per_once = once["cpu_seconds"] / max(once["completed"], 1) * 1000
        per_twice = twice["cpu_seconds"] / max(twice["completed"], 1) * 1000
        ratios["CPU ms per request, rendered once (stock, L=0)"] = round(per_once, 3)
        ratios["CPU ms per request, two passes (futures, L=0)"] = round(per_twice, 3)
        ratios["two-pass cost (CPU ratio)"] = round(per_twice / per_once, 2)


def run_others(report, quick):
    """Run OTHERS, each on fresh instances of its own; store each one's
    report under its key, and the reasons of those that failed in
    ``report["failures"]``."""
    for key, (module, full, small) in OTHERS.items():
        parameters = small if quick else full
        print(f"  {key}: {parameters}", flush=True)
        started = time.monotonic()
        try:
            figures = module.run(**parameters)
        except common.BenchmarkFailed as exc:
            figures = exc.report
            report["failures"] += [f"{key}: {reason}" for reason in figures["failures"]]
        figures["run_seconds"] = round(time.monotonic() - started, 1)
        report[key] = figures
        try:
            print(module.summary(figures), flush=True)
        except (KeyError, TypeError, ValueError):
            print(f"  {key} FAILED: {figures['failures']}", flush=True)


def fmt_ms(figures, prefix):
    value = figures[f"{prefix}_ms"]
    if value is None:
        return "-"
    text = f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"
    return ("≥" if figures[f"{prefix}_censored"] else "") + text


def table(report):
    lines = []
    header = (f"{'configuration':36} {'C':>4} {'req/s':>7} {'limit':>6} {'eff.':>5} "
              f"{'p50':>8} {'p95':>8} {'p99':>8} {'plain p50':>9} {'plain p99':>9} "
              f"{'RSS MiB':>7} {'thr':>4}")
    lines.append(header)
    lines.append("-" * len(header))
    for name, results in report["results"].items():
        for concurrency, f in results.items():
            lines.append(
                f"{name:36} {concurrency:>4} {f['throughput_rps']:7.1f} "
                f"{f['limit_rps']:6.1f} {f['efficiency']:5.2f} "
                f"{fmt_ms(f, 'slow_p50'):>8} {fmt_ms(f, 'slow_p95'):>8} "
                f"{fmt_ms(f, 'slow_p99'):>8} {fmt_ms(f, 'plain_p50'):>9} "
                f"{fmt_ms(f, 'plain_p99'):>9} {f['rss_peak_mib']:7.1f} "
                f"{f['threads_peak']:4}")
    for name, results in report.get("scale", {}).get("results", {}).items():
        for concurrency, f in results.items():
            lines.append(
                f"{'scale (L = ' + format(f['latency_s'], 'g') + ' s): ' + name:36} "
                f"{concurrency:>4} {f['throughput_rps']:7.1f} "
                f"{f['limit_rps']:6.1f} {f['efficiency']:5.2f} "
                f"{fmt_ms(f, 'slow_p50'):>8} {fmt_ms(f, 'slow_p95'):>8} "
                f"{fmt_ms(f, 'slow_p99'):>8} {fmt_ms(f, 'plain_p50'):>9} "
                f"{fmt_ms(f, 'plain_p99'):>9} {f['rss_peak_mib']:7.1f} "
                f"{f['threads_peak']:4}")
    lines.append("")
    lines.append(f"load generator ceiling: {report['loadgen_ceiling_rps']:.0f} req/s")
    for name, f in report["ceilings"].items():
        lines.append(f"CPU ceiling (L = 0, C = 16), {name}: {f['throughput_rps']:.0f} req/s")
    lines.append("")
    for name, value in report["ratios"].items():
        lines.append(f"{name}: {value}")
    return "\n".join(lines)


def plot(report, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    latency = report["settings"]["latency_s"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    allc = sorted({int(c) for r in report["results"].values() for c in r})
    left.plot(allc, [c / latency for c in allc], "k--", label=f"C / L (L = {latency:g} s)")
    for name, results in report["results"].items():
        cs = sorted(int(c) for c in results)
        left.plot(cs, [results[str(c)]["throughput_rps"] for c in cs], "o-", label=name)
        right.plot(cs, [max(results[str(c)]["plain_p99_ms"] or 0.1, 0.1) for c in cs],
                   "o-", label=name)
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent slow requests C")
        axis.grid(True, which="both", alpha=0.3)
    left.set_yscale("log")
    left.set_ylabel("slow-view throughput (req/s)")
    left.set_title("Throughput against the physical limit")
    left.legend(fontsize=8)
    right.set_yscale("log")
    right.set_ylabel("plain page p99 under load (ms)")
    right.set_title("A plain page during the load")
    m = report["machine"]
    fig.suptitle(f"collective.futures, Zope {m['Zope']}, waitress {m['waitress']}, "
                 f"{m['cpus']} CPUs ({m.get('cpu', '?')})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: checks that the suite works, not how fast")
    parser.add_argument("--out", default=str(ROOT / "var/benchmark"))
    args = parser.parse_args(argv)
    if args.quick:
        args.latency, args.duration, args.probe_seconds = 0.2, 1.0, 0.3
        args.concurrency, args.full_extra = [1, 16], []
    else:
        args.latency, args.duration, args.probe_seconds = 1.0, 6.0, 1.0
        args.concurrency, args.full_extra = [1, 16, 64, 256], [512]
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    outputs = [out / name for name in ("benchmark.json", "benchmark.txt",
                                       "benchmark.png")]
    # The code measured: the tree as the run starts (its own output files
    # aside), checked again at the end.
    measured = common.commit(exclude=outputs)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, Upstream() as upstream:
        suite = Suite(args, tmp, upstream)
        print(f"upstream on 127.0.0.1:{upstream.port}, L = {args.latency:g} s, "
              f"{args.duration:g} s per measurement", flush=True)
        suite.loadgen_ceiling()
        for config in CONFIGS:
            suite.run_config(config)
        if not args.quick:
            suite.scale()
        suite.ratios()
    report = suite.report
    report["commit"] = measured
    report["failures"] = list(suite.failures)
    print("the other benchmarks the README quotes", flush=True)
    run_others(report, args.quick)
    at_end = common.commit(exclude=outputs)
    if at_end != measured:
        measured["changed_during_run"] = True
        measured["at_end"] = at_end
        print("WARNING: the tree changed during the run: the figures may "
              "describe more than one version of the code", flush=True)
    report["suite_seconds"] = round(time.monotonic() - started, 1)
    text = table(report)
    print()
    print(text)
    (out / "benchmark.json").write_text(json.dumps(report, indent=2))
    (out / "benchmark.txt").write_text(text + "\n")
    plot(report, out / "benchmark.png")
    print(f"\nwrote {out / 'benchmark.json'}, {out / 'benchmark.png'} "
          f"in {report['suite_seconds']} s")
    if report["failures"]:
        sys.exit("FAILED:\n  " + "\n  ".join(report["failures"]))
    return report


if __name__ == "__main__":
    main()
