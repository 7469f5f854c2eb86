"""The ``asyncio`` executor: one event loop in one named daemon thread.

Runs on: the ``collective.futures-asyncio`` thread, watched by the
``collective.futures-asyncio-watchdog`` thread (a blocked loop is logged).
``submit`` may be called from any thread; it returns a
``concurrent.futures.Future`` whose ``cancel()`` cancels the task on the
loop, even while it runs.

Waiting on the network costs a coroutine, not a thread: thousands of
promises await at once, bounded by ``max_concurrency`` (a semaphore) and
``max_queue`` (beyond it ``submit`` raises ExecutorFullError). A coroutine
that blocks the loop is logged by the watchdog; one that swallows its
cancellation is logged after ``cancel_grace`` and its slot taken back.
"""

import asyncio
import concurrent.futures
import inspect
import logging
import threading
import time

from zope.interface import implementer

from ..core.promise import name_of
from ..exceptions import ExecutorFullError, FutureAbortedError
from ..interfaces import IBoundedExecutor


logger = logging.getLogger("collective.futures")


class _Slot:
    """One submitted coroutine's task, and whether its concurrency slot
    was given back (at its end, or taken back when it ignored its
    cancellation)."""

    __slots__ = ("task", "released")

    def __init__(self):
        self.task = None
        self.released = False


@implementer(IBoundedExecutor)
class AsyncioExecutor(concurrent.futures.Executor):
    """See IBoundedExecutor. ``submit(fn, *args, **kwargs)`` calls ``fn`` on
    the loop and awaits what it returns if that is awaitable (an ``async
    def`` function, or any function returning an awaitable)."""

    runs_in = "loop"

    def __init__(self, max_concurrency=1000, max_queue=10000,
                 name="collective.futures-asyncio", block_threshold=1.0,
                 cancel_grace=5.0):
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self._name = name
        #: Seconds the loop may run one step of a coroutine before the
        #: watchdog logs that it is blocked, naming the task.
        self.block_threshold = block_threshold
        #: Times the loop was found blocked.
        self.blocked = 0
        #: Seconds a cancelled coroutine gets to end before its slot is
        #: taken back and it is logged as ignoring its cancellation.
        self.cancel_grace = cancel_grace
        #: Coroutines that ignored their cancellation (still running).
        self.ignored_cancellation = 0
        self._stopping = threading.Event()
        # Guards the loop's creation and the count of submitted work.
        self._lock = threading.Lock()
        self._loop = None
        self._thread = None
        self._semaphore = None
        self._pending = 0
        self._running = 0
        self._shutdown = False

    @property
    def loop(self):
        """The running event loop (started on first use)."""
        with self._lock:
            return self._ensure_loop()

    @property
    def capacity(self):
        return self.max_concurrency

    def interrupt(self, future):
        """See IBoundedExecutor: ``future.cancel()`` already cancels the
        task on the loop, running or not; nothing more to stop."""
        return False

    @property
    def pending(self):
        """Coroutines submitted and not finished (running or waiting)."""
        return self._pending

    @property
    def running(self):
        """Coroutines holding a concurrency slot."""
        return self._running

    @property
    def queued(self):
        """Coroutines waiting for a slot."""
        return max(0, self._pending - self._running)

    def _ensure_loop(self):
        # Called with self._lock held.
        if self._loop is None:
            ready = threading.Event()
            loop = asyncio.new_event_loop()

            def run():
                asyncio.set_event_loop(loop)
                self._semaphore = asyncio.Semaphore(self.max_concurrency)
                ready.set()
                try:
                    loop.run_forever()
                finally:
                    # Stopped by shutdown(): let cancelled tasks finish their
                    # cleanup, then release the loop's resources.
                    tasks = asyncio.all_tasks(loop)
                    for task in tasks:
                        task.cancel()
                    loop.run_until_complete(
                        asyncio.gather(*tasks, return_exceptions=True))
                    loop.run_until_complete(loop.shutdown_asyncgens())
                    loop.close()

            self._thread = threading.Thread(target=run, name=self._name,
                                            daemon=True)
            self._thread.start()
            # Why wait: submit must not schedule before the loop runs its
            # setup. Bounded: the thread only creates a semaphore.
            if not ready.wait(10):
                raise RuntimeError(f"{self._name} did not start")
            self._loop = loop
            threading.Thread(target=self._watch, args=(loop,),
                             name=f"{self._name}-watchdog", daemon=True).start()
        return self._loop

    def submit(self, fn, /, *args, **kwargs):
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit to the asyncio executor after shutdown")
            if self._pending >= self.max_concurrency + self.max_queue:
                raise ExecutorFullError(
                    f"{self._name}: {self._pending} coroutines already run or "
                    f"wait (asyncio_max_concurrency + asyncio_max_queue)")
            loop = self._ensure_loop()
            self._pending += 1
        slot = _Slot()
        future = asyncio.run_coroutine_threadsafe(
            self._run(fn, args, kwargs, slot), loop)
        future.add_done_callback(
            lambda future: self._finished(future, slot, loop))
        return future

    def _finished(self, future, slot, loop):
        with self._lock:
            self._pending -= 1
        if future.cancelled():
            # The task was asked to stop; a coroutine may swallow that and
            # go on, holding its slot for ever: give it cancel_grace.
            try:
                loop.call_soon_threadsafe(
                    loop.call_later, self.cancel_grace, self._reap, slot)
            except RuntimeError:  # the loop is closed
                pass

    def _reap(self, slot):
        """On the loop: a cancelled coroutine still running after
        cancel_grace ignored its cancellation. Take its slot back so that it
        cannot stall every other promise, and say which it is."""
        task = slot.task
        if task is None or task.done() or slot.released:
            return
        self._release(slot)
        self.ignored_cancellation += 1
        logger.warning(
            "%s ignored its cancellation for %g s: it still runs, but no "
            "longer counts against asyncio_max_concurrency; a coroutine must "
            "let asyncio.CancelledError propagate", task.get_name(),
            self.cancel_grace)
        task.cancel()  # once more, in case it stops at its next await

    def _release(self, slot):
        # Only the loop thread calls it.
        slot.released = True
        self._running -= 1
        self._semaphore.release()

    def _watch(self, loop):
        """The watchdog thread: a coroutine that blocks (``time.sleep``, a
        blocking call) stalls every promise on the loop. Every half
        threshold it asks the loop to note the time; if the loop has not
        done so for longer than the threshold, it is blocked: logged once
        per episode, with the task that holds it."""
        beat = [time.monotonic()]

        def stamp():
            beat[0] = time.monotonic()

        reported = False
        while not self._stopping.is_set():
            try:
                loop.call_soon_threadsafe(stamp)
            except RuntimeError:  # the loop is closed
                return
            # Why wait: the beat needs time to run; bounded, and woken by
            # shutdown().
            self._stopping.wait(self.block_threshold / 2)
            lag = time.monotonic() - beat[0]
            if lag <= self.block_threshold:
                reported = False
            elif not reported:
                reported = True
                self.blocked += 1
                task = asyncio.current_task(loop)
                logger.warning(
                    "the asyncio loop has been blocked for %.1f s by %s: "
                    "every asyncio promise waits meanwhile; a coroutine "
                    "must not block (use await asyncio.sleep(), or run "
                    "blocking work on the threads executor)", lag,
                    task.get_name() if task is not None else "a callback")

    async def _run(self, fn, args, kwargs, slot):
        # Named after its promise, so that the watchdog can say which.
        promise = args[0] if args and hasattr(args[0], "key") else None
        task = slot.task = asyncio.current_task()
        task.set_name(
            f"promise {promise.key!r} ({promise.name})" if promise is not None
            else name_of(fn))
        await self._semaphore.acquire()
        self._running += 1  # only the loop thread changes it
        try:
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result
        except (SystemExit, KeyboardInterrupt) as exc:
            # Raised out of a task, these stop the loop itself, and every
            # later promise on it: they become this one's failure.
            raise FutureAbortedError(
                f"a coroutine raised {type(exc).__name__}: {exc}") from exc
        finally:
            if not slot.released:
                self._release(slot)

    def shutdown(self, wait=True, *, cancel_futures=False):
        """See IBoundedExecutor. Idempotent: a second call finds the loop
        stopped (or closed) and does nothing."""
        self._stopping.set()
        with self._lock:
            already, self._shutdown = self._shutdown, True
            loop, thread = self._loop, self._thread
        if loop is None or already:
            if wait and thread is not None:
                thread.join(5.0)
            return
        if cancel_futures:
            def cancel_all():
                for task in asyncio.all_tasks(loop):
                    task.cancel()
            loop.call_soon_threadsafe(cancel_all)
        loop.call_soon_threadsafe(loop.stop)
        if wait:
            thread.join(5.0)
