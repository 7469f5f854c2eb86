"""Shared promises: what identifies one (what it computes), one execution
for all concurrent requests of an identity (single flight), and optionally
its result kept for a time-to-live.

Runs on: any thread (a lock guards everything); :func:`identity` on the
Zope worker, when a promise is submitted. Only results are shared, never
request state. A shared result is global to the process, so it is found
only through what was computed: the function (by module and qualified
name), its arguments (plain data, canonically encoded) and the executor,
hashed with sha256. The caller's key never identifies a shared result: it
is the caller's handle within its own request. Whatever is computed must
still not depend on who asks (no user ids, no permission-dependent data).
"""

import collections
import concurrent.futures
import functools
import hashlib
import inspect
import sys
import threading
import time
import types

from .plain import encode, first_refused, not_plain
from .promise import Outcome


def identity(fn, args, kwargs, executor):
    """The identity of the shared execution of ``fn(*args, **kwargs)`` on
    ``executor``: a sha256 hex digest of the function's module and
    qualified name, the arguments and the executor.

    A ``functools.partial`` counts as its function with its arguments
    first. Raises ``TypeError`` (naming the argument) for what cannot be
    identified: a lambda, a local function, a method of an object, a
    callable object, anything that is not what its module and qualified
    name refer to, and arguments that are not plain data.
    """
    labelled = _labelled(args, kwargs, "")
    while isinstance(fn, functools.partial):
        labelled = _labelled(fn.args, fn.keywords, "partial ") + labelled
        args, kwargs = fn.args + tuple(args), {**fn.keywords, **kwargs}
        fn = fn.func
    name = function_name(fn)
    for label, value in labelled:
        reason = first_refused([value], not_plain)
        if reason is None:
            continue
        if reason.startswith("arguments nest"):
            raise TypeError(
                f"a shared promise's {label}: {reason}; pass flatter plain data")
        raise TypeError(
            f"a shared promise's arguments must be plain data (str, bytes, "
            f"int, float, bool, None, and lists, tuples and dicts of them): "
            f"its result is kept for everyone who asks for the same "
            f"computation; {label} is (or holds) an object of type {reason}")
    return digest("function", name, args, kwargs, executor)


def _labelled(args, kwargs, prefix):
    return ([(f"{prefix}args[{index}]", value) for index, value in enumerate(args)]
            + [(f"{prefix}kwargs[{name!r}]", value) for name, value in kwargs.items()])


def function_name(fn):
    """``module:qualname`` of ``fn``, which must be what that name refers
    to (so that two different functions never share a name); else
    ``TypeError`` saying why."""
    qualname = getattr(fn, "__qualname__", None)
    module = getattr(fn, "__module__", None)
    if not isinstance(qualname, str):
        raise TypeError(
            f"shared=True needs fn to be a function importable by name, not "
            f"a callable object (of type {type(fn).__name__}): its result may "
            f"depend on the object")
    if "<lambda>" in qualname or "<locals>" in qualname:
        what = "a lambda" if qualname.endswith("<lambda>") else "a local function"
        raise TypeError(
            f"shared=True needs fn to be a function importable by name, not "
            f"{what} ({qualname} in {module}): two of them may share a name "
            f"and not what they compute; define it at module level")
    # A bound method (a builtin one too); a classmethod's owner is a class,
    # a builtin function's its module.
    owner = getattr(fn, "__self__", None)
    if owner is not None and not isinstance(owner, (type, types.ModuleType)):
        raise TypeError(
            f"shared=True needs fn to be a function importable by name, not "
            f"a method of an object ({qualname}, bound to an object of type "
            f"{type(owner).__name__}): its result may depend on the object; "
            f"pass plain data to a function instead")
    if not isinstance(module, str):
        raise TypeError(
            f"shared=True needs fn to be a function importable by name: "
            f"{qualname} names no module")
    target = sys.modules.get(module)
    for part in qualname.split("."):
        target = getattr(target, part, None)
    # A classmethod is made anew at each attribute access: equal, not the same.
    if not (target is fn or (inspect.ismethod(fn) and target == fn)):
        raise TypeError(
            f"shared=True needs fn to be what its module and qualified name "
            f"refer to: {module}.{qualname} is not fn (a copy made by a "
            f"decorator under another name, or code reloaded since fn was "
            f"taken?); a shared result is identified by that name")
    return f"{module}:{qualname}"


def digest(kind, name, args, kwargs, executor):
    """The sha256 hex digest that identifies a shared execution: ``kind``
    (``"function"``, ``"named"``) and ``name`` say what runs, with ``args``
    and ``kwargs`` (plain data, see :func:`.plain.encode`), on
    ``executor``. Bounded in size whatever the arguments."""
    return hashlib.sha256(encode(
        (kind, name, executor, tuple(args), dict(kwargs)))).hexdigest()


class SharedFutures:
    """Single flight and the time-to-live cache of shared promises, both
    keyed by identity (:func:`identity`, :func:`digest`), never by the
    callers' keys."""

    def __init__(self, max_entries=1000, clock=time.monotonic, stale_after=None):
        self.max_entries = max_entries
        self.clock = clock
        #: An execution in flight longer than this is not joined any more
        #: (it hangs, or its upstream does): the next request starts anew.
        self.stale_after = stale_after
        # Guards the in-flight futures, the cache and the counters.
        self._lock = threading.Lock()
        self._inflight = {}  # identity -> (future, started)
        self._cache = collections.OrderedDict()  # identity -> (expires, Outcome)
        self.executions = 0
        self.joined = 0
        self.cache_hits = 0

    def cached(self, identity):
        """A fresh kept result for ``identity`` (see :func:`identity`; an
        Outcome), or None."""
        with self._lock:
            return self._fresh(identity)

    def _fresh(self, identity):
        # Called with the lock held.
        entry = self._cache.get(identity)
        if entry is None:
            return None
        expires, outcome = entry
        if self.clock() >= expires:
            del self._cache[identity]
            return None
        self._cache.move_to_end(identity)
        self.cache_hits += 1
        return outcome

    def run(self, promise, submit):
        """The future of the execution of ``promise``'s identity
        (``promise.shared_key``) in flight, or of a new one started with
        ``submit()``. A shared promise without an identity is refused
        (``ValueError``): its key is the caller's, never what identifies
        a shared execution.

        As in concurrent.futures: the new execution's future is registered
        under the lock (so concurrent requests join it), and ``submit()``
        runs outside it (it may wait for an executor to start). What the
        executor's future does is copied onto the registered one; if
        ``submit()`` raises (a full queue), every joiner gets that error.
        """
        identity = promise.shared_key
        if not identity:
            raise ValueError(
                f"shared promise {promise.key!r} has no identity (shared_key): "
                f"make it with collective.futures.api.make_promise")
        with self._lock:
            entry = self._inflight.get(identity)
            if entry is not None:
                future, started = entry
                if (self.stale_after is None
                        or self.clock() - started < self.stale_after):
                    self.joined += 1
                    return future
            else:
                # An execution may have finished, and been kept, since the
                # request looked at the cache (pass 1): use it.
                kept = self._fresh(identity)
                if kept is not None:
                    future = concurrent.futures.Future()
                    future.set_result(kept.value)
                    return future
            future = concurrent.futures.Future()
            self._inflight[identity] = (future, self.clock())
        future.add_done_callback(
            lambda f: self._finished(identity, promise.ttl, f))
        try:
            execution = submit()
        except BaseException as exc:
            # Refused (a full queue): every joiner gets the error, and the
            # identity is free again (_finished).
            future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return future
        with self._lock:
            self.executions += 1
        execution.add_done_callback(lambda done: _copy(done, future))
        return future

    def _finished(self, identity, ttl, future):
        with self._lock:
            entry = self._inflight.get(identity)
            if entry is not None and entry[0] is future:
                del self._inflight[identity]
            if ttl and not future.cancelled() and future.exception() is None:
                self._cache[identity] = (self.clock() + ttl,
                                         Outcome(value=future.result()))
                self._cache.move_to_end(identity)
                while len(self._cache) > self.max_entries:
                    self._cache.popitem(last=False)


def _copy(source, target):
    """Settle ``target`` as ``source`` ended (a done callback)."""
    if target.done():
        return
    if source.cancelled():
        target.cancel()
    elif source.exception() is not None:
        target.set_exception(source.exception())
    else:
        target.set_result(source.result())
