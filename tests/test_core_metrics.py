"""core/metrics.py: counters, histograms and history, as plain data (the
JSON view's document)."""

import types

import pytest

from collective.futures.core.metrics import HISTORY_LENGTH, Histogram, Metrics

from fakes import FakeClock


class FakeRuntime:
    """What a snapshot reads of the runtime: gauges and shared counters."""

    open_streams = 3

    def __init__(self, gauges=None):
        self.gauges = gauges or {}
        self.shared = types.SimpleNamespace(executions=4, joined=5, cache_hits=6)

    def executor_gauges(self):
        return self.gauges



@pytest.fixture
def metrics():
    clock = FakeClock(1000.0)
    metrics = Metrics(clock=clock)
    metrics.clock_ = clock
    return metrics


def busy(metrics):
    metrics.promise_submitted("threads")
    metrics.promise_submitted("threads")
    metrics.promise_submitted("asyncio")
    metrics.promise_settled("threads", "feeds.fetch", "completed", 0.003)
    metrics.promise_settled("threads", "feeds.fetch", "timed_out", 45.0)
    metrics.promise_settled("asyncio", "get", "failed", None)
    metrics.request_done(2, "completed")
    metrics.request_done(3, "completed")
    metrics.stream_done("complete")
    metrics.request_rejected()
    metrics.work_stopped(1, 2)
    metrics.suspend()
    metrics.suspend()
    metrics.resume()




# the JSON snapshot

def test_snapshot(metrics):
    busy(metrics)
    metrics.clock_.advance(12.34)
    data = metrics.snapshot(FakeRuntime({"threads": {"queued": 0, "running": 1}}))
    assert data["uptime_seconds"] == 12.3
    assert (data["suspended"], data["suspended_peak"]) == (1, 2)
    assert data["requests"] == {"completed": 2}
    assert data["passes"] == {"2": 1, "3": 1}
    assert data["promises"]["threads"] == {
        "submitted": 2, "completed": 1, "failed": 0, "timed_out": 1,
        "cancelled": 0, "rejected": 0}
    assert data["promises"]["asyncio"]["failed"] == 1
    assert (data["abandoned"], data["interrupted"]) == (1, 2)
    assert set(data["durations"]) == {"feeds.fetch"}  # None: not timed
    assert data["durations"]["feeds.fetch"]["count"] == 2
    assert data["executors"] == {"threads": {"queued": 0, "running": 1}}
    assert data["shared"] == {"executions": 4, "joined": 5, "cache_hits": 6}
    assert data["history"] == []


def test_histogram_as_dict():
    histogram = Histogram()
    histogram.observe(0.0123456789)
    histogram.observe(100)
    data = histogram.as_dict()
    assert data["count"] == 2 and data["sum"] == 100.012346
    assert data["buckets"]["0.01"] == 0 and data["buckets"]["0.025"] == 1
    assert data["buckets"]["60"] == 1 and data["buckets"]["+Inf"] == 2


# history

def test_history_points_with_an_injected_clock(metrics):
    runtime = FakeRuntime({"threads": {"queued": 2, "running": 1},
                           "asyncio": {"queued": 1, "running": 4}})
    metrics.suspend()
    metrics.promise_settled("threads", "fn", "completed", 0.1)
    metrics.promise_settled("asyncio", "fn", "completed", 0.1)
    metrics.promise_settled("asyncio", "fn", "failed", 0.1)
    metrics.sample(runtime)
    metrics.clock_.advance(5.04)
    metrics.sample(runtime)
    assert list(metrics.history) == [
        {"time": 1000.0, "suspended": 1, "running": 5, "queued": 3, "completed": 2},
        {"time": 1005.0, "suspended": 1, "running": 5, "queued": 3, "completed": 2},
    ]
    assert metrics.snapshot(runtime)["history"] == list(metrics.history)


def test_history_keeps_the_last_points(metrics):
    runtime = FakeRuntime()
    for _ in range(HISTORY_LENGTH + 5):
        metrics.clock_.advance(1)
        metrics.sample(runtime)
    assert len(metrics.history) == HISTORY_LENGTH
    assert metrics.history[0]["time"] == 1006.0
    assert metrics.history[-1]["time"] == 1000.0 + HISTORY_LENGTH + 5
