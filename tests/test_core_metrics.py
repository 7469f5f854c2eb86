"""core/metrics.py: counters, histograms and history as JSON, and in the
Prometheus text exposition format (checked line by line)."""

import math
import re
import types

import pytest

from collective.futures.core.metrics import (
    BUCKETS, HISTORY_LENGTH, OUTCOMES, Histogram, Metrics, prometheus)

from fakes import FakeClock


class FakeRuntime:
    """What a snapshot reads of the runtime: gauges and shared counters."""

    open_streams = 3

    def __init__(self, gauges=None):
        self.gauges = gauges or {}
        self.shared = types.SimpleNamespace(executions=4, joined=5, cache_hits=6)

    def executor_gauges(self):
        return self.gauges


# the exposition format

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_KINDS = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse_labels(text):
    """``a="x",b="y\\"z"`` -> {"a": "x", "b": 'y"z'}, escapes undone; fails on
    anything the format does not allow (an unescaped quote or newline)."""
    labels, i = {}, 0
    while i < len(text):
        match = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="').match(text, i)
        assert match, f"bad label at {text[i:]!r}"
        name, i, value = match.group(1), match.end(), []
        while True:
            ch = text[i]
            assert ch != "\n", "raw newline in a label value"
            if ch == "\\":
                escaped = text[i + 1]
                assert escaped in '\\"n', f"bad escape \\{escaped}"
                value.append("\n" if escaped == "n" else escaped)
                i += 2
            elif ch == '"':
                i += 1
                break
            else:
                value.append(ch)
                i += 1
        assert name not in labels, f"label {name} twice"
        labels[name] = "".join(value)
        if i < len(text):
            assert text[i] == ",", f"expected a comma at {text[i:]!r}"
            i += 1
    return labels


def parse(text):
    """The exposition text as {family: {"type", "help", "samples": [(name,
    labels, value)]}}, asserting the format's rules on the way."""
    assert text.endswith("\n")
    families, current = {}, None
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            _, _, name, help_ = line.split(" ", 3)
            assert name not in families, f"{name} described twice"
            families[name] = current = {"help": help_, "type": None, "samples": []}
            current["name"] = name
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert current is not None and current["name"] == name, (
                f"TYPE {name} without its HELP just before")
            assert kind in _KINDS and current["type"] is None
            assert not current["samples"], "TYPE after samples"
            current["type"] = kind
        else:
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name, labels, value = match.groups()
            assert current is not None and current["type"], (
                f"sample {name} before its HELP and TYPE")
            base = current["name"]
            allowed = ({base + s for s in ("_bucket", "_sum", "_count")}
                       if current["type"] == "histogram" else {base})
            assert name in allowed, f"sample {name} in family {base}"
            current["samples"].append(
                (name, parse_labels(labels or ""), float(value)))
    return families


def value_of(families, family, **labels):
    [value] = [v for _, l, v in families[family]["samples"] if l == labels]
    return value


def histograms(families, family):
    """function -> (bucket le -> count, sum, count)."""
    found = {}
    for name, labels, value in families[family]["samples"]:
        entry = found.setdefault(labels["function"], [{}, None, None])
        if name.endswith("_bucket"):
            entry[0][labels["le"]] = value
        elif name.endswith("_sum"):
            entry[1] = value
        else:
            entry[2] = value
    return found


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


def test_the_output_parses_as_the_exposition_format(metrics):
    busy(metrics)
    runtime = FakeRuntime({"threads": {"queued": 3, "running": 2}})
    families = parse(prometheus(metrics.snapshot(runtime)))
    p = "collective_futures_"
    assert families[p + "suspended_requests"]["type"] == "gauge"
    assert value_of(families, p + "suspended_requests") == 1
    assert value_of(families, p + "suspended_requests_peak") == 2
    assert value_of(families, p + "requests_total", outcome="completed") == 2
    assert value_of(families, p + "request_passes_total", passes="3") == 1
    assert value_of(families, p + "rejected_requests_total") == 1
    assert value_of(families, p + "streams_total", outcome="complete") == 1
    assert value_of(families, p + "streams_open") == 3
    assert value_of(families, p + "promises_submitted_total",
                    executor="threads") == 2
    assert value_of(families, p + "promises_total", executor="threads",
                    outcome="timed_out") == 1
    # Every outcome is reported for every executor, zeros included.
    assert len([1 for _, l, _ in families[p + "promises_total"]["samples"]
                if l["executor"] == "asyncio"]) == len(OUTCOMES)
    assert value_of(families, p + "promises_abandoned_total") == 1
    assert value_of(families, p + "promises_interrupted_total") == 2
    assert value_of(families, p + "executor_queued", executor="threads") == 3
    assert value_of(families, p + "executor_running", executor="threads") == 2
    assert value_of(families, p + "shared_executions_total") == 4
    assert value_of(families, p + "shared_hits_total", kind="joined") == 5
    assert value_of(families, p + "shared_hits_total", kind="cache") == 6
    for name, family in families.items():
        if family["type"] == "counter":
            assert name.endswith("_total"), name


def test_an_idle_process_still_describes_every_family(metrics):
    families = parse(prometheus(metrics.snapshot(FakeRuntime())))
    assert len(families) == 16
    assert families["collective_futures_requests_total"]["samples"] == []
    assert families["collective_futures_promise_duration_seconds"]["type"] == (
        "histogram")


def test_histogram_buckets_are_cumulative_and_end_at_inf_with_the_count(metrics):
    for seconds in (0.005, 0.0051, 0.3, 0.3, 59.0, 61.0, 3600.0):
        metrics.promise_settled("threads", "fn", "completed", seconds)
    families = parse(prometheus(metrics.snapshot(FakeRuntime())))
    buckets, total, count = histograms(
        families, "collective_futures_promise_duration_seconds")["fn"]
    bounds = list(buckets)
    assert bounds == [f"{b:g}" for b in BUCKETS] + ["+Inf"]
    counts = list(buckets.values())
    assert counts == sorted(counts)  # cumulative
    assert buckets["0.005"] == 1      # le is inclusive
    assert buckets["0.01"] == 2
    assert buckets["0.5"] == 4
    assert buckets["60"] == 5
    assert buckets["+Inf"] == count == 7
    assert math.isclose(total, 0.005 + 0.0051 + 0.6 + 59 + 61 + 3600)


def test_label_values_are_escaped(metrics):
    nasty = 'Evil."quoted"\\back\nslash'
    metrics.promise_settled("threads", nasty, "completed", 0.1)
    metrics.promise_settled("threads", "plain", "completed", 0.1)
    text = prometheus(metrics.snapshot(FakeRuntime({
        'ex"ec\\\n': {"queued": 1, "running": 0}})))
    families = parse(text)  # fails on an unescaped quote or newline
    assert set(histograms(
        families, "collective_futures_promise_duration_seconds")) == {
            nasty, "plain"}
    assert value_of(families, "collective_futures_executor_queued",
                    executor='ex"ec\\\n') == 1


def test_a_counter_increments(metrics):
    runtime = FakeRuntime()
    name = "collective_futures_promises_total"

    def completed():
        families = parse(prometheus(metrics.snapshot(runtime)))
        return value_of(families, name, executor="threads", outcome="completed")

    metrics.promise_settled("threads", "fn", "completed", 0.2)
    before = completed()
    metrics.promise_settled("threads", "fn", "completed", 0.2)
    assert completed() == before + 1 == 2


def test_the_parser_catches_what_it_must():
    # The positive control of the tests above: broken text fails.
    for text in ['collective_futures_x 1\n',                   # no TYPE
                 '# HELP a h\n# TYPE a gauge\na{l="x"y"} 1\n',  # bad quote
                 '# HELP a h\n# TYPE a gauge\na{l="x\n"} 1\n',  # raw newline
                 '# HELP a h\n# TYPE a gauge\nb 1\n',          # other family
                 '# HELP a h\n# TYPE a gauge\na one\n']:       # not a number
        with pytest.raises((AssertionError, ValueError)):
            parse(text)


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
