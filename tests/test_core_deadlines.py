"""core/deadlines.py: callbacks at monotonic times, from one thread; run
here with a fake clock and run_due() (no thread), but for one test of the
thread itself."""

import logging
import threading
import time

from collective.futures.core.deadlines import Deadlines

from conftest import wait_for
from fakes import FakeClock, manual_deadlines


def test_run_due_runs_what_is_due_in_time_order():
    clock = FakeClock()
    deadlines = manual_deadlines(clock)
    fired = []
    deadlines.call_at(3.0, lambda: fired.append("c"))
    deadlines.call_at(1.0, lambda: fired.append("a"))
    deadlines.call_later(2.0, lambda: fired.append("b"))
    deadlines.call_at(10.0, lambda: fired.append("late"))
    assert deadlines.run_due() == 0 and fired == []
    clock.advance(2.0)
    assert deadlines.run_due() == 2 and fired == ["a", "b"]
    clock.advance(1.0)
    assert deadlines.run_due() == 1 and fired == ["a", "b", "c"]
    assert deadlines.run_due() == 0  # each runs once


def test_cancelled_handles_are_skipped():
    clock = FakeClock()
    deadlines = manual_deadlines(clock)
    fired = []
    handle = deadlines.call_at(1.0, lambda: fired.append("cancelled"))
    deadlines.call_at(1.0, lambda: fired.append("kept"))
    handle.cancel()
    clock.advance(5)
    assert deadlines.run_due() == 1
    assert fired == ["kept"]


def test_a_raising_callback_is_logged_and_the_rest_still_run(caplog):
    clock = FakeClock()
    deadlines = manual_deadlines(clock)
    fired = []

    def broken():
        raise ZeroDivisionError("callback bug")

    deadlines.call_at(1.0, lambda: fired.append("before"))
    deadlines.call_at(2.0, broken)
    deadlines.call_at(3.0, lambda: fired.append("after"))
    clock.advance(3)
    with caplog.at_level(logging.ERROR, "collective.futures"):
        assert deadlines.run_due() == 3
    assert fired == ["before", "after"]
    [record] = [r for r in caplog.records if "deadline callback" in r.getMessage()]
    assert record.exc_info[0] is ZeroDivisionError


def test_a_callback_may_schedule_another():
    clock = FakeClock()
    deadlines = manual_deadlines(clock)
    fired = []
    deadlines.call_at(1.0, lambda: deadlines.call_later(0, lambda: fired.append(2)))
    clock.advance(1)
    assert deadlines.run_due() == 1 and fired == []
    assert deadlines.run_due() == 1 and fired == [2]


def test_a_stopped_deadlines_starts_no_thread():
    deadlines = manual_deadlines(FakeClock())
    deadlines.call_at(0, lambda: None)
    names = {t.name for t in threading.enumerate()}
    assert "collective.futures-deadlines-manual" not in names


def test_deadlines_fire_in_order_and_can_be_cancelled():
    # The one test of the thread itself: real time, bounded waits.
    deadlines = Deadlines()
    try:
        fired = []
        done = threading.Event()
        now = time.monotonic()
        deadlines.call_at(now + 0.10, lambda: (fired.append("b"), done.set()))
        cancelled = deadlines.call_at(now + 0.05, lambda: fired.append("x"))
        deadlines.call_at(now + 0.02, lambda: fired.append(
            ("a", threading.current_thread().name)))
        cancelled.cancel()
        assert done.wait(5)
        assert fired == [("a", "collective.futures-deadlines"), "b"]
    finally:
        deadlines.stop()


def test_deadline_callback_failure_is_logged(caplog):
    clock = [0.0]
    deadlines = Deadlines(clock=lambda: clock[0])
    try:
        deadlines.call_at(1.0, lambda: 1 / 0)
        clock[0] = 2.0
        deadlines.run_due()
        assert "deadline callback" in caplog.text
    finally:
        deadlines.stop()


def test_stop_ends_the_thread():
    deadlines = Deadlines(name="collective.futures-deadlines-stop-test")
    ran = threading.Event()
    deadlines.call_later(0, ran.set)
    assert ran.wait(5)

    def alive():
        return [t for t in threading.enumerate()
                if t.name == "collective.futures-deadlines-stop-test"]

    assert alive()
    deadlines.stop()
    wait_for(lambda: not alive(), timeout=5, message="the deadline thread to end")


def test_a_cancelled_handle_does_not_keep_its_callback_alive():
    # A round's expiry is cancelled when the round ends, long before its
    # time: the handle stays in the heap until then, and held the round,
    # its promises and their results (10 MiB each in the issue) with it.
    import gc
    import weakref

    clock = FakeClock()
    deadlines = manual_deadlines(clock)

    class Round:
        def expire(self):
            raise AssertionError("cancelled: never called")

    round_ = Round()
    alive = weakref.ref(round_)
    handle = deadlines.call_at(30.0, round_.expire)
    handle.cancel()
    del round_
    gc.collect()
    assert alive() is None  # released now, not at t = 30 s
    # The positive control: a live handle does keep its callback.
    kept = Round()
    live = weakref.ref(kept)
    deadlines.call_at(30.0, kept.expire)
    del kept
    gc.collect()
    assert live() is not None


def test_cancelled_handles_leave_the_heap_when_they_are_most_of_it():
    # A round's deadline is cancelled when its promises end, usually long
    # before its time: at thousands of requests a second the heap held
    # `timeout` seconds' worth of dead handles, work for every push and for
    # the garbage collector (about 3 per suspended request at C = 4,096).
    clock = FakeClock()
    deadlines = manual_deadlines(clock)
    ran = []
    live = [deadlines.call_at(50.0 + i, lambda i=i: ran.append(i)) for i in range(10)]
    dead = [deadlines.call_at(100.0 + i, lambda: ran.append("dead"))
            for i in range(1000)]
    assert deadlines.scheduled == 1010
    for handle in dead:
        handle.cancel()
    assert deadlines.scheduled <= 2 * len(live) + Deadlines.COMPACT_MIN
    # Cancelling twice, or after the compaction, changes nothing.
    dead[0].cancel()
    dead[-1].cancel()
    clock.advance(2000.0)
    assert deadlines.run_due() == 10
    assert ran == list(range(10)) and deadlines.scheduled == 0
    # The positive control: a heap of live handles is left alone.
    for i in range(200):
        deadlines.call_at(3000.0 + i, lambda: None)
    assert deadlines.scheduled == 200


def test_a_later_deadline_does_not_wake_the_thread():
    # Every call_at notified the thread, which woke, took the GIL and went
    # back to sleep: once per request. Only a new earliest time needs it.
    clock = FakeClock()
    deadlines = manual_deadlines(clock)
    notified = []

    class Counting(type(deadlines._cv)):
        def notify(self, n=1):
            notified.append(n)
            super().notify(n)

    deadlines._cv = Counting()
    deadlines.call_at(10.0, lambda: None)
    assert len(notified) == 1  # the first: the earliest
    for i in range(50):
        deadlines.call_at(20.0 + i, lambda: None)
    assert len(notified) == 1
    deadlines.call_at(5.0, lambda: None)  # earlier than all: wakes it
    assert len(notified) == 2
