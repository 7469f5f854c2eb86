"""What one client request knows about its futures, across passes.

Runs on: the Zope worker thread publishing a pass (submit, result) and,
between passes, the side thread that records a round's outcomes. The two
never overlap: a pass ends (and hands its promises over) before the round
starts, and the next pass starts only after the round handed its outcomes
back, so this state needs no lock.
"""

import dataclasses
import inspect
import time
import typing


#: WSGI environ key holding the :class:`RequestFutures` of a client request.
STATE_KEY = "collective.futures.state"
#: WSGI environ key set by a server that can suspend a request between
#: passes (collective.futures' waitress channel); its value names the server.
SUSPEND_KEY = "collective.futures.suspend"


@dataclasses.dataclass(frozen=True)
class Promise:
    """A call to run outside the worker: ``fn(*args, **kwargs)``, on the
    named executor; ``shared`` promises run once for all concurrent
    requests of the same key, and keep a success for ``ttl`` seconds."""

    key: str
    fn: typing.Callable
    args: tuple = ()
    kwargs: dict = dataclasses.field(default_factory=dict)
    executor: str = "threads"
    shared: bool = False
    ttl: float = 0.0
    #: what identifies a shared execution (default: the key)
    shared_key: str = None

    def __call__(self):
        return self.fn(*self.args, **self.kwargs)

    @property
    def name(self):
        """A readable name of the function, for logs."""
        fn = self.fn
        return getattr(fn, "__qualname__", None) or repr(fn)


@dataclasses.dataclass(frozen=True)
class PromiseOptions:
    """``fn`` with where and how to run it; made by :func:`promise`."""

    fn: typing.Callable
    executor: str = None
    shared: bool = False
    ttl: float = 0.0
    shared_key: str = None

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def with_shared_key(self, shared_key):
        return dataclasses.replace(self, shared_key=shared_key)


def promise(fn, /, *, executor=None, shared=False, ttl=None):
    """Wrap ``fn`` with options for ``submit``, ``resultOrSubmit`` and
    ``AsyncWorkerStreamIterator`` (which pass their other arguments to
    ``fn``, so these options can never collide with ``fn``'s own).

    ``executor``: ``"threads"`` (default), ``"processes"``, ``"asyncio"``
    (default for ``async def`` functions) or a configured custom executor.
    ``shared=True``: concurrent requests for the same key share one
    execution; ``ttl`` (seconds) keeps its result for later requests.
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
    return PromiseOptions(fn, executor, shared, float(ttl or 0))


def make_promise(func, key, fn, args, kwargs):
    """Validate a call into a :class:`Promise` (``fn`` may carry options
    from :func:`promise`); errors name ``func`` and the argument."""
    from .processpool import dumps_call  # here: these import this module
    from .runtime import get_runtime

    if not callable(fn):
        raise TypeError(
            f"collective.futures.{func}(): fn must be callable, not "
            f"{type(fn).__name__} ({fn!r:.60})")
    options = fn if isinstance(fn, PromiseOptions) else PromiseOptions(fn)
    target = options.fn
    coroutine = inspect.iscoroutinefunction(target)
    executor = options.executor or ("asyncio" if coroutine else "threads")
    names = get_runtime().settings.executor_names
    if executor not in names:
        raise ValueError(
            f"collective.futures.{func}(): unknown executor {executor!r}; "
            f"configured: {', '.join(names)}")
    if coroutine and executor in ("threads", "processes"):
        raise TypeError(
            f"collective.futures.{func}(): {target.__qualname__} is an async "
            f"function: run it on the asyncio executor")
    if executor == "processes":
        try:
            dumps_call(target, args, kwargs)
        except TypeError as exc:
            raise TypeError(f"collective.futures.{func}(): {exc}") from None
    check_plain(f"collective.futures.{func}()", args, kwargs, fn=target)
    return Promise(key, target, args, kwargs, executor, options.shared,
                   options.ttl, options.shared_key)



def _refusal(value):
    """Why ``value`` must not go to a promise, or None."""
    try:
        from persistent import Persistent
    except ImportError:  # pragma: no cover - ZODB is a dependency of Zope
        Persistent = ()
    if isinstance(value, Persistent):
        return "a persistent object (it belongs to the request's ZODB connection)"
    if hasattr(value, "aq_base") or hasattr(value, "aq_parent"):
        return "an acquisition-wrapped object (it belongs to the request)"
    if hasattr(value, "RESPONSE") and hasattr(value, "environ"):
        return "the request"
    return None


def check_plain(what, args, kwargs, fn=None, depth=8):
    """TypeError if ``fn`` is bound to, or an argument is (or contains, as
    an item, a key or a value), a persistent object, an acquisition wrapper
    or the request: promises run without the ZODB connection and the
    request those belong to. Containers nested deeper than ``depth`` are
    refused too, rather than left unchecked."""
    owner = getattr(fn, "__self__", None)
    if owner is not None and not isinstance(owner, type):
        reason = _refusal(owner)
        if reason is None and hasattr(owner, "request") and hasattr(owner, "context"):
            reason = "a view (it holds the request and its context)"
        if reason is not None:
            raise TypeError(f"{what}: fn is a method of {reason}; promises run "
                            f"without it: use a function and plain arguments")
    pending = [(value, 0) for value in args] + [(v, 0) for v in kwargs.values()]
    while pending:
        value, level = pending.pop()
        if isinstance(value, (str, bytes, int, float, bool, type(None))):
            continue
        reason = _refusal(value)
        if reason is not None:
            raise TypeError(f"{what}: an argument is {reason}; pass plain data "
                            f"(ids, URLs, strings) instead")
        if isinstance(value, (dict, list, tuple, set, frozenset)):
            if level >= depth:
                raise TypeError(f"{what}: arguments nest deeper than {depth} "
                                f"containers; pass flatter plain data")
            if isinstance(value, dict):
                pending.extend((v, level + 1) for v in value)
                pending.extend((v, level + 1) for v in value.values())
            else:
                pending.extend((v, level + 1) for v in value)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a promise produced: a value, or the exception it raised; where
    it ran and how long the request waited for it."""

    value: object = None
    error: BaseException = None
    executor: str = None
    seconds: float = None

    @property
    def kind(self):
        """completed, failed, timed_out, cancelled or rejected."""
        from .exceptions import (
            ExecutorFullError, FutureCancelledError, FutureTimeoutError)
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
            raise self.error
        return self.value


class RequestFutures:
    """The promises and results of one client request.

    ``resolved`` survives from pass to pass (and across Zope's ConflictError
    retries); ``pending`` holds what the current pass submitted.
    """

    def __init__(self):
        self.resolved = {}
        self.pending = {}
        self.rounds = 0
        self.started = time.monotonic()
        #: Set (to a reason) when the next pass must be a 503 instead.
        self.unavailable = None

    @property
    def passes(self):
        """Passes published so far, the current one included."""
        return self.rounds + 1

    def begin_pass(self):
        """A pass starts (or is retried): forget what was submitted before."""
        self.pending.clear()

    def take_pending(self):
        """Hand this pass's promises to a round; counts the round."""
        promises, self.pending = self.pending, {}
        self.rounds += 1
        return promises

    def record(self, outcomes):
        """Store a finished round's outcomes (key -> :class:`Outcome`)."""
        self.resolved.update(outcomes)

    def summary(self):
        """``key [executor] 1.02s completed, ...`` for the request log."""
        return ", ".join(
            f"{key} [{o.executor or 'shared cache'}] "
            f"{'-' if o.seconds is None else f'{o.seconds:.3f}s'} "
            f"{o.kind if o.error is None else type(o.error).__name__}"
            for key, o in self.resolved.items())

    def __repr__(self):
        return (
            f"<RequestFutures pass={self.passes} "
            f"resolved={sorted(self.resolved)} pending={sorted(self.pending)}>"
        )
