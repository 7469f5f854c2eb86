"""The side threads: a bounded pool that runs promises, and one watchdog
thread that enforces deadlines.

Runs on: ``collective.futures-worker-N`` threads (promises),
``collective.futures-stream-N`` threads (handed-off streams, which write
through waitress's thread-safe output buffer) and the
``collective.futures-deadlines`` thread (timeouts). None touches a socket
directly, the ZODB or a Zope request.

Both are daemon threads: a promise that hangs must not keep the process
alive when the server stops (``concurrent.futures.ThreadPoolExecutor`` joins
its threads at exit, which a hung promise would block for ever).
"""

import collections
import concurrent.futures
import heapq
import itertools
import logging
import threading
import time

from .exceptions import ExecutorFullError


logger = logging.getLogger("collective.futures")


class SidePool(concurrent.futures.Executor):
    """A bounded pool of named daemon threads, returning standard Futures.

    Threads start on demand, up to ``max_workers``, and retire after
    ``idle_seconds`` without work. ``submit`` never blocks: work beyond the
    bound waits in the queue, where ``Future.cancel()`` can still drop it.
    """

    def __init__(self, max_workers, name="collective.futures-worker",
                 idle_seconds=60.0, max_queue=None):
        if max_workers < 1:
            raise ValueError("max_workers must be 1 or more")
        self.max_workers = max_workers
        self.max_queue = max_queue
        self._name = name
        self._idle_seconds = idle_seconds
        # One condition guards the queue and the thread counts; submitters
        # notify it, idle workers wait on it.
        self._cv = threading.Condition()
        self._queue = collections.deque()
        self._threads = set()
        self._idle = 0
        self._numbers = itertools.count(1)
        self._shutdown = False

    @property
    def threads(self):
        """Worker threads alive now."""
        with self._cv:
            return len(self._threads)

    @property
    def queued(self):
        """Work items waiting for a thread."""
        with self._cv:
            return len(self._queue)

    @property
    def running(self):
        """Work items being run now."""
        with self._cv:
            return len(self._threads) - self._idle

    def submit(self, fn, /, *args, **kwargs):
        future = concurrent.futures.Future()
        with self._cv:
            if self._shutdown:
                raise RuntimeError("cannot submit to a SidePool after shutdown")
            spare = self._idle + self.max_workers - len(self._threads)
            if (self.max_queue is not None
                    and len(self._queue) - spare >= self.max_queue):
                raise ExecutorFullError(
                    f"{self._name}: {self.max_queue} promises already wait for "
                    f"a thread (max_queue)")
            self._queue.append((future, fn, args, kwargs))
            if self._idle < len(self._queue) and (
                    len(self._threads) < self.max_workers):
                self._spawn()
            self._cv.notify()
        return future

    def _spawn(self):
        # Called with self._cv held.
        thread = threading.Thread(
            target=self._work, daemon=True,
            name=f"{self._name}-{next(self._numbers)}",
        )
        self._threads.add(thread)
        thread.start()

    def _work(self):
        me = threading.current_thread()
        while True:
            with self._cv:
                while not self._queue and not self._shutdown:
                    # Why wait: no work. Woken by submit() or shutdown();
                    # the deadline retires a thread nobody needs.
                    self._idle += 1
                    woken = self._cv.wait(self._idle_seconds)
                    self._idle -= 1
                    if not woken and not self._queue:
                        self._threads.discard(me)
                        return
                if not self._queue:
                    self._threads.discard(me)
                    return
                future, fn, args, kwargs = self._queue.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            # A catch-all: whatever fn raises, even SystemExit, ends up in
            # its future and never kills this thread.
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)
            del future, fn, args, kwargs

    def shutdown(self, wait=True, *, cancel_futures=False):
        """Stop accepting work. Idempotent. ``wait`` is bounded: promises
        that hang are daemon threads and are left behind."""
        with self._cv:
            self._shutdown = True
            if cancel_futures:
                while self._queue:
                    self._queue.popleft()[0].cancel()
            self._cv.notify_all()
            threads = list(self._threads)
        if wait:
            deadline = time.monotonic() + 5.0
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))


class DeadlineHandle:
    """A scheduled call; :meth:`cancel` stops it if it has not run yet."""

    __slots__ = ("when", "callback", "cancelled")

    def __init__(self, when, callback):
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self):
        self.cancelled = True

    def __lt__(self, other):
        return self.when < other.when


class Deadlines:
    """Calls callbacks at monotonic times, from one named daemon thread.

    A callback must be quick (it runs on the shared watchdog thread); one that
    raises is logged and the watchdog goes on.
    """

    def __init__(self, clock=time.monotonic, name="collective.futures-deadlines"):
        self.clock = clock
        self._name = name
        # Guards the heap; call_at notifies it when the earliest time changes.
        self._cv = threading.Condition()
        self._heap = []
        self._thread = None
        self._stopped = False

    def call_at(self, when, callback):
        handle = DeadlineHandle(when, callback)
        with self._cv:
            heapq.heappush(self._heap, handle)
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(
                    target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cv.notify()
        return handle

    def call_later(self, delay, callback):
        return self.call_at(self.clock() + delay, callback)

    def run_due(self):
        """Run every callback whose time has come; returns how many ran.
        The watchdog thread calls this; tests with a fake clock may too."""
        due = []
        with self._cv:
            now = self.clock()
            while self._heap and self._heap[0].when <= now:
                handle = heapq.heappop(self._heap)
                if not handle.cancelled:
                    due.append(handle)
        for handle in due:
            try:
                handle.callback()
            except Exception:
                logger.exception("deadline callback %r failed", handle.callback)
        return len(due)

    def _run(self):
        while True:
            with self._cv:
                if self._stopped:
                    return
                if self._heap:
                    delay = self._heap[0].when - self.clock()
                else:
                    delay = 60.0
                if delay > 0:
                    # Why wait: nothing is due. Woken early by call_at (a new
                    # earliest deadline) or stop(); bounded by the next due time.
                    self._cv.wait(min(delay, 60.0))
                    continue
            self.run_due()

    def stop(self):
        with self._cv:
            self._stopped = True
            self._cv.notify_all()
