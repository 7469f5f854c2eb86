"""Background tasks end to end: collective.futures's task queue (its
SQLite backend) side by side with Huey's SQLite storage, the engine of
collective.taskqueue2, in the same run; and a plain page during a flood
of tasks against the same page unloaded.

Usage: python benchmarks/tasks.py [--n 2000] [--sparse 100] [--flood 10000]
                                  [--json FILE]

Real parts only: one Zope instance per engine (threads = 2, waitress,
FileStorage), the benchmark app's views; the task is a no-op view that
notes the time it was called (``benchapp/tasks.py``).

- collective.futures: ``task_consumer on`` and otherwise the defaults
  (one task at a time, the SQLite queue in ``var/``); a task is a request
  published by ZPublisher on one of the two worker threads, its id
  recorded in the ZODB with its work.
- Huey 3 (``SqliteHuey``, SQLite's default synchronous mode, as
  collective.taskqueue2 configures it): a consumer thread in the Zope
  instance with collective.taskqueue2's options (one worker thread, polling
  delays from 0.1 s growing to 1 s); its task opens a ZODB connection,
  calls the view with a made-up request and commits.

Measured per engine:

- **sparse**: ``--sparse`` tasks, one per request, GAP seconds apart (the
  queue idle in between): commit-to-start latency, from the start of the
  queuing transaction's commit (for Huey, which is not bound to the
  transaction, from the call of ``enqueue``) to the call of the task's
  view, p50, p99 and max;
- **burst**: ``--n`` tasks queued by one request: tasks per second end to
  end (n over the time from the start of the commit, or of the first
  ``enqueue``, to the last task's start), the rate at which they were
  consumed ((n - 1) over the time from the first start to the last), and
  the Zope process's CPU per task (queuing and running, utime + stime
  over the burst).

Every task's work must have committed exactly once (none missing, none
twice), or the run fails; calls of its view that a ConflictError made Zope
retry are counted apart (``retried_calls``). Then, for collective.futures only, **flood**: a plain page,
requested by ``--concurrency`` closed-loop clients for ``--seconds``
seconds, unloaded, then while ``--flood`` tasks queued in one transaction
are being consumed (the flood must still be running when the measurement
ends): p50 and p99 of each, and the tasks consumed meanwhile.
"""

import argparse
import asyncio
import json
import pathlib
import random
import sys
import tempfile
import time


HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]
import loadgen  # noqa: E402
from common import Checks, command_line, machine  # noqa: E402
from zopeinstance import ZopeInstance  # noqa: E402


ENGINES = ("futures", "huey")
#: collective.taskqueue2's consumer options (huey_consumer.py).
HUEY_CONSUMER = {"workers": 1, "initial_delay": 0.1, "backoff": 1.15, "max_delay": 1.0}
#: Seconds between the sparse tasks' requests (uniform).
GAP = (0.05, 0.15)
PLAIN = "/@@bench-plain"


def quantile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


def ms(seconds):
    return None if seconds is None else round(seconds * 1000, 1)


class Engine:
    """One instance consuming tasks with one engine."""

    def __init__(self, zope, engine, checks):
        self.zope, self.engine, self.checks = zope, engine, checks

    def queue(self, batch, n, first=0, timeout=60):
        status, body = self.zope.get(
            f"/@@bench-task-queue?engine={self.engine}&batch={batch}&n={n}"
            f"&first={first}", timeout=timeout)
        if status != 200:
            raise RuntimeError(f"queuing {n} tasks answered {status}: {body[:300]}")

    def _read(self, batch):
        status, body = self.zope.get(f"/@@bench-task-figures?batch={batch}")
        if status != 200:
            raise RuntimeError(f"the figures answered {status}: {body[:300]}")
        return json.loads(body)

    def figures(self, batch):
        """({task number: commit time}, [(task number, start)]): the
        starts of the calls whose transaction committed."""
        data = self._read(batch)
        return ({int(i): t for i, t in data["committed"].items()},
                [tuple(pair) for pair in data["started"]])

    def calls(self, batch):
        """The task view's calls, those that a ConflictError retried too."""
        return self._read(batch)["calls"]

    def wait_started(self, batch, n, timeout):
        """The batch's starts, once ``n`` have started and a further
        second brought no more (a task run twice would show)."""
        deadline = time.monotonic() + timeout
        while True:
            committed, started = self.figures(batch)
            if len(started) >= n:
                time.sleep(1.0)
                return self.figures(batch)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.engine}, {batch}: {len(started)} of {n} "
                                   f"tasks started within {timeout:g} s")
            time.sleep(0.1)

    def exactly_once(self, batch, started, n):
        numbers = sorted(i for i, _ in started)
        return self.checks.expect(numbers == list(range(n)), (
            f"{self.engine}, {batch}: {len(numbers)} starts for {n} tasks, "
            f"{len(set(numbers))} distinct: a task was lost or run twice"))

    def sparse(self, n):
        for i in range(n):
            self.queue("sparse", 1, first=i)
            time.sleep(random.uniform(*GAP))
        committed, started = self.wait_started("sparse", n, timeout=60)
        self.exactly_once("sparse", started, n)
        latencies = [t - committed[i] for i, t in started]
        return {"tasks": n,
                "commit_to_start_p50_ms": ms(quantile(latencies, 0.5)),
                "commit_to_start_p99_ms": ms(quantile(latencies, 0.99)),
                "commit_to_start_max_ms": ms(max(latencies))}

    def cpu_seconds(self):
        return self.zope.cpu_seconds()

    def burst(self, n):
        cpu = self.cpu_seconds()
        self.queue("burst", n, timeout=300)
        committed, started = self.wait_started("burst", n, timeout=max(60, n / 5))
        cpu = self.cpu_seconds() - cpu  # and a settling second, idle
        self.exactly_once("burst", started, n)
        starts = sorted(t for _, t in started)
        span = starts[-1] - starts[0]
        end_to_end = starts[-1] - min(committed.values())
        return {"tasks": n,
                "retried_calls": self.calls("burst") - n,
                "tasks_per_s": round(n / end_to_end, 1),
                "drain_tasks_per_s": round((n - 1) / span, 1) if span > 0 else None,
                "queued_in_s": round(max(committed.values()) - min(committed.values()), 2),
                "commit_to_last_start_s": round(end_to_end, 2),
                "cpu_ms_per_task": round(cpu / n * 1000, 2)}


def plain_load(zope, concurrency, seconds):
    load, _, _, _ = asyncio.run(loadgen.run(
        "127.0.0.1", zope.port, PLAIN, concurrency, seconds, stagger=0.2))
    # Those still in flight at the end are not answers yet.
    done = [s for s in load if not s.censored]
    answered = [s for s in done if s.status == 200]
    latencies = [s.latency for s in answered]
    return {"requests": len(done), "answered_200": len(answered),
            "p50_ms": ms(quantile(latencies, 0.5)),
            "p99_ms": ms(quantile(latencies, 0.99))}


def flood(zope, checks, n, concurrency, seconds):
    engine = Engine(zope, "futures", checks)
    unloaded = plain_load(zope, concurrency, seconds)
    engine.queue("flood", n, timeout=600)
    # The consumer is at work before the measurement starts.
    deadline = time.monotonic() + 60
    while len(engine.figures("flood")[1]) < min(50, n):
        if time.monotonic() > deadline:
            raise RuntimeError("the flood did not start within 60 s")
        time.sleep(0.1)
    before = len(engine.figures("flood")[1])
    loaded = plain_load(zope, concurrency, seconds)
    after = len(engine.figures("flood")[1])
    checks.expect(after < n, (
        f"the flood of {n} tasks was over before the plain-page measurement "
        f"ended: it did not measure a page during a flood (use a larger --flood)"))
    for name, figures in (("unloaded", unloaded), ("flood", loaded)):
        checks.expect(figures["answered_200"] == figures["requests"] > 0, (
            f"plain page, {name}: {figures['answered_200']} of "
            f"{figures['requests']} requests answered 200"))
    return {"tasks": n, "concurrency": concurrency, "seconds": seconds,
            "unloaded": unloaded, "during_flood": loaded,
            "tasks_run_meanwhile": after - before,
            "tasks_per_s_meanwhile": round((after - before) / seconds, 1)}


def run(n=2000, sparse=200, flood_tasks=10000, concurrency=4, seconds=5.0):
    """Measure both engines and the flood. Returns the report (plain
    data); raises BenchmarkFailed, with the report, when a task was lost
    or ran twice, a page was not answered or an instance died."""
    from importlib.metadata import version
    checks = Checks()
    report = {"machine": machine(),
              "versions": {"huey": version("huey")},
              "parameters": {"n": n, "sparse": sparse, "flood": flood_tasks,
                             "concurrency": concurrency, "seconds": seconds,
                             "threads": 2, "sparse_gap_s": list(GAP),
                             "huey_consumer": HUEY_CONSUMER},
              "engines": {}}
    with checks.guard(report), tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for name in ENGINES:
            config = {"task_consumer": "on"} if name == "futures" else {}
            zope = ZopeInstance(tmp / name, threads=2, packages=("benchapp",),
                                product_config=config).create().start()
            with checks.running(zope, name):
                if name == "huey":
                    options = "&".join(f"{k}={v}" for k, v in HUEY_CONSUMER.items())
                    status, body = zope.get(
                        f"/@@bench-huey-start?db={tmp / 'huey.db'}&{options}")
                    if status != 200:
                        raise RuntimeError(f"Huey's consumer: {status} {body[:300]}")
                engine = Engine(zope, name, checks)
                engine.queue("warm-up", 20)
                engine.wait_started("warm-up", 20, timeout=60)
                report["engines"][name] = {"sparse": engine.sparse(sparse),
                                           "burst": engine.burst(n)}
                if name == "futures":
                    report["flood"] = flood(zope, checks, flood_tasks, concurrency,
                                            seconds)
    return checks.finish(report)


def summary(report):
    lines = []
    for name, figures in report["engines"].items():
        sparse, burst = figures["sparse"], figures["burst"]
        lines.append(
            f"{name}: {burst['tasks_per_s']} tasks/s ({burst['tasks']} no-op tasks), "
            f"commit to start p50 {sparse['commit_to_start_p50_ms']} ms, p99 "
            f"{sparse['commit_to_start_p99_ms']} ms, CPU {burst['cpu_ms_per_task']} "
            f"ms per task")
    flood = report.get("flood")
    if flood:
        lines.append(
            f"plain page p99 {flood['unloaded']['p99_ms']} ms unloaded, "
            f"{flood['during_flood']['p99_ms']} ms during a flood of {flood['tasks']} "
            f"tasks ({flood['tasks_per_s_meanwhile']} tasks/s meanwhile)")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--sparse", type=int, default=200)
    parser.add_argument("--flood", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--json", help="also write the report to this file")
    args = parser.parse_args(argv)
    return command_line(run, summary, args.json, n=args.n, sparse=args.sparse,
                        flood_tasks=args.flood, concurrency=args.concurrency,
                        seconds=args.seconds)


if __name__ == "__main__":
    main()
