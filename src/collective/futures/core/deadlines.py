"""The deadline thread: calls callbacks at monotonic times.

Runs on: the ``collective.futures-deadlines`` daemon thread (one per
runtime), started on the first ``call_at``. Callbacks must be quick: a
round's expiry, a stream's 504, the metrics' sampling. ``call_at`` may be
called from any thread.
"""

import heapq
import logging
import threading
import time


logger = logging.getLogger("collective.futures")


class DeadlineHandle:
    """A scheduled call; :meth:`cancel` stops it if it has not run yet."""

    __slots__ = ("when", "callback", "cancelled", "_owner")

    def __init__(self, when, callback, owner=None):
        self.when = when
        self.callback = callback
        self.cancelled = False
        #: The Deadlines whose heap holds it (None once taken out).
        self._owner = owner

    def cancel(self):
        # The callback (a round's expiry: the round, its promises, their
        # results) must not stay alive with the handle; the handle itself
        # leaves the heap when its time comes, or before when cancelled
        # handles are most of the heap (Deadlines._cancelled).
        if self.cancelled:
            return
        self.cancelled = True
        self.callback = None
        owner = self._owner
        if owner is not None:
            owner._cancelled(self)

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
        #: Cancelled handles still in the heap.
        self._dead = 0
        self._thread = None
        self._stopped = False

    #: A heap this long or longer is compacted when most of it is cancelled
    #: handles: a round's deadline is cancelled when its promises end,
    #: usually long before ``timeout``, and thousands of requests a second
    #: would otherwise keep ``timeout`` seconds' worth of them.
    COMPACT_MIN = 64

    def call_at(self, when, callback):
        handle = DeadlineHandle(when, callback, self)
        with self._cv:
            heapq.heappush(self._heap, handle)
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(
                    target=self._run, name=self._name, daemon=True)
                self._thread.start()
            if self._heap[0] is handle:
                # The earliest time changed: the thread waits for another.
                self._cv.notify()
        return handle

    def _cancelled(self, handle):
        with self._cv:
            if handle._owner is None:  # already out of the heap
                return
            self._dead += 1
            if self._dead * 2 > len(self._heap) >= self.COMPACT_MIN:
                live = [h for h in self._heap if not h.cancelled]
                for dead in self._heap:
                    if dead.cancelled:
                        dead._owner = None
                heapq.heapify(live)
                self._heap = live
                self._dead = 0
                # The earliest time can only have become later: the thread
                # wakes at the old one and finds nothing due.

    @property
    def scheduled(self):
        """Handles in the heap, cancelled ones included."""
        return len(self._heap)

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
                handle._owner = None
                if handle.cancelled:
                    self._dead -= 1
                    continue
                callback = handle.callback
                if callback is not None:
                    due.append(callback)
        for callback in due:
            try:
                callback()
            except Exception:
                logger.exception("deadline callback %r failed", callback)
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
