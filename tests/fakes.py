"""Fakes for the unit tests of the core: executors the test settles by
hand, a clock the test moves, a deadline thread the test drives. No thread,
no sleep: the test is the only thread and decides what happens when."""

import concurrent.futures
import threading

import pytest

from collective.futures.core.deadlines import Deadlines


class FakeClock:
    """A monotonic clock that moves only when told; ``sleep`` moves it (for
    code that takes ``sleep=`` and ``clock=``)."""

    def __init__(self, now=0.0):
        self.now = now
        self.sleeps = []

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def manual_deadlines(clock):
    """A real :class:`Deadlines` without its thread: stopped before first
    use, so ``call_at`` only queues and the test runs what is due with
    ``run_due()`` after moving ``clock``."""
    deadlines = Deadlines(clock, name="collective.futures-deadlines-manual")
    deadlines.stop()
    return deadlines


class ManualExecutor(concurrent.futures.Executor):
    """Futures that the test settles by hand: ``submit`` records the call;
    ``run(i)`` runs the i-th call now, on the test's thread."""

    def __init__(self, runs_in="threads"):
        self.runs_in = runs_in
        self.calls = []
        self.shutdowns = []

    def submit(self, fn, /, *args, **kwargs):
        future = concurrent.futures.Future()
        self.calls.append((future, fn, args))
        return future

    def run(self, index):
        future, fn, args = self.calls[index]
        if not future.set_running_or_notify_cancel():
            return  # cancelled while queued: never runs
        try:
            future.set_result(fn(*args))
        except Exception as exc:
            future.set_exception(exc)

    def shutdown(self, wait=True, *, cancel_futures=False):
        self.shutdowns.append((wait, cancel_futures))


class ManualSchedule:
    """A ``schedule(when, callback)`` for a Round: records, never fires."""

    def __init__(self):
        self.entries = []

    def __call__(self, when, callback):
        handle = type("Handle", (), {"cancelled": False})()
        handle.cancel = lambda: setattr(handle, "cancelled", True)
        self.entries.append((when, callback, handle))
        return handle


def bounded(fn, timeout=5.0):
    """Run ``fn()`` in a helper thread and return its result; fail the test
    (instead of hanging it) if it has not returned within ``timeout``: for
    calls that would deadlock if a lock were held where it must not be."""
    box = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as exc:  # handed back to the test
            box["error"] = exc

    thread = threading.Thread(target=target, name="test-bounded", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"{getattr(fn, '__name__', fn)} did not return within "
                    f"{timeout} s (deadlock?)")
    if "error" in box:
        raise box["error"]
    return box.get("result")
