"""The metrics snapshot as Prometheus metric families, written out by
prometheus_client: for ``@@futures-metrics?format=prometheus`` and for any
endpoint that serves prometheus_client's default registry.

Runs on: the thread that reads the metrics: a Zope worker for the view,
whatever thread a site's own metrics endpoint collects on for the default
registry (prometheus_client's HTTP server thread, a worker of another
view). A collection reads a snapshot (``metrics.py``, the task service's)
and builds fresh families from it; nothing here is shared between threads.

Names follow Prometheus's conventions: everything starts with
``collective_futures_``, counters end in ``_total`` (OpenMetrics adds it
to the family's name), durations and ages are in seconds and say so.
"""

import logging

from prometheus_client.core import (
    CollectorRegistry, CounterMetricFamily, GaugeMetricFamily,
    HistogramMetricFamily)
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.utils import floatToGoString

from .core.metrics import OUTCOMES


__all__ = ["families", "prometheus", "encode", "SnapshotCollector"]

log = logging.getLogger("collective.futures")

PREFIX = "collective_futures_"

#: A task's states as the backends count them (tasks/model.py); scheduled:
#: queued, not due yet.
TASK_STATES = ("prepared", "queued", "scheduled", "running", "done", "dead")


def families(data):
    """The Prometheus metric families of one snapshot (``Metrics.snapshot``
    with the task service's snapshot under ``"tasks"``, if any)."""
    out = []

    def gauge(name, help_, samples, labels=()):
        family = GaugeMetricFamily(PREFIX + name, help_, labels=list(labels))
        for values, value in samples:
            family.add_metric([str(v) for v in values], value)
        out.append(family)

    def counter(name, help_, samples, labels=()):
        family = CounterMetricFamily(PREFIX + name, help_, labels=list(labels))
        for values, value in samples:
            family.add_metric([str(v) for v in values], value)
        out.append(family)

    def histogram(name, help_, label, histograms):
        family = HistogramMetricFamily(PREFIX + name, help_, labels=[label])
        for value, hist in histograms:
            family.add_metric(
                [str(value)],
                [(floatToGoString(float(bound)), count)
                 for bound, count in hist["buckets"].items()],
                hist["sum"])
        out.append(family)

    gauge("start_time_seconds",
          "When this process's metrics started, in seconds since the epoch.",
          [((), data["started"])])
    gauge("suspended_requests",
          "Requests whose worker thread is freed right now.",
          [((), data["suspended"])])
    gauge("suspended_requests_peak",
          "Most requests suspended at once since start.",
          [((), data["suspended_peak"])])
    counter("requests_total", "Requests that used futures, by outcome.",
            [((k,), v) for k, v in sorted(data["requests"].items())],
            ["outcome"])
    counter("rejected_requests_total",
            "Requests answered 503 because a bound was reached.",
            [((), data["rejected_requests"])])
    counter("request_passes_total",
            "Requests that used futures, by number of passes.",
            [((k,), v) for k, v in data["passes"].items()], ["passes"])
    gauge("streams_open",
          "Handed-off streams admitted and not yet over (max_streams).",
          [((), data["streams_open"])])
    counter("streams_total", "Handed-off streams, by outcome.",
            [((k,), v) for k, v in sorted(data["streams"].items())], ["outcome"])
    counter("fragment_pages_total",
            "Pages rendered in one pass whose holes were filled, by delivery.",
            [((k,), v) for k, v in sorted(data.get("fragment_pages", {}).items())],
            ["delivery"])
    counter("fragments_total", "Fragments of one-pass pages, by outcome.",
            [((k,), v) for k, v in sorted(data.get("fragments", {}).items())],
            ["outcome"])
    counter("promises_submitted_total", "Promises submitted, by executor.",
            [((k,), v["submitted"]) for k, v in data["promises"].items()],
            ["executor"])
    counter("promises_total", "Promises settled, by executor and outcome.",
            [((k, o), v[o]) for k, v in data["promises"].items() for o in OUTCOMES],
            ["executor", "outcome"])
    counter("promises_abandoned_total",
            "Thread promises left running past their round.",
            [((), data["abandoned"])])
    counter("promises_interrupted_total",
            "Process promises stopped past their round.",
            [((), data["interrupted"])])
    gauge("executor_queued", "Promises waiting, by executor.",
          [((k,), v["queued"]) for k, v in data["executors"].items()],
          ["executor"])
    gauge("executor_running", "Promises running, by executor.",
          [((k,), v["running"]) for k, v in data["executors"].items()],
          ["executor"])
    counter("shared_executions_total", "Shared promises executed.",
            [((), data["shared"]["executions"])])
    counter("shared_hits_total",
            "Shared promises served without an execution of their own.",
            [(("joined",), data["shared"]["joined"]),
             (("cache",), data["shared"]["cache_hits"])], ["kind"])
    histogram("promise_duration_seconds", "Submit-to-result time, by function.",
              "function", data["durations"].items())
    tasks = data.get("tasks")
    if tasks:
        _task_families(tasks, gauge, counter, histogram)
    return out


def _task_families(tasks, gauge, counter, histogram):
    """The background tasks' part (tasks/service.py's snapshot)."""
    queues = sorted(tasks["queues"].items())
    gauge("tasks_up", "1 if the task queue's backend could be read, else 0.",
          [((), 0 if tasks["unreachable"] else 1)])
    gauge("tasks", "Background tasks, by queue and state (scheduled: queued, "
          "not due yet).",
          [((queue, state), figures[state])
           for queue, figures in queues for state in TASK_STATES],
          ["queue", "state"])
    gauge("tasks_oldest_queued_seconds",
          "How long the longest-waiting due task has waited, by queue.",
          [((queue,), figures["oldest_queued_age"]) for queue, figures in queues],
          ["queue"])
    if tasks.get("consumers") is not None:
        # From the backend (Redis): the same on every instance.
        gauge("task_consumers", "Instances consuming from the task queue's "
              "backend (heard from in the last two minutes).",
              [((), len(tasks["consumers"]))])
    consumer = tasks.get("consumer")
    if not consumer:
        return
    gauge("tasks_running", "Tasks this instance runs now.",
          [((), consumer["running"])])
    counter("tasks_settled_total",
            "Tasks this instance ran, by queue and how they ended.",
            [((queue, outcome), count)
             for queue, outcomes in sorted(consumer["settled"].items())
             for outcome, count in outcomes.items()],
            ["queue", "outcome"])
    histogram("task_duration_seconds", "A task's request time, by queue.",
              "queue", sorted(consumer["durations"].items()))


#: A snapshot's shape with nothing in it, every part present: the names a
#: collector can produce, for the registry's check of duplicate names.
_EMPTY = {
    "started": 0, "suspended": 0, "suspended_peak": 0, "requests": {},
    "rejected_requests": 0, "passes": {}, "streams_open": 0, "streams": {},
    "fragment_pages": {}, "fragments": {},
    "promises": {}, "abandoned": 0, "interrupted": 0, "executors": {},
    "shared": {"executions": 0, "joined": 0, "cache_hits": 0}, "durations": {},
    "tasks": {"queues": {}, "unreachable": None, "consumers": [],
              "consumer": {"running": 0, "settled": {}, "durations": {}}},
}


class SnapshotCollector:
    """A prometheus_client collector: each collection takes a snapshot with
    ``snapshot()`` and yields its families. A snapshot that fails is logged
    and yields nothing, so a site's endpoint that serves other metrics
    beside ours keeps serving them."""

    def __init__(self, snapshot):
        self.snapshot = snapshot

    def describe(self):
        # Without this, registering would collect (read the task backend).
        return families(_EMPTY)

    def collect(self):
        try:
            return families(self.snapshot())
        except Exception:
            log.exception("collective.futures: the metrics snapshot failed")
            return []


def encode(data, accept=""):
    """``(body, content_type)``: the snapshot ``data`` written by
    prometheus_client in the format the ``Accept`` header asks for
    (OpenMetrics when a scraper asks for it, else the text format)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(lambda: data))
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


def prometheus(data):
    """The snapshot ``data`` in the Prometheus text format, as text."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(lambda: data))
    return generate_latest(registry).decode("utf-8")
