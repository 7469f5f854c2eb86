"""exposition.py: a metrics snapshot as Prometheus metric families,
written by prometheus_client: the text format checked line by line by a
parser of this file's, OpenMetrics by prometheus_client's own parser; the
collector in a registry."""

import math
import re

import pytest

from collective.futures.exposition import (
    SnapshotCollector, encode, families, prometheus)
from collective.futures.core.metrics import BUCKETS, OUTCOMES, Metrics

# The counters of a busy process, and what a snapshot reads of a runtime.
from test_core_metrics import FakeRuntime, busy, metrics  # noqa: F401 (fixture)


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
    assert len(families) == 19
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
    # Bounds as Go writes floats (1.0, not 1), as prometheus_client's own.
    assert bounds == [repr(float(b)) for b in BUCKETS] + ["+Inf"]
    counts = list(buckets.values())
    assert counts == sorted(counts)  # cumulative
    assert buckets["0.005"] == 1      # le is inclusive
    assert buckets["0.01"] == 2
    assert buckets["0.5"] == 4
    assert buckets["60.0"] == 5
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


# the formats a scraper may ask for

def tasks_snapshot():
    """What tasks/service.py's snapshot gives on a consuming instance of a
    Redis backend."""
    bucket = {"count": 2, "sum": 0.75, "buckets": {
        **{f"{b:g}": (0 if b < 0.25 else 1 if b < 0.5 else 2) for b in BUCKETS},
        "+Inf": 2}}
    return {
        "backend": "redis://127.0.0.1:6379/0", "unreachable": None,
        "queues": {"default": {"prepared": 0, "queued": 3, "scheduled": 1,
                               "running": 1, "done": 40, "dead": 2,
                               "oldest_queued_age": 12.5}},
        "consumers": [{"name": "a"}, {"name": "b"}],
        "consumer": {"concurrency": 1, "running": 1,
                     "settled": {"default": {"done": 40, "failed": 2}},
                     "durations": {"default": bucket}}}


def full_snapshot(metrics):
    busy(metrics)
    data = metrics.snapshot(FakeRuntime({"threads": {"queued": 3, "running": 2}}))
    data["tasks"] = tasks_snapshot()
    return data


def test_without_an_accept_header_the_text_format(metrics):
    for accept in (None, "", "*/*", "text/plain"):
        body, content_type = encode(full_snapshot(metrics), accept)
        assert content_type == "text/plain; version=0.0.4; charset=utf-8"
        parsed = parse(body.decode())
        assert value_of(parsed, "collective_futures_tasks", queue="default",
                        state="dead") == 2


def test_openmetrics_when_the_scraper_asks_for_it(metrics):
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
    # What Prometheus sends.
    accept = ("application/openmetrics-text;version=1.0.0;q=0.5,"
              "text/plain;version=0.0.4;q=0.3,*/*;q=0.1")
    body, content_type = encode(full_snapshot(metrics), accept)
    # version=1.0.0 with prometheus_client 0.26, 0.0.1 with 0.17 (the oldest).
    assert content_type.startswith("application/openmetrics-text; version=")
    text = body.decode()
    assert text.endswith("# EOF\n")
    # prometheus_client's own parser: strict about OpenMetrics' rules.
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    p = "collective_futures_"
    counter = parsed[p + "requests"]  # the family; its samples end in _total
    assert counter.type == "counter"
    assert {(s.name, s.labels["outcome"], s.value) for s in counter.samples} == {
        (p + "requests_total", "completed", 2.0)}
    assert parsed[p + "tasks_settled"].type == "counter"
    assert parsed[p + "task_duration_seconds"].type == "histogram"
    assert parsed[p + "task_consumers"].samples[0].value == 2
    # Positive control: the parser refuses text without its end marker.
    with pytest.raises(ValueError):
        list(text_string_to_metric_families(text.replace("# EOF\n", "")))


def test_the_names_follow_the_conventions(metrics):
    names = {}
    for family in families(full_snapshot(metrics)):
        names[family.name] = family.type
    assert len(names) == 26, sorted(names)
    for name, kind in names.items():
        assert re.fullmatch(r"collective_futures_[a-z_]+", name), name
        # OpenMetrics' family names: a counter's drops its _total.
        assert not name.endswith("_total"), name
        if kind == "histogram":
            assert name.endswith("_seconds"), name
        # A time or an age as a word of the name ("pages" is no age).
        if re.search(r"_(seconds?|time|age)(_|$)", name):
            assert name.endswith("_seconds"), name
    # Positive control of the word check: an age not in seconds is caught.
    assert re.search(r"_(seconds?|time|age)(_|$)", "collective_futures_task_age")
    # The text format: the families as the tests above name them.
    assert {name for name in parse(prometheus(full_snapshot(metrics)))} == {
        name + "_total" if kind == "counter" else name
        for name, kind in names.items()}


def test_the_tasks_part(metrics):
    parsed = parse(prometheus(full_snapshot(metrics)))
    p = "collective_futures_"
    assert value_of(parsed, p + "tasks_up") == 1
    assert value_of(parsed, p + "tasks", queue="default", state="queued") == 3
    assert value_of(parsed, p + "tasks_oldest_queued_seconds", queue="default") == 12.5
    assert value_of(parsed, p + "tasks_running") == 1
    assert value_of(parsed, p + "tasks_settled_total", queue="default",
                    outcome="failed") == 2
    samples = parsed[p + "task_duration_seconds"]["samples"]
    assert ("collective_futures_task_duration_seconds_bucket",
            {"queue": "default", "le": "0.5"}, 2.0) in samples
    # An unreachable backend: up 0, and no consumer part on a web-only one.
    data = full_snapshot(Metrics())
    data["tasks"].update(unreachable="ConnectionError: refused", queues={},
                         consumer=None, consumers=None)
    parsed = parse(prometheus(data))
    assert value_of(parsed, p + "tasks_up") == 0
    assert p + "tasks_running" not in parsed and p + "task_consumers" not in parsed


# the collector

def test_the_collector_describes_without_reading_and_collects_fresh(metrics):
    calls = []

    def snapshot():
        calls.append(1)
        return full_snapshot(metrics)

    collector = SnapshotCollector(snapshot)
    described = {family.name for family in collector.describe()}
    assert calls == []  # registering reads no task backend
    collected = {family.name for family in collector.collect()}
    assert calls == [1] and collected <= described
    assert collected == described  # every part present in this snapshot
    list(collector.collect())
    assert calls == [1, 1]


def test_a_failing_snapshot_leaves_the_registrys_other_metrics(metrics, caplog):
    from prometheus_client import CollectorRegistry, Counter, generate_latest
    registry = CollectorRegistry(auto_describe=True)
    Counter("site_logins", "The site's own counter.", registry=registry).inc()

    def broken():
        raise RuntimeError("snapshot broke")

    registry.register(SnapshotCollector(broken))
    with caplog.at_level("ERROR", logger="collective.futures"):
        text = generate_latest(registry).decode()
    assert "site_logins_total 1.0" in text
    assert "collective_futures_" not in text
    assert "snapshot broke" in caplog.text
    # So does a snapshot that is not what a snapshot should be.
    broken = CollectorRegistry(auto_describe=True)
    Counter("site_logins", "The site's own counter.", registry=broken).inc()
    broken.register(SnapshotCollector(lambda: {"started": 0}))
    assert "site_logins_total 1.0" in generate_latest(broken).decode()
    # Positive control: a working snapshot shows beside it.
    registry = CollectorRegistry(auto_describe=True)
    Counter("site_logins", "The site's own counter.", registry=registry).inc()
    registry.register(SnapshotCollector(lambda: full_snapshot(Metrics())))
    text = generate_latest(registry).decode()
    assert "site_logins_total 1.0" in text
    assert "collective_futures_suspended_requests " in text


def test_register_metrics_once_per_registry_and_not_over_other_names(
        caplog, monkeypatch, tmp_path):
    from prometheus_client import CollectorRegistry, generate_latest
    from collective.futures import runtime
    from collective.futures.settings import Settings
    # This process's task service, its SQLite file in tmp_path (not here).
    monkeypatch.setattr(runtime, "_tasks", None)
    monkeypatch.setattr(runtime, "_registered", [])
    service = runtime.configure_tasks(Settings(), str(tmp_path))
    registry = CollectorRegistry(auto_describe=True)
    try:
        assert runtime.register_metrics(registry) is True
        assert runtime.register_metrics(registry) is True  # again: nothing new
        text = generate_latest(registry).decode()
    finally:
        service.stop(timeout=1.0)
    assert text.count("# TYPE collective_futures_suspended_requests gauge") == 1
    # The live figures of this process's runtime and task service.
    assert re.search(r"^collective_futures_tasks_up 1\.0$", text, re.M)
    # A registry whose names are taken (another copy's collector) refuses.
    other = CollectorRegistry(auto_describe=True)
    other.register(SnapshotCollector(lambda: full_snapshot(Metrics())))
    with caplog.at_level("WARNING", logger="collective.futures"):
        assert runtime.register_metrics(other) is False
    assert "not in the Prometheus registry" in caplog.text
