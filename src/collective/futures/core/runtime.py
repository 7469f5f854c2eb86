"""The runtime: settings, the executors, the deadlines, the shared
promises, the metrics, and the admission bounds, shared by all requests.

Runs on: any thread. Executors are created on first use under the
runtime's lock (the factory itself runs outside it): a site that never
submits to ``processes`` never starts a worker process.

Pure: how a promise is run on a thread of this process (with no request
and no user) is the ``sandbox``'s business, handed in by whoever builds
the runtime; ``collective.futures.runtime`` builds the process's runtime
with Zope's sandbox.
"""

import importlib
import inspect
import logging
import threading
import time

from ..exceptions import ConfigurationError
from ..executors.asyncio import AsyncioExecutor
from ..executors.processes import PickledCall, ProcessExecutor
from ..executors.threads import ThreadExecutor
from ..settings import Settings
from .deadlines import Deadlines
from .descriptors import Budget
from .metrics import Metrics
from .round import Round
from .shared import SharedFutures


logger = logging.getLogger("collective.futures")


class PlainSandbox:
    """Runs promises as they are: for code that runs without Zope (the
    unit tests of the core). Zope's sandbox is ``collective.futures.sandbox``."""

    @staticmethod
    def run(promise):
        return promise()

    @staticmethod
    async def run_async(promise):
        result = promise()
        if inspect.isawaitable(result):
            result = await result
        return result


def resolve(dotted):
    """Import ``my.module:attr`` (or ``my.module.attr``)."""
    module, sep, attr = dotted.partition(":")
    if not sep:
        module, _, attr = dotted.rpartition(".")
    target = importlib.import_module(module)
    for part in attr.split("."):
        target = getattr(target, part)
    return target


class Runtime:
    """Settings plus the executors that run promises.

    ``executors`` (name -> executor) replaces built-in or configured ones
    (``streams``: the stream pool), for embedding and tests; ``sandbox`` runs a promise on a thread of this
    process (``run(promise)``, ``run_async(promise)``).
    """

    def __init__(self, settings=None, executors=None, deadlines=None,
                 clock=time.monotonic, sandbox=PlainSandbox):
        self.settings = settings or Settings()
        self.clock = clock
        self.sandbox = sandbox
        self.deadlines = deadlines or Deadlines(clock)
        self.shared = SharedFutures(self.settings.shared_max_entries, clock,
                                    stale_after=self.settings.timeout)
        self._factories = dict(self.settings.executors)
        # Guards lazy creation of the executors and of the stream pool.
        self._lock = threading.Lock()
        self._executors = dict(executors or {})
        self._streams = self._executors.pop("streams", None)
        self._open_streams = 0
        #: The descriptor budget admission checks (core/descriptors.py).
        self.descriptors = Budget(self.settings.descriptor_reserve)
        self.metrics = Metrics()
        #: Set by a graceful shutdown: no new suspensions.
        self.draining = False
        self._sampling = False

    def start_sampling(self):
        """Sample the metrics' history every ``history_interval`` seconds, on
        the deadline thread."""
        if self._sampling:
            return
        self._sampling = True

        def sample():
            try:
                self.metrics.sample(self)
            finally:
                if self._sampling:
                    self.deadlines.call_later(
                        self.settings.history_interval, sample)

        self.deadlines.call_later(0, sample)

    def executor_gauges(self):
        """name -> {"queued": n, "running": n} for the executors started,
        and for the stream pool (``streams``) once a stream ran."""
        with self._lock:
            executors = dict(self._executors)
            if self._streams is not None:
                executors["streams"] = self._streams
        return {name: {"queued": getattr(executor, "queued", 0),
                       "running": getattr(executor, "running", 0)}
                for name, executor in sorted(executors.items())}

    # admission

    def admission(self, promises, suspending):
        """``(reason, may_wait)`` when a request submitting ``promises``
        must not suspend now (a bound is reached), else ``(None, True)``.
        ``may_wait``: running its promises while its worker waits would
        respect the bounds (only ``max_suspended`` was reached)."""
        if self.draining:
            return "the server is shutting down", False
        reason = self._queue_full(promises)
        if reason is not None:
            return reason, False
        if suspending:
            reason = self.descriptors.refusal(self.metrics.suspended)
            if reason is not None:
                return reason, True
        if suspending and self.metrics.suspended >= self.settings.max_suspended:
            return (f"{self.metrics.suspended} requests are suspended "
                    f"(max_suspended)"), True
        return None, True

    def _queue_full(self, promises):
        wanted = {}
        for promise in promises.values():
            wanted[promise.executor] = wanted.get(promise.executor, 0) + 1
        for name, count in wanted.items():
            executor = self.executor_for(name)
            bound = getattr(executor, "max_queue", None)
            if bound is None:
                continue  # unbounded, or a custom executor: its own business
            capacity = (getattr(executor, "capacity", None)
                        or getattr(executor, "max_workers", None)
                        or getattr(executor, "max_concurrency", 0))
            free = max(0, capacity - getattr(executor, "running", 0))
            # As the executor counts it (a worker not running an item is
            # free, whether it has picked one up yet or not): what would
            # wait beyond the free workers once these are queued.
            if getattr(executor, "queued", 0) + count - free > bound:
                return f"the {name} executor's queue is full (max_queue)"
        return None

    # executors

    def executor_for(self, name):
        """The executor called ``name``, created on first use."""
        with self._lock:
            executor = self._executors.get(name)
        if executor is None:
            # Created outside the lock: a factory may be slow, or use the
            # runtime itself. If two threads race, the first one stored wins.
            created = self._create(name)
            with self._lock:
                executor = self._executors.setdefault(name, created)
            if executor is not created:
                created.shutdown(wait=False)
        return executor

    @property
    def executor(self):
        """The default (``threads``) executor."""
        return self.executor_for("threads")

    @property
    def streams(self):
        """The threads that iterate the synchronous output of handed-off
        streams (``stream_threads``), a step at a time: a pool of its own,
        so that a slow generator never starves promises. Not an executor
        promises can name (``streams`` is a reserved name)."""
        with self._lock:
            if self._streams is None:
                # Each open stream has at most one step queued.
                self._streams = ThreadExecutor(
                    self.settings.stream_threads, name="collective.futures-stream",
                    max_queue=self.settings.max_streams, queue_setting="max_streams")
            return self._streams

    def open_stream(self):
        """Admit one more handed-off stream: None, or why not (the reason a
        503 gives). Each admitted stream is closed with close_stream()."""
        with self._lock:  # then the budget's own: never the other way
            if self._open_streams >= self.settings.max_streams:
                return f"{self._open_streams} streams are open (max_streams)"
            reason = self.descriptors.refusal(self.metrics.suspended)
            if reason is None:
                self._open_streams += 1
        return reason

    def close_stream(self):
        with self._lock:
            self._open_streams -= 1

    @property
    def open_streams(self):
        """Handed-off streams admitted and not yet over."""
        return self._open_streams

    def _create(self, name):
        s = self.settings
        if name == "threads":
            return ThreadExecutor(s.max_workers, max_queue=s.max_queue)
        if name == "processes":
            return ProcessExecutor(s.process_workers, s.process_max_queue,
                                   s.process_start_method)
        if name == "asyncio":
            return AsyncioExecutor(s.asyncio_max_concurrency, s.asyncio_max_queue)
        if name in self._factories:
            executor = resolve(self._factories[name])()
            logger.info("executor %r: %r from %s", name, executor,
                        self._factories[name])
            return executor
        raise ValueError(f"unknown executor {name!r}")

    def check_factories(self):
        """Import every configured executor factory (at startup), so a typo
        stops Zope instead of failing the first promise."""
        for name, dotted in self._factories.items():
            try:
                factory = resolve(dotted)
            except (ImportError, AttributeError) as exc:
                raise ConfigurationError(
                    f"<product-config collective.futures>: executor.{name}: "
                    f"cannot import {dotted!r}: {exc}") from exc
            if not callable(factory):
                raise ConfigurationError(
                    f"<product-config collective.futures>: executor.{name}: "
                    f"{dotted!r} is not callable")

    def submit(self, promise):
        """Start ``promise`` on its executor (or join the shared execution
        of its key); returns a ``concurrent.futures.Future``."""
        if promise.shared:
            return self.shared.run(promise, lambda: self._submit(promise))
        return self._submit(promise)

    def _submit(self, promise):
        # One protocol, submit(); where the executor runs work decides what
        # is submitted (IBoundedExecutor.runs_in).
        executor = self.executor_for(promise.executor)
        runs_in = getattr(executor, "runs_in", "threads")
        if runs_in == "processes":
            call = promise.pickled or PickledCall(
                promise.fn, promise.args, promise.kwargs, name=promise.key)
            return executor.submit(call)
        if runs_in == "loop":
            return executor.submit(self.sandbox.run_async, promise)
        return executor.submit(self.sandbox.run, promise)

    def interrupt(self, promise, future):
        """Stop ``future`` if its executor can (processes); True if so."""
        interrupt = getattr(self.executor_for(promise.executor), "interrupt", None)
        return bool(interrupt is not None and interrupt(future))

    # rounds

    def make_round(self, promises, on_done=None, on_settled=None, degrade=False):
        """A Round for ``promises``, not started; its deadline is
        ``timeout`` seconds from now (see Round for the callbacks and
        ``degrade``)."""
        timeout = self.settings.timeout
        return Round(
            promises, self.submit, self.deadlines.call_at,
            deadline=self.clock() + timeout, timeout=timeout,
            on_done=on_done, interrupt=self.interrupt, metrics=self.metrics,
            clock=self.clock, on_settled=on_settled, degrade=degrade,
        )

    def start_round(self, promises, on_done=None):
        """Run ``promises`` concurrently now; see :meth:`make_round`."""
        return self.make_round(promises, on_done).start()

    def shutdown(self):
        """Stop the executors and the deadline thread. Idempotent."""
        self._sampling = False
        with self._lock:
            executors = list(self._executors.values())
            if self._streams is not None:
                executors.append(self._streams)
        for executor in executors:
            try:
                executor.shutdown(wait=False, cancel_futures=True)
            except Exception:
                logger.exception("shutting down %r failed", executor)
        self.deadlines.stop()
