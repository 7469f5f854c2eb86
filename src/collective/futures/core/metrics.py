"""Metrics: what an operator needs to see of suspended requests and side
work, as JSON, in the Prometheus text format, and as recent history.

Runs on: any thread. Counters and histograms are updated under one lock;
gauges (queues, running, suspended now) are read from the runtime when a
snapshot is taken. The history (its last ``HISTORY_LENGTH`` points) is
sampled every ``history_interval`` seconds by the deadline thread (no thread of its own).
"""

import bisect
import collections
import threading
import time


#: Upper bounds (seconds) of the duration histogram buckets.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
HISTORY_LENGTH = 120  # ten minutes at the default interval of 5 s

#: How a promise can end.
OUTCOMES = ("completed", "failed", "timed_out", "cancelled", "rejected")


class Histogram:
    __slots__ = ("counts", "total", "count")

    def __init__(self):
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, seconds):
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds
        self.count += 1

    def as_dict(self):
        cumulative, running = {}, 0
        for bound, count in zip(BUCKETS + (float("inf"),), self.counts):
            running += count
            cumulative["+Inf" if bound == float("inf") else f"{bound:g}"] = running
        return {"count": self.count, "sum": round(self.total, 6),
                "buckets": cumulative}


class Metrics:
    """The process's counters. ``suspended`` counts requests whose worker
    was freed (rounds and streams) right now."""

    def __init__(self, clock=time.time):
        self.clock = clock
        self.started = clock()
        # Guards every field below.
        self._lock = threading.Lock()
        self.submitted = collections.Counter()          # executor -> n
        self.outcomes = collections.Counter()           # (executor, outcome) -> n
        self.durations = collections.defaultdict(Histogram)  # function -> hist
        self.passes = collections.Counter()             # passes -> requests
        self.requests = collections.Counter()           # outcome -> requests
        self.streams = collections.Counter()            # outcome -> streams
        self.rejected_requests = 0
        self.suspended = 0
        self.suspended_peak = 0
        self.abandoned = 0
        self.interrupted = 0
        self.history = collections.deque(maxlen=HISTORY_LENGTH)

    # updates (any thread)

    def promise_submitted(self, executor):
        with self._lock:
            self.submitted[executor] += 1

    def promise_settled(self, executor, function, outcome, seconds):
        with self._lock:
            self.outcomes[executor, outcome] += 1
            if seconds is not None:
                self.durations[function].observe(seconds)

    def work_stopped(self, abandoned, interrupted):
        with self._lock:
            self.abandoned += abandoned
            self.interrupted += interrupted

    def suspend(self):
        with self._lock:
            self.suspended += 1
            self.suspended_peak = max(self.suspended_peak, self.suspended)

    def resume(self):
        with self._lock:
            self.suspended -= 1

    def request_done(self, passes, outcome):
        with self._lock:
            self.passes[passes] += 1
            self.requests[outcome] += 1

    def stream_done(self, outcome):
        with self._lock:
            self.streams[outcome] += 1

    def request_rejected(self):
        with self._lock:
            self.rejected_requests += 1

    # reading

    def snapshot(self, runtime):
        """Everything, as plain data (the JSON view's document)."""
        with self._lock:
            submitted = dict(self.submitted)
            outcomes = {}
            for (executor, outcome), count in self.outcomes.items():
                outcomes.setdefault(executor, dict.fromkeys(OUTCOMES, 0))[outcome] = count
            data = {
                "uptime_seconds": round(self.clock() - self.started, 1),
                "suspended": self.suspended,
                "suspended_peak": self.suspended_peak,
                "requests": dict(self.requests),
                "rejected_requests": self.rejected_requests,
                "passes": {str(k): v for k, v in sorted(self.passes.items())},
                "streams": dict(self.streams),
                "promises": {
                    name: {"submitted": submitted.get(name, 0),
                           **outcomes.get(name, dict.fromkeys(OUTCOMES, 0))}
                    for name in sorted(set(submitted) | set(outcomes))},
                "abandoned": self.abandoned,
                "interrupted": self.interrupted,
                "durations": {name: h.as_dict()
                              for name, h in sorted(self.durations.items())},
            }
        data["executors"] = runtime.executor_gauges()
        data["streams_open"] = runtime.open_streams
        shared = runtime.shared
        data["shared"] = {"executions": shared.executions, "joined": shared.joined,
                          "cache_hits": shared.cache_hits}
        data["history"] = list(self.history)
        return data

    def sample(self, runtime):
        """Append a point to the recent history."""
        gauges = runtime.executor_gauges()
        with self._lock:
            point = {
                "time": round(self.clock(), 1),
                "suspended": self.suspended,
                "running": sum(g["running"] for g in gauges.values()),
                "queued": sum(g["queued"] for g in gauges.values()),
                "completed": sum(v for (_, o), v in self.outcomes.items()
                                 if o == "completed"),
            }
            self.history.append(point)


def prometheus(data):
    """The snapshot in the Prometheus text exposition format."""
    lines = []

    def metric(name, kind, help_, samples):
        lines.append(f"# HELP collective_futures_{name} {help_}")
        lines.append(f"# TYPE collective_futures_{name} {kind}")
        for labels, value in samples:
            label = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            lines.append(f"collective_futures_{name}{{{label}}} {value}"
                         if label else f"collective_futures_{name} {value}")

    metric("suspended_requests", "gauge",
           "Requests whose worker thread is freed right now.",
           [({}, data["suspended"])])
    metric("suspended_requests_peak", "gauge",
           "Most requests suspended at once since start.",
           [({}, data["suspended_peak"])])
    metric("requests_total", "counter", "Requests that used futures, by outcome.",
           [({"outcome": k}, v) for k, v in sorted(data["requests"].items())])
    metric("rejected_requests_total", "counter",
           "Requests answered 503 because a bound was reached.",
           [({}, data["rejected_requests"])])
    metric("request_passes_total", "counter",
           "Requests that used futures, by number of passes.",
           [({"passes": k}, v) for k, v in data["passes"].items()])
    metric("streams_open", "gauge",
           "Handed-off streams admitted and not yet over (max_streams).",
           [({}, data["streams_open"])])
    metric("streams_total", "counter", "Handed-off streams, by outcome.",
           [({"outcome": k}, v) for k, v in sorted(data["streams"].items())])
    metric("promises_submitted_total", "counter", "Promises submitted.",
           [({"executor": k}, v["submitted"]) for k, v in data["promises"].items()])
    metric("promises_total", "counter", "Promises settled, by outcome.",
           [({"executor": k, "outcome": o}, v[o])
            for k, v in data["promises"].items() for o in OUTCOMES])
    metric("promises_abandoned_total", "counter",
           "Thread promises left running past their round.",
           [({}, data["abandoned"])])
    metric("promises_interrupted_total", "counter",
           "Process promises stopped past their round.",
           [({}, data["interrupted"])])
    metric("executor_queued", "gauge", "Promises waiting, by executor.",
           [({"executor": k}, v["queued"]) for k, v in data["executors"].items()])
    metric("executor_running", "gauge", "Promises running, by executor.",
           [({"executor": k}, v["running"]) for k, v in data["executors"].items()])
    metric("shared_executions_total", "counter", "Shared promises executed.",
           [({}, data["shared"]["executions"])])
    metric("shared_hits_total", "counter",
           "Shared promises served without an execution of their own.",
           [({"kind": "joined"}, data["shared"]["joined"]),
            ({"kind": "cache"}, data["shared"]["cache_hits"])])
    tasks = data.get("tasks")
    if tasks:
        _tasks_metrics(metric, lines, tasks)
    name = "promise_duration_seconds"
    lines.append(f"# HELP collective_futures_{name} Submit-to-result time, by function.")
    lines.append(f"# TYPE collective_futures_{name} histogram")
    for function, hist in data["durations"].items():
        fn = _escape(function)
        for bound, count in hist["buckets"].items():
            lines.append(f'collective_futures_{name}_bucket{{function="{fn}",'
                         f'le="{bound}"}} {count}')
        lines.append(f'collective_futures_{name}_sum{{function="{fn}"}} {hist["sum"]}')
        lines.append(f'collective_futures_{name}_count{{function="{fn}"}} {hist["count"]}')
    return "\n".join(lines) + "\n"


def _tasks_metrics(metric, lines, tasks):
    """The background tasks' part (tasks/service.py's snapshot)."""
    queues = tasks["queues"]
    metric("tasks_up", "gauge",
           "1 if the task queue's backend could be read, else 0.",
           [({}, 0 if tasks["unreachable"] else 1)])
    metric("tasks", "gauge", "Background tasks, by queue and state (scheduled: "
           "queued, not due yet).",
           [({"queue": queue, "state": state}, figures[state])
            for queue, figures in sorted(queues.items())
            for state in ("prepared", "queued", "scheduled", "running", "done", "dead")])
    metric("tasks_oldest_queued_seconds", "gauge",
           "How long the longest-waiting due task has waited, by queue.",
           [({"queue": queue}, round(figures["oldest_queued_age"], 3))
            for queue, figures in sorted(queues.items())])
    if tasks.get("consumers") is not None:
        # From the backend (Redis): the same on every instance.
        metric("task_consumers", "gauge",
               "Instances consuming from the task queue's backend (heard from "
               "in the last two minutes).", [({}, len(tasks["consumers"]))])
    consumer = tasks.get("consumer")
    if not consumer:
        return
    metric("tasks_running", "gauge", "Tasks this instance runs now.",
           [({}, consumer["running"])])
    metric("tasks_settled_total", "counter",
           "Tasks this instance ran, by queue and how they ended.",
           [({"queue": queue, "outcome": outcome}, count)
            for queue, outcomes in sorted(consumer["settled"].items())
            for outcome, count in outcomes.items()])
    name = "task_duration_seconds"
    lines.append(f"# HELP collective_futures_{name} A task's request time, by queue.")
    lines.append(f"# TYPE collective_futures_{name} histogram")
    for queue, hist in sorted(consumer["durations"].items()):
        label = _escape(queue)
        for bound, count in hist["buckets"].items():
            lines.append(f'collective_futures_{name}_bucket{{queue="{label}",'
                         f'le="{bound}"}} {count}')
        lines.append(f'collective_futures_{name}_sum{{queue="{label}"}} {hist["sum"]}')
        lines.append(f'collective_futures_{name}_count{{queue="{label}"}} {hist["count"]}')


def _escape(value):
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
