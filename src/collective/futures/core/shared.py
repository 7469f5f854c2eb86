"""Shared promises: one execution for all concurrent requests of a key
(single flight), and optionally its result kept for a time-to-live.

Runs on: any thread (a lock guards everything). Only results are shared,
never request state; a shared key is global to the process, so it must not
depend on who asks (no user ids, no permissions-dependent data in the
result).
"""

import collections
import concurrent.futures
import threading
import time

from .promise import Outcome


class SharedFutures:
    def __init__(self, max_entries=1000, clock=time.monotonic, stale_after=None):
        self.max_entries = max_entries
        self.clock = clock
        #: An execution in flight longer than this is not joined any more
        #: (it hangs, or its upstream does): the next request starts anew.
        self.stale_after = stale_after
        # Guards the in-flight futures, the cache and the counters.
        self._lock = threading.Lock()
        self._inflight = {}
        self._cache = collections.OrderedDict()  # key -> (expires, Outcome)
        self.executions = 0
        self.joined = 0
        self.cache_hits = 0

    def cached(self, key):
        """A fresh kept result for ``key`` (an Outcome), or None."""
        with self._lock:
            return self._fresh(key)

    def _fresh(self, key):
        # Called with the lock held.
        entry = self._cache.get(key)
        if entry is None:
            return None
        expires, outcome = entry
        if self.clock() >= expires:
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        self.cache_hits += 1
        return outcome

    def run(self, promise, submit):
        """The future of the execution of ``promise``'s shared key in
        flight, or of a new one started with ``submit()``.

        As in concurrent.futures: the new execution's future is registered
        under the lock (so concurrent requests join it), and ``submit()``
        runs outside it (it may wait for an executor to start). What the
        executor's future does is copied onto the registered one; if
        ``submit()`` raises (a full queue), every joiner gets that error.
        """
        key = promise.shared_key or promise.key
        with self._lock:
            entry = self._inflight.get(key)
            if entry is not None:
                future, started = entry
                if (self.stale_after is None
                        or self.clock() - started < self.stale_after):
                    self.joined += 1
                    return future
            else:
                # An execution may have finished, and been kept, since the
                # request looked at the cache (pass 1): use it.
                kept = self._fresh(key)
                if kept is not None:
                    future = concurrent.futures.Future()
                    future.set_result(kept.value)
                    return future
            future = concurrent.futures.Future()
            self._inflight[key] = (future, self.clock())
        future.add_done_callback(lambda f: self._finished(key, promise.ttl, f))
        try:
            execution = submit()
        except BaseException as exc:
            # Refused (a full queue): every joiner gets the error, and the
            # key is free again (_finished).
            future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return future
        with self._lock:
            self.executions += 1
        execution.add_done_callback(lambda done: _copy(done, future))
        return future

    def _finished(self, key, ttl, future):
        with self._lock:
            entry = self._inflight.get(key)
            if entry is not None and entry[0] is future:
                del self._inflight[key]
            if ttl and not future.cancelled() and future.exception() is None:
                self._cache[key] = (self.clock() + ttl,
                                    Outcome(value=future.result()))
                self._cache.move_to_end(key)
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
