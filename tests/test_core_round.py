"""Rounds and the side pool: outcomes, deadlines, cancellation, threads."""

import concurrent.futures
import threading
import time

import pytest

from collective.futures.exceptions import FutureCancelledError, FutureTimeoutError
from collective.futures.core.promise import Promise
from collective.futures.core.round import Round
from collective.futures.zope.sandbox import run as run_promise
from collective.futures.core.deadlines import Deadlines
from collective.futures.executors.threads import ThreadExecutor


class ManualExecutor(concurrent.futures.Executor):
    """Futures that the test settles by hand."""

    def __init__(self):
        self.calls = []

    def submit(self, fn, /, *args, **kwargs):
        future = concurrent.futures.Future()
        self.calls.append((future, fn, args))
        return future

    def run(self, index):
        future, fn, args = self.calls[index]
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn(*args))
        except Exception as exc:
            future.set_exception(exc)


class ManualSchedule:
    def __init__(self):
        self.entries = []

    def __call__(self, when, callback):
        handle = type("Handle", (), {"cancelled": False})()
        handle.cancel = lambda: setattr(handle, "cancelled", True)
        self.entries.append((when, callback, handle))
        return handle


def promises(**fns):
    return {key: Promise(key, fn) for key, fn in fns.items()}


def submitter(executor):
    return lambda promise: executor.submit(run_promise, promise)


def make_round(executor, schedule, on_done, interrupt=None, **fns):
    return Round(promises(**fns), submitter(executor), schedule, deadline=10.0,
                 timeout=10.0, on_done=on_done, interrupt=interrupt)


def test_outcomes_delivered_once_when_all_settle():
    executor, schedule, done = ManualExecutor(), ManualSchedule(), []
    round_ = make_round(executor, schedule, done.append,
                        a=lambda: 1, b=lambda: 1 / 0).start()
    assert len(executor.calls) == 2 and not round_.done
    executor.run(0)
    assert done == []
    executor.run(1)
    assert len(done) == 1
    assert done[0]["a"].value == 1
    assert isinstance(done[0]["b"].error, ZeroDivisionError)
    # The deadline is disarmed once the round is done.
    assert schedule.entries[0][2].cancelled
    round_.expire()
    assert len(done) == 1


def test_deadline_times_out_unfinished_and_cancels_queued():
    executor, schedule, done = ManualExecutor(), ManualSchedule(), []
    round_ = make_round(executor, schedule, done.append,
                        fast=lambda: "ok", slow=lambda: "late",
                        queued=lambda: "never").start()
    executor.run(0)
    executor.calls[1][0].set_running_or_notify_cancel()  # "slow" is running
    when, callback, handle = schedule.entries[0]
    assert when == 10.0
    callback()
    outcomes = done[0]
    assert outcomes["fast"].value == "ok"
    assert isinstance(outcomes["slow"].error, FutureTimeoutError)
    assert isinstance(outcomes["queued"].error, FutureTimeoutError)
    assert executor.calls[2][0].cancelled()
    assert round_.abandoned == 1
    # The abandoned promise finishing later changes nothing.
    executor.calls[1][0].set_result("late")
    assert len(done) == 1 and isinstance(
        round_.outcomes["slow"].error, FutureTimeoutError)


def test_cancel_settles_everything_at_once():
    executor, schedule, done = ManualExecutor(), ManualSchedule(), []
    round_ = make_round(executor, schedule, done.append, a=lambda: 1).start()
    round_.cancel("the client disconnected")
    assert isinstance(done[0]["a"].error, FutureCancelledError)
    assert "client disconnected" in str(done[0]["a"].error)
    assert executor.calls[0][0].cancelled()


def test_on_done_failure_is_logged_not_raised(caplog):
    executor, schedule = ManualExecutor(), ManualSchedule()

    def broken(outcomes):
        raise RuntimeError("callback bug")

    make_round(executor, schedule, broken, a=lambda: 1).start()
    executor.run(0)
    assert "round completion callback failed" in caplog.text


def test_executor_refusing_work_becomes_an_outcome():
    class Refusing(concurrent.futures.Executor):
        def submit(self, fn, /, *args, **kwargs):
            raise RuntimeError("shut down")

    done = []
    make_round(Refusing(), ManualSchedule(), done.append, a=lambda: 1).start()
    assert isinstance(done[0]["a"].error, RuntimeError)


def test_failing_promise_is_logged_once_where_it_ran(caplog):
    pool = ThreadExecutor(2)
    try:
        done = threading.Event()
        outcomes = {}

        def on_done(result):
            outcomes.update(result)
            done.set()

        Round(promises(bad=lambda: {}["missing"]), submitter(pool),
              Deadlines().call_at,
              deadline=time.monotonic() + 10, timeout=10,
              on_done=on_done).start()
        assert done.wait(5)
        assert isinstance(outcomes["bad"].error, KeyError)
        records = [r for r in caplog.records if "promise 'bad'" in r.getMessage()]
        assert len(records) == 1
        assert records[0].threadName.startswith("collective.futures-worker-")
        assert records[0].exc_info is not None
    finally:
        pool.shutdown()


def test_side_pool_runs_concurrently_with_named_daemon_threads():
    pool = ThreadExecutor(4)
    try:
        # The barrier opens only when 4 calls wait at it at the same time:
        # with fewer threads it breaks (BrokenBarrierError after 5 s).
        barrier = threading.Barrier(4, timeout=5)
        met = []  # (name, alive, daemon, threads of the pool) at the barrier

        def meet():
            me = threading.current_thread()
            met.append((me.name, me.is_alive(), me.daemon))
            barrier.wait()
            return pool.threads

        seen = [f.result(5) for f in [pool.submit(meet) for _ in range(4)]]
        names = sorted(name for name, _, _ in met)
        assert names == [f"collective.futures-worker-{n}" for n in (1, 2, 3, 4)]
        assert all(alive and daemon for _, alive, daemon in met)
        # Every call saw the 4 workers alive together, and no fifth.
        assert seen == [4] * 4
    finally:
        pool.shutdown()


def test_side_pool_is_bounded_and_queued_work_can_be_cancelled():
    pool = ThreadExecutor(1)
    try:
        release = threading.Event()
        running = pool.submit(release.wait, 5)
        queued = pool.submit(lambda: "never")
        time.sleep(0.05)
        assert pool.threads == 1 and pool.queued == 1
        assert queued.cancel()
        release.set()
        assert running.result(5) is True
    finally:
        pool.shutdown()


def test_side_pool_survives_base_exceptions():
    pool = ThreadExecutor(1)
    try:
        def exit_():
            raise SystemExit("promise called sys.exit")

        with pytest.raises(SystemExit):
            pool.submit(exit_).result(5)
        assert pool.submit(lambda: "still alive").result(5) == "still alive"
        assert pool.threads == 1
    finally:
        pool.shutdown()


def test_side_pool_idle_threads_retire():
    pool = ThreadExecutor(2, idle_seconds=0.05)
    try:
        pool.submit(lambda: None).result(5)
        deadline = time.monotonic() + 5
        while pool.threads and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pool.threads == 0
        assert pool.submit(lambda: 7).result(5) == 7
    finally:
        pool.shutdown()


def test_side_pool_after_shutdown():
    pool = ThreadExecutor(1)
    pool.shutdown()
    pool.shutdown()  # idempotent
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(lambda: None)


def test_deadlines_fire_in_order_and_can_be_cancelled():
    deadlines = Deadlines()
    try:
        fired = []
        done = threading.Event()
        now = time.monotonic()
        deadlines.call_at(now + 0.10, lambda: (fired.append("b"), done.set()))
        cancelled = deadlines.call_at(now + 0.05, lambda: fired.append("x"))
        deadlines.call_at(now + 0.02, lambda: fired.append("a"))
        cancelled.cancel()
        assert done.wait(5)
        assert fired == ["a", "b"]
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
