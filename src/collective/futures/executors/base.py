"""The bounded pool both the ``threads`` and the ``processes`` executors
are: a queue, workers started on demand up to a bound, idle workers
retired, a bounded shutdown.

Runs on: ``submit`` on any thread (a Zope worker, a round, a stream); each
worker is a named daemon thread of this process that takes work with
:meth:`BoundedPool._take`. Daemon threads: a promise that hangs must not
keep the process alive when the server stops
(``concurrent.futures.ThreadPoolExecutor`` joins its threads at exit, which
a hung promise would block for ever).
"""

import collections
import concurrent.futures
import itertools
import threading
import time

from zope.interface import implementer

from ..exceptions import ExecutorFullError
from ..interfaces import IBoundedExecutor


@implementer(IBoundedExecutor)
class BoundedPool(concurrent.futures.Executor):
    """See IBoundedExecutor. A subclass says how a worker runs an item
    (:meth:`_start_worker`) and may turn a call into what its workers take
    (:meth:`_item`)."""

    runs_in = "threads"

    def __init__(self, max_workers, name, max_queue=None, idle_seconds=60.0,
                 queue_setting="max_queue"):
        if max_workers < 1:
            raise ValueError("max_workers must be 1 or more")
        self.max_workers = max_workers
        self.max_queue = max_queue
        self.name = name
        #: The setting an ExecutorFullError names.
        self.queue_setting = queue_setting
        self._idle_seconds = idle_seconds
        # One condition guards the queue, the workers and the idle count;
        # submit() and shutdown() notify it, idle workers wait on it.
        self._cv = threading.Condition()
        self._queue = collections.deque()
        self._workers = {}  # thread -> worker
        self._busy = set()  # threads running an item now
        self._idle = 0
        self._numbers = itertools.count(1)
        self._shutdown = False

    @property
    def capacity(self):
        return self.max_workers

    @property
    def threads(self):
        """Worker threads alive now."""
        with self._cv:
            return len(self._workers)

    @property
    def queued(self):
        with self._cv:
            self._prune()
            return len(self._queue)

    def _prune(self):
        # Called with the lock held. A cancelled item is dropped when a
        # worker takes it; until then it must not count as waiting (a
        # request would be refused for work nobody wants).
        if any(future.cancelled() for future, _ in self._queue):
            self._queue = collections.deque(
                item for item in self._queue if not item[0].cancelled())

    @property
    def running(self):
        with self._cv:
            return len(self._busy)

    def _item(self, fn, args, kwargs):
        """What a worker takes for ``fn(*args, **kwargs)`` (runs in submit,
        on the caller's thread, outside the lock)."""
        return fn, args, kwargs

    def _start_worker(self, number):
        """Start worker ``number``; return ``(thread, worker)``, its thread
        and what the subclass keeps of it (called with the lock held)."""
        raise NotImplementedError

    def submit(self, fn, /, *args, **kwargs):
        item = self._item(fn, args, kwargs)
        future = concurrent.futures.Future()
        with self._cv:
            if self._shutdown:
                raise RuntimeError(f"cannot submit to {self.name} after shutdown")
            # Workers not running an item (idle, starting, or yet to be
            # started) will take queued items; the rest of the queue waits.
            spare = self.max_workers - len(self._busy)
            if (self.max_queue is not None
                    and len(self._queue) - spare >= self.max_queue):
                # Cancelled items wait for nobody: drop them before refusing.
                self._prune()
                if len(self._queue) - spare >= self.max_queue:
                    raise ExecutorFullError(
                        f"{self.name} is full: {len(self._busy)} running, "
                        f"{len(self._queue)} waiting ({self.queue_setting})")
            self._queue.append((future, item))
            if self._idle < len(self._queue) and (
                    len(self._workers) < self.max_workers):
                number = next(self._numbers)
                thread, worker = self._start_worker(number)
                self._workers[thread] = worker
            self._cv.notify()
        return future

    def _take(self):
        """The next ``(future, item)`` for the calling worker thread, or
        None when it must retire (idle too long, or shut down)."""
        me = threading.current_thread()
        with self._cv:
            self._busy.discard(me)  # done with the item it took before
            while not self._queue and not self._shutdown:
                # Why wait: no work. Woken by submit() or shutdown(); the
                # deadline retires a worker nobody needs.
                self._idle += 1
                woken = self._cv.wait(self._idle_seconds)
                self._idle -= 1
                if not woken and not self._queue:
                    break
            if self._queue:
                # After shutdown(cancel_futures=False) too: queued work still
                # runs, as in concurrent.futures.
                self._busy.add(me)
                return self._queue.popleft()
            self._workers.pop(me, None)
            return None

    def _gone(self):
        """The calling worker thread is ending, whatever the reason: it no
        longer counts (a worker that died must not hold capacity)."""
        me = threading.current_thread()
        with self._cv:
            self._busy.discard(me)
            self._workers.pop(me, None)

    def interrupt(self, future):
        """See IBoundedExecutor: threads cannot be interrupted."""
        return False

    def _stopping(self, workers):
        """Shutdown hook, outside the lock: ``workers`` are stopping."""

    def shutdown(self, wait=True, *, cancel_futures=False):
        """See IBoundedExecutor. ``wait`` is bounded (5 s in all): work that
        hangs is left behind in its daemon thread."""
        with self._cv:
            self._shutdown = True
            if cancel_futures:
                while self._queue:
                    self._queue.popleft()[0].cancel()
            self._cv.notify_all()
            workers = dict(self._workers)
        self._stopping(list(workers.values()))
        if wait:
            deadline = time.monotonic() + 5.0
            for thread in workers:
                thread.join(max(0.0, deadline - time.monotonic()))
