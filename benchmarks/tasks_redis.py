"""Background tasks on Redis, end to end, with 1, 2 and 3 consuming Zope
instances, side by side in the same run with Huey on the same Redis.

Usage: python benchmarks/tasks_redis.py [--n 1000] [--sparse 100]
                                        [--json FILE]

Real parts only: a private redis-server (AOF on, ``appendfsync
everysec``: the configuration docs/deployment.rst gives), a ZEO server,
and Zope instances on it (threads = 2, waitress), all on this machine;
the task is the no-op view of ``benchmarks/tasks.py``, which notes when it
was called. For each engine and each count of consuming instances, fresh
instances (the first one also queues the tasks):

- collective.futures: ``task_backend`` the Redis URL, ``task_consumer
  on`` and otherwise the defaults (one task at a time per instance);
- Huey 3 (``RedisHuey``, as collective.taskqueue2 configures it): a
  consumer thread in each instance with collective.taskqueue2's options,
  its task calling the view with a made-up request (see tasks.py).

Measured: ``sparse`` tasks, one per request (commit-to-start p50/p99,
from the start of the commit, or the call of ``enqueue``, to the view's
call, on whichever instance ran it); ``n`` tasks queued by one request
(tasks per second end to end, from the commit to the last start, and
consumed from the first start to the last); the CPU per task of the
instances (utime + stime of all of them over the burst, queuing
included), and the calls of the task's view that a ConflictError made
Zope retry. Every task's work must have committed exactly once across
the instances, or the run fails.
"""

import argparse
import pathlib
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]
import tasks  # noqa: E402
from common import Checks, command_line, machine  # noqa: E402
from zopeinstance import ZopeInstance  # noqa: E402


ENGINES = ("futures", "huey")


class Cluster(tasks.Engine):
    """An engine on several instances: the first queues, all consume;
    the starts are gathered from all of them."""

    def __init__(self, instances, engine, checks):
        super().__init__(instances[0], engine, checks)
        self.instances = instances

    def figures(self, batch):
        committed, started = super().figures(batch)
        for other in self.instances[1:]:
            started += tasks.Engine(other, self.engine, self.checks).figures(batch)[1]
        return committed, started

    def calls(self, batch):
        return sum(tasks.Engine(zope, self.engine, self.checks).calls(batch)
                   for zope in self.instances)

    def cpu_seconds(self):
        return sum(zope.cpu_seconds() for zope in self.instances)


def run(n=1000, sparse=100, consumers=(1, 2, 3)):
    """Measure both engines with each count of consuming instances.
    Returns the report; raises BenchmarkFailed, with the report, when a
    task was lost or ran twice or an instance died."""
    from importlib.metadata import version
    from deployment import ZeoServer
    from redisserver import RedisServer
    checks = Checks()
    report = {"machine": machine(),
              "versions": {"huey": version("huey"), "redis-py": version("redis")},
              "parameters": {"n": n, "sparse": sparse, "consumers": list(consumers),
                             "threads": 2, "sparse_gap_s": list(tasks.GAP),
                             "appendfsync": "everysec",
                             "huey_consumer": tasks.HUEY_CONSUMER},
              "engines": {}}
    with checks.guard(report), tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        redis = RedisServer(tmp / "redis", appendonly=True, appendfsync="everysec").start()
        report["versions"]["redis-server"] = redis.client().info()["redis_version"]
        (tmp / "zeo").mkdir()
        zeo = ZeoServer(tmp / "zeo")
        zeo.start()
        try:
            for name in ENGINES:
                report["engines"][name] = {}
                for count in consumers:
                    report["engines"][name][str(count)] = measure(
                        tmp / f"{name}-{count}", name, count, redis, zeo, checks,
                        n, sparse)
        finally:
            zeo.stop()
            redis.kill()
    return checks.finish(report)


def measure(home, name, count, redis, zeo, checks, n, sparse):
    prefix = f"{home.name}:"
    config = ({"task_consumer": "on", "task_backend": f"{redis.url}?prefix={prefix}"}
              if name == "futures" else {})
    instances = []
    try:
        for number in range(count):
            instances.append(ZopeInstance(
                home / f"zope{number}", threads=2, packages=("benchapp",),
                product_config=config, zeo_address=zeo.address).create().start())
        if name == "huey":
            options = "&".join(f"{k}={v}" for k, v in tasks.HUEY_CONSUMER.items())
            for zope in instances:
                status, body = zope.get(f"/@@bench-huey-start?redis={redis.url}"
                                        f"&name={home.name}&{options}")
                if status != 200:
                    raise RuntimeError(f"Huey's consumer: {status} {body[:300]}")
        cluster = Cluster(instances, name, checks)
        cluster.queue("warm-up", 20)
        cluster.wait_started("warm-up", 20, timeout=60)
        figures = {"sparse": cluster.sparse(sparse), "burst": cluster.burst(n)}
        for zope in instances:
            checks.alive(zope, f"{name}, {count} instance(s)")
        return figures
    finally:
        for zope in instances:
            zope.stop()


def summary(report):
    lines = []
    for name, by_count in report["engines"].items():
        for count, figures in by_count.items():
            sparse, burst_ = figures["sparse"], figures["burst"]
            lines.append(
                f"{name}, {count} consuming instance(s): {burst_['tasks_per_s']} tasks/s "
                f"end to end, commit to start p50 {sparse['commit_to_start_p50_ms']} ms, "
                f"p99 {sparse['commit_to_start_p99_ms']} ms, CPU "
                f"{burst_['cpu_ms_per_task']} ms per task, "
                f"{burst_['retried_calls']} calls retried")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--sparse", type=int, default=100)
    parser.add_argument("--json", help="also write the report to this file")
    args = parser.parse_args(argv)
    return command_line(run, summary, args.json, n=args.n, sparse=args.sparse)


if __name__ == "__main__":
    main()
