"""The process's descriptor budget: how many file descriptors are open, and
how many the process may open (its soft ``RLIMIT_NOFILE``).

Runs on: the thread that admits a request or a stream (a Zope worker), and
Zope's main thread at startup (``raise_soft_limit``).

A suspended request holds its client's connection while no worker holds it,
and usually an upstream connection of its promise; a stream holds its
client's connection and what its output opens. A process that runs out of
descriptors fails in the worst places (``accept``, a ZODB file, a log
handler), so admission refuses new suspended requests and streams with a
503 while fewer than ``reserve`` descriptors are left.

Counting is exact on Linux (``/proc/self/fd``), but costs a few
milliseconds with thousands open: it is done once per ``interval`` seconds,
and in between each admission counts for ``PER_REQUEST`` descriptors (a
burst cannot overshoot between two counts). Only when that estimate comes
near the limit is it counted again sooner, at most every ``min_interval``
seconds, so that a refusal rests on a fresh count. Elsewhere the count is
the estimate alone, from the admitted requests in flight.
"""

import os
import threading
import time

try:
    import resource
except ImportError:  # pragma: no cover - not POSIX
    resource = None


#: Descriptors a suspended request or a stream is expected to hold: its
#: client's connection and one upstream connection.
PER_REQUEST = 2

_FD_DIR = "/proc/self/fd"


def soft_limit():
    """The soft ``RLIMIT_NOFILE``, or None where there is none."""
    if resource is None:  # pragma: no cover
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def raise_soft_limit(cap=65536):
    """Raise the soft descriptor limit to the hard one (at most ``cap``):
    what a server that holds thousands of connections needs, and what
    ``ulimit -n`` usually leaves at 1024. Returns ``(before, after)``."""
    if resource is None:  # pragma: no cover
        return None, None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        return soft, wanted
    return soft, soft


def connection_bound(reserve, limit=soft_limit):
    """The most client connections a server may hold so that ``reserve``
    descriptors stay free (never fewer than half the limit), or None
    where there is no limit."""
    limit = limit()
    if limit is None:
        return None
    return max(limit - reserve, limit // 2)


class Budget:
    """``refusal(in_flight)``: None while descriptors are left, else why
    not (the reason a 503 gives)."""

    def __init__(self, reserve, limit=soft_limit, count=None, interval=1.0,
                 min_interval=0.05, clock=time.monotonic):
        self.reserve = reserve
        self._limit = limit
        self._count = count if count is not None else _count_open
        self.interval = interval
        self.min_interval = min_interval
        self.clock = clock
        # Guards the cached count: admissions race on worker threads.
        self._lock = threading.Lock()
        self._counted_at = None
        self._counted = 0
        self._since = 0  # admissions since the last count

    def refusal(self, in_flight):
        """Called for each admission; ``in_flight``: suspended requests and
        streams open now (the estimate where nothing can be counted)."""
        limit = self._limit()
        if limit is None:
            return None
        with self._lock:
            now = self.clock()
            open_now = self._counted + self._since * PER_REQUEST
            full = open_now + PER_REQUEST + self.reserve > limit
            age = None if self._counted_at is None else now - self._counted_at
            if age is None or age >= self.interval or (
                    full and age >= self.min_interval):
                counted = self._count()
                self._counted = (counted if counted is not None
                                 else in_flight * PER_REQUEST)
                self._counted_at, self._since = now, 0
                open_now = self._counted
                full = open_now + PER_REQUEST + self.reserve > limit
            if full:
                return (f"{open_now} of {limit} file descriptors are open "
                        f"(ulimit -n; descriptor_reserve {self.reserve})")
            self._since += 1
        return None


def _count_open():
    try:
        return len(os.listdir(_FD_DIR))
    except OSError:  # not Linux
        return None
