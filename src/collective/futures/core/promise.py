"""The value types of the core: a promise, its options, its outcome.

Runs on: any thread. Immutable values: created on the Zope worker (by the
API), read by the executors' threads and the round.
"""

import dataclasses
import functools
import typing

from ..exceptions import (
    ExecutorFullError, FutureCancelledError, FutureTimeoutError)


class _NoFallback:
    """The ``on_error`` of a promise that has none: its failure raises."""

    def __repr__(self):
        return "NO_FALLBACK"


NO_FALLBACK = _NoFallback()


@dataclasses.dataclass(frozen=True)
class Promise:
    """A call to run outside the worker: ``fn(*args, **kwargs)``, on the
    named executor; ``shared`` promises run once for all concurrent
    requests of the same computation (``shared_key``), and keep a success
    for ``ttl`` seconds."""

    key: str
    fn: typing.Callable
    args: tuple = ()
    kwargs: dict = dataclasses.field(default_factory=dict)
    executor: str = "threads"
    shared: bool = False
    ttl: float = 0.0
    #: what identifies a shared execution: what it computes (function,
    #: arguments, executor: core.shared.identity), never the caller's key;
    #: required when ``shared``
    shared_key: str = None
    #: for the ``processes`` executor: the call, pickled once when the
    #: promise was made (executors.processes.PickledCall)
    pickled: object = None
    #: what ``result()`` gives instead of raising when the promise fails
    #: or times out (NO_FALLBACK: it raises)
    on_error: object = NO_FALLBACK

    def __call__(self):
        return self.fn(*self.args, **self.kwargs)

    @property
    def name(self):
        """The function's name, for logs and metrics: see :func:`name_of`."""
        return name_of(self.fn)


def name_of(fn):
    """The qualified name of the function ``fn`` calls: never ``repr``,
    which can carry arguments (a ``functools.partial`` shows them, a
    password included) and differs for every object (one metrics label
    per request). A partial is named after its function, a callable object
    after its class."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__qualname__", None)
    return name if isinstance(name, str) else type(fn).__qualname__


@dataclasses.dataclass(frozen=True)
class PromiseOptions:
    """``fn`` with where and how to run it; made by :func:`promise`."""

    fn: typing.Callable
    executor: str = None
    shared: bool = False
    ttl: float = 0.0
    shared_key: str = None
    on_error: object = NO_FALLBACK

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def with_shared_key(self, shared_key):
        return dataclasses.replace(self, shared_key=shared_key)


def promise(fn, /, *, executor=None, shared=False, ttl=None,
            on_error=NO_FALLBACK):
    """Wrap ``fn`` with options for ``submit``, ``resultOrSubmit`` and
    ``AsyncWorkerStreamIterator`` (which pass their other arguments to
    ``fn``, so these options can never collide with ``fn``'s own).

    ``executor``: ``"threads"`` (default), ``"processes"``, ``"asyncio"``
    (default for ``async def`` functions) or a configured custom executor.
    ``shared=True``: concurrent requests for the same computation (the
    same function, arguments and executor; the key is only each caller's
    handle) share one execution; ``ttl`` (seconds) keeps its result for
    later requests. ``fn`` must then be importable by name and its
    arguments plain data (checked at ``submit``).
    ``on_error``: what ``result()`` and ``resultOrSubmit()`` give instead of
    raising when the promise fails or times out (the failure is still
    logged once, where it ran, and counted): one failing upstream then
    degrades its part of the page instead of turning the page into a 500.
    """
    if isinstance(fn, PromiseOptions):
        fn = fn.fn
    if not callable(fn):
        raise TypeError(
            f"collective.futures.promise(): fn must be callable, not "
            f"{type(fn).__name__} ({fn!r:.60})")
    if executor is not None and not isinstance(executor, str):
        raise TypeError(
            f"collective.futures.promise(): executor must be a name (str), "
            f"not {type(executor).__name__}")
    if not isinstance(shared, bool):
        raise TypeError("collective.futures.promise(): shared must be True or False")
    if ttl is not None:
        if not shared:
            raise ValueError("collective.futures.promise(): ttl needs shared=True")
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl < 0:
            raise ValueError(
                f"collective.futures.promise(): ttl must be seconds >= 0, not {ttl!r}")
    return PromiseOptions(fn, executor, shared, float(ttl or 0),
                          on_error=on_error)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a promise produced: a value, or the exception it raised; where
    it ran and how long the request waited for it."""

    value: object = None
    error: BaseException = None
    executor: str = None
    seconds: float = None
    #: what unwrap() gives instead of raising ``error`` (the promise's
    #: ``on_error``); NO_FALLBACK: it raises
    fallback: object = NO_FALLBACK

    @property
    def kind(self):
        """completed, failed, timed_out, cancelled or rejected."""
        error = self.error
        if error is None:
            return "completed"
        if isinstance(error, FutureTimeoutError):
            return "timed_out"
        if isinstance(error, FutureCancelledError):
            return "cancelled"
        if isinstance(error, ExecutorFullError):
            return "rejected"
        return "failed"

    def unwrap(self):
        if self.error is not None:
            if self.fallback is not NO_FALLBACK:
                return self.fallback
            raise self.error
        return self.value
