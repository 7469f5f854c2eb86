"""The process-wide runtime: settings, the executors, the deadlines and the
shared promises.

One per process. ``configure()`` is called once at Zope startup with the
validated ``<product-config collective.futures>``; code that runs without a
Zope startup (test layers, scripts) gets the defaults on first use.
Executors start on first use: a site that never submits to ``processes``
never starts a worker process.
"""

import asyncio
import importlib
import inspect
import logging
import threading
import time

from .aioloop import AsyncioExecutor
from .exceptions import ConfigurationError
from .metrics import HISTORY_INTERVAL, Metrics
from .processpool import ProcessPool, dumps_call
from .rounds import Round
from .settings import Settings
from .shared import SharedFutures
from .sidepool import Deadlines, SidePool


logger = logging.getLogger("collective.futures")


class NoRequest:
    """What ``zope.globalrequest.getRequest()`` returns in a promise: any use
    fails with a clear error instead of acting on (or as) a request."""

    def __getattr__(self, name):
        raise RuntimeError(
            f"a promise has no request (it tried request.{name}): promises run "
            f"outside the request, without its user, session or ZODB "
            f"connection; pass what they need as plain arguments")

    def __repr__(self):
        return "<no request: this is a promise>"


NO_REQUEST = NoRequest()


_depth = threading.local()


class promise_context:
    """Around each promise on a side thread: no security manager (so no
    user: checks are made as Anonymous ``nobody``), and a global request
    that refuses to be used. Both reset afterwards, so one promise never
    sees what another left on the same thread. Re-entrant."""

    def __enter__(self):
        depth = getattr(_depth, "value", 0)
        _depth.value = depth + 1
        if depth == 0:
            from AccessControl.SecurityManagement import noSecurityManager
            from zope.globalrequest import setRequest
            noSecurityManager()
            setRequest(NO_REQUEST)

    def __exit__(self, *exc):
        _depth.value -= 1
        if _depth.value == 0:
            from AccessControl.SecurityManagement import noSecurityManager
            from zope.globalrequest import clearRequest
            clearRequest()
            noSecurityManager()


def run_promise(promise):
    """Run a promise on a thread-based executor. The traceback of a failing
    promise is logged here, once, where it ran; the next pass gets the
    exception."""
    try:
        with promise_context():
            return promise()
    except Exception:
        logger.exception(
            "promise %r (%s) raised; result() will raise it in the next pass",
            promise.key, promise.name)
        raise


async def run_async_promise(promise):
    """Run a promise on the asyncio loop (see :func:`run_promise`)."""
    try:
        # The loop thread's global request and security manager are shared
        # by every coroutine, so set for the synchronous part only.
        with promise_context():
            result = promise()
        if inspect.isawaitable(result):
            result = await result
        return result
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception(
            "promise %r (%s) raised; result() will raise it in the next pass",
            promise.key, promise.name)
        raise


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
    """Settings plus the executors that run promises, shared by all requests.

    ``executors`` (name -> Executor) replaces built-in or configured ones,
    for embedding and tests.
    """

    def __init__(self, settings=None, executors=None, deadlines=None,
                 clock=time.monotonic):
        self.settings = settings or Settings()
        self.clock = clock
        self.deadlines = deadlines or Deadlines(clock)
        self.shared = SharedFutures(self.settings.shared_max_entries, clock,
                                    stale_after=self.settings.timeout)
        self._factories = dict(self.settings.executors)
        # Guards lazy creation of executors.
        self._lock = threading.Lock()
        self._executors = dict(executors or {})
        self.metrics = Metrics()
        #: Set by a graceful shutdown: no new suspensions.
        self.draining = False
        self._sampling = False

    def start_sampling(self):
        """Sample the metrics' history every HISTORY_INTERVAL seconds, on the
        deadline thread."""
        if self._sampling:
            return
        self._sampling = True

        def sample():
            try:
                self.metrics.sample(self)
            finally:
                if self._sampling:
                    self.deadlines.call_later(HISTORY_INTERVAL, sample)

        self.deadlines.call_later(0, sample)

    def executor_gauges(self):
        """name -> {"queued": n, "running": n} for the executors started."""
        with self._lock:
            executors = dict(self._executors)
        return {name: {"queued": getattr(executor, "queued", 0),
                       "running": getattr(executor, "running", 0)}
                for name, executor in sorted(executors.items())}

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
                continue  # a custom executor: its own business
            capacity = (getattr(executor, "max_workers", None)
                        or getattr(executor, "max_concurrency", 0))
            free = max(0, capacity - getattr(executor, "running", 0))
            if getattr(executor, "queued", 0) + max(0, count - free) > bound:
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
    def stream_pool(self):
        """The threads that run handed-off streams (``max_streams``)."""
        return self.executor_for("streams")

    def _create(self, name):
        s = self.settings
        if name == "threads":
            return SidePool(s.max_workers, max_queue=s.max_queue)
        if name == "streams":
            return SidePool(s.max_streams, name="collective.futures-stream",
                            max_queue=0)
        if name == "processes":
            return ProcessPool(s.process_workers, s.process_max_queue,
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
        executor = self.executor_for(promise.executor)
        if isinstance(executor, ProcessPool):
            return executor.submit_call(
                promise.key, dumps_call(promise.fn, promise.args, promise.kwargs))
        if isinstance(executor, AsyncioExecutor):
            return executor.submit(run_async_promise, promise)
        return executor.submit(run_promise, promise)

    def interrupt(self, promise, future):
        """Stop ``future`` if its executor can (processes); True if so."""
        interrupt = getattr(self.executor_for(promise.executor), "interrupt", None)
        return bool(interrupt is not None and interrupt(future))

    # rounds

    def make_round(self, promises, on_done=None):
        """A Round for ``promises``, not started; its deadline is
        ``timeout`` seconds from now."""
        timeout = self.settings.timeout
        return Round(
            promises, self.submit, self.deadlines.call_at,
            deadline=self.clock() + timeout, timeout=timeout,
            on_done=on_done, interrupt=self.interrupt, metrics=self.metrics,
            clock=self.clock,
        )

    def start_round(self, promises, on_done=None):
        """Run ``promises`` concurrently now; see :meth:`make_round`."""
        return self.make_round(promises, on_done).start()

    def shutdown(self):
        self._sampling = False
        with self._lock:
            executors = list(self._executors.values())
        for executor in executors:
            try:
                executor.shutdown(wait=False, cancel_futures=True)
            except Exception:
                logger.exception("shutting down %r failed", executor)
        self.deadlines.stop()


_lock = threading.Lock()
_runtime = None


def get_runtime():
    """The process's runtime, created with default settings on first use."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = Runtime()
            _runtime.start_sampling()
        return _runtime


def configure(settings):
    """Replace the process's runtime with one built from ``settings``."""
    global _runtime
    runtime = Runtime(settings)
    runtime.check_factories()
    runtime.start_sampling()
    with _lock:
        old, _runtime = _runtime, runtime
    if old is not None:
        old.shutdown()
    return _runtime
