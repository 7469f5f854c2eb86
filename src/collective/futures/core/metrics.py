"""Metrics: what an operator needs to see of suspended requests and side
work, counted, as plain data (the JSON view's document, which
``collective.futures.exposition`` turns into Prometheus metric families),
and as recent history.

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
        self.fragment_pages = collections.Counter()     # delivery -> pages
        self.fragments = collections.Counter()          # outcome -> fragments
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

    def fragment_page_done(self, delivery):
        """A page rendered in one pass whose holes were then filled:
        ``delivery`` is ``filled``, ``progressive`` or ``waited``."""
        with self._lock:
            self.fragment_pages[delivery] += 1

    def fragments_done(self, outcomes):
        """How fragments ended (core.fragments.FRAGMENT_OUTCOMES)."""
        with self._lock:
            for outcome in outcomes:
                self.fragments[outcome] += 1

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
                "started": self.started,
                "uptime_seconds": round(self.clock() - self.started, 1),
                "suspended": self.suspended,
                "suspended_peak": self.suspended_peak,
                "requests": dict(self.requests),
                "rejected_requests": self.rejected_requests,
                "passes": {str(k): v for k, v in sorted(self.passes.items())},
                "streams": dict(self.streams),
                "fragment_pages": dict(self.fragment_pages),
                "fragments": dict(self.fragments),
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
