"""core/round.py: a pass's promises run concurrently with one deadline;
outcomes, deadlines, cancellation, refusal, lock discipline."""

import concurrent.futures
import threading
import time

import pytest
from zope.interface.verify import verifyObject

from collective.futures.exceptions import FutureCancelledError, FutureTimeoutError
from collective.futures.core.metrics import Metrics
from collective.futures.core.promise import Promise
from collective.futures.core.round import Round
from collective.futures.interfaces import IDetachedJob
from collective.futures.sandbox import run as run_promise
from collective.futures.core.deadlines import Deadlines
from collective.futures.executors.threads import ThreadExecutor

from fakes import FakeClock, ManualExecutor, ManualSchedule, bounded, manual_deadlines


def promises(**fns):
    return {key: Promise(key, fn) for key, fn in fns.items()}


def submitter(executor):
    return lambda promise: executor.submit(run_promise, promise)


def make_round(executor, schedule, on_done, interrupt=None, **fns):
    return Round(promises(**fns), submitter(executor), schedule, deadline=10.0,
                 timeout=10.0, on_done=on_done, interrupt=interrupt)


def test_a_round_is_a_detached_job():
    round_ = make_round(ManualExecutor(), ManualSchedule(), None, a=lambda: 1)
    assert verifyObject(IDetachedJob, round_)


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


# refusal (a graceful shutdown)

def test_refuse_sets_the_refusal_and_ends_the_round():
    executor, schedule, done = ManualExecutor(), ManualSchedule(), []
    round_ = make_round(executor, schedule, done.append,
                        a=lambda: 1, b=lambda: 2).start()
    executor.run(0)
    round_.refuse("the server is shutting down")
    assert round_.refusal == "the server is shutting down"
    assert round_.done and len(done) == 1
    assert done[0]["a"].value == 1  # what finished is kept
    assert isinstance(done[0]["b"].error, FutureCancelledError)
    assert "shutting down" in str(done[0]["b"].error)
    assert executor.calls[1][0].cancelled()
    assert schedule.entries[0][2].cancelled  # the deadline is disarmed
    round_.refuse("again")
    assert round_.refusal == "the server is shutting down" and len(done) == 1


def test_refuse_after_the_end_is_a_no_op():
    executor, schedule, done = ManualExecutor(), ManualSchedule(), []
    round_ = make_round(executor, schedule, done.append, a=lambda: 1).start()
    executor.run(0)
    round_.refuse("the server is shutting down")
    # The round was over: its pass renders, not a 503.
    assert round_.refusal is None
    assert len(done) == 1 and done[0]["a"].value == 1
    round_.cancel("late hang-up")
    round_.expire()
    assert len(done) == 1 and done[0]["a"].value == 1


def test_an_empty_round_ends_at_start():
    done = []
    round_ = make_round(ManualExecutor(), ManualSchedule(), done.append).start()
    assert round_.done and done == [{}]


# lock discipline: callbacks and cancellations run outside the round's lock

def test_a_cancel_callback_that_re_enters_the_round_does_not_deadlock():
    executor, schedule, done = ManualExecutor(), ManualSchedule(), []
    round_ = make_round(executor, schedule, done.append,
                        a=lambda: 1, b=lambda: 2).start()
    seen = []

    def re_enter(future):
        # Runs inside future.cancel(): refuse() takes the round's lock.
        round_.refuse("re-entered")
        seen.append(future.cancelled())

    executor.calls[0][0].add_done_callback(re_enter)
    bounded(lambda: round_.cancel("the client disconnected"))
    assert seen == [True]
    assert len(done) == 1
    # cancel() had settled every promise before the refusal came: the
    # refusal is recorded only with the settling, so it is not (the
    # request is answered as the cancellation left it, not with a 503).
    assert round_.refusal is None
    assert {o.kind for o in done[0].values()} == {"cancelled"}


def test_on_done_that_re_enters_the_round_does_not_deadlock():
    executor, schedule = ManualExecutor(), ManualSchedule()
    seen = []

    def on_done(outcomes):
        round_.cancel("again")
        round_.refuse("again")
        seen.append(sorted(outcomes))

    round_ = make_round(executor, schedule, on_done, a=lambda: 1)
    round_.start()
    bounded(lambda: executor.run(0))
    assert seen == [["a"]]


def test_an_interrupt_that_re_enters_the_round_does_not_deadlock():
    executor, schedule, done = ManualExecutor(), ManualSchedule(), []

    def interrupt(promise, future):
        round_.expire()  # takes the round's lock
        return True

    round_ = make_round(executor, schedule, done.append, interrupt=interrupt,
                        a=lambda: 1).start()
    executor.calls[0][0].set_running_or_notify_cancel()
    bounded(round_.expire)
    assert round_.interrupted == 1 and round_.abandoned == 0 and len(done) == 1


# what is stopped when a round ends early

def test_running_work_is_interrupted_where_the_executor_can():
    executor, schedule, done = ManualExecutor(), ManualSchedule(), []
    asked = []
    metrics = Metrics()
    round_ = Round(promises(a=lambda: 1, b=lambda: 2), submitter(executor),
                   schedule, deadline=10.0, timeout=10.0, on_done=done.append,
                   interrupt=lambda p, f: asked.append(p.key) or p.key == "a",
                   metrics=metrics).start()
    for future, _, _ in executor.calls:
        future.set_running_or_notify_cancel()
    round_.expire()
    assert sorted(asked) == ["a", "b"]
    assert (round_.interrupted, round_.abandoned) == (1, 1)
    assert (metrics.interrupted, metrics.abandoned) == (1, 1)
    assert metrics.submitted["threads"] == 2
    assert metrics.outcomes["threads", "timed_out"] == 2


def test_a_shared_promise_is_not_cancelled_when_its_round_ends():
    executor, schedule, done = ManualExecutor(), ManualSchedule(), []
    shared = {"s": Promise("s", lambda: 1, shared=True)}
    round_ = Round(shared, submitter(executor), schedule, deadline=10.0,
                   timeout=10.0, on_done=done.append).start()
    round_.cancel("the client disconnected")
    # Other requests may be waiting on the same execution.
    assert not executor.calls[0][0].cancelled()
    assert isinstance(done[0]["s"].error, FutureCancelledError)
    assert round_.abandoned == 0


def test_a_round_that_ends_while_submitting_drops_the_rest():
    executor, schedule, done = ManualExecutor(), ManualSchedule(), []
    submitted = []

    def submit(promise):
        future = executor.submit(run_promise, promise)
        submitted.append(future)
        if promise.key == "b":
            round_.cancel("the client disconnected")  # a hang-up meanwhile
        return future

    round_ = Round(promises(a=lambda: 1, b=lambda: 2, c=lambda: 3), submit,
                   schedule, deadline=10.0, timeout=10.0, on_done=done.append)
    round_.start()
    assert len(done) == 1
    assert all(f.cancelled() for f in submitted)
    assert sorted(done[0]) == ["a", "b", "c"]
    assert all(isinstance(o.error, FutureCancelledError) for o in done[0].values())


def test_outcomes_are_stamped_with_executor_and_time():
    clock = [5.0]
    executor, done = ManualExecutor(), []
    round_ = Round(promises(a=lambda: 1), submitter(executor), ManualSchedule(),
                   deadline=10.0, timeout=10.0, on_done=done.append,
                   clock=lambda: clock[0]).start()
    clock[0] = 6.5
    executor.run(0)
    outcome = done[0]["a"]
    assert (outcome.executor, outcome.seconds, outcome.kind) == (
        "threads", 1.5, "completed")
    assert round_.wait(0) is True


def test_metrics_labels_are_bounded_and_carry_no_argument():
    # 100 requests, each with a partial (or a callable object) bound to
    # other arguments, a secret among them: one duration label each kind,
    # named after the function, and no argument in any output.
    import functools
    from collective.futures.exposition import prometheus

    def fetch(url, password):
        return url

    class Fetcher:
        def __call__(self):
            return 1

    metrics = Metrics()
    for i in range(100):
        executor = ManualExecutor()
        Round({"a": Promise("a", functools.partial(fetch, f"u{i}", "hunter2")),
               "b": Promise("b", Fetcher())},
              submitter(executor), ManualSchedule(), deadline=10.0,
              timeout=10.0, metrics=metrics).start()
        executor.run(0)
        executor.run(1)

    class Runtime:  # what a snapshot reads of the runtime
        shared = type("S", (), {"executions": 0, "joined": 0, "cache_hits": 0})
        open_streams = 0

        def executor_gauges(self):
            return {}

    data = metrics.snapshot(Runtime())
    assert sorted(data["durations"]) == [
        "test_metrics_labels_are_bounded_and_carry_no_argument.<locals>.Fetcher",
        "test_metrics_labels_are_bounded_and_carry_no_argument.<locals>.fetch"]
    assert all(h["count"] == 100 for h in data["durations"].values())
    text = prometheus(data)
    assert "hunter2" not in text and "u42" not in text


@pytest.mark.parametrize("raised", [SystemExit(3), KeyboardInterrupt(),
                                    GeneratorExit()],
                         ids=["SystemExit", "KeyboardInterrupt", "GeneratorExit"])
def test_a_base_exception_from_a_promise_becomes_its_failure(raised):
    # result() re-raises the outcome's error in the next pass: a
    # BaseException would escape ZPublisher and waitress and leave the
    # request unanswered. It becomes an Exception, with the cause kept.
    from collective.futures.exceptions import FutureAbortedError

    executor, schedule, done = ManualExecutor(), ManualSchedule(), []
    make_round(executor, schedule, done.append, a=lambda: 1, b=lambda: 2).start()
    # As the thread executor's catch-all stores it: in the future.
    future = executor.calls[0][0]
    future.set_running_or_notify_cancel()
    future.set_exception(raised)
    executor.run(1)
    error = done[0]["a"].error
    assert isinstance(error, FutureAbortedError) and isinstance(error, Exception)
    assert error.__cause__ is raised
    assert done[0]["a"].kind == "failed" and done[0]["b"].value == 2
    with pytest.raises(FutureAbortedError, match=type(raised).__name__):
        done[0]["a"].unwrap()


def test_a_promise_that_cancels_itself_settles_at_once():
    # A coroutine raising CancelledError cancels its own future: that is
    # its outcome now, not a timeout at the deadline.
    executor, schedule, done = ManualExecutor(), ManualSchedule(), []
    make_round(executor, schedule, done.append, a=lambda: 1).start()
    executor.calls[0][0].cancel()
    assert len(done) == 1 and done[0]["a"].kind == "cancelled"


def test_wait_blocks_until_the_round_ends_and_only_a_waiter_makes_an_event():
    # A suspended request's round is never waited for: an Event per round
    # (a Condition, a lock, a deque) was garbage-collector work for each of
    # thousands of them. wait() (rounds waited for inline) makes its own.
    executor = ManualExecutor()
    quiet_round = make_round(executor, ManualSchedule(), None, a=lambda: 1).start()
    executor.run(0)
    assert quiet_round.done and quiet_round._done is None
    assert quiet_round.wait(0)  # over: True at once
    waited = make_round(executor, ManualSchedule(), None, a=lambda: 2).start()
    assert not waited.wait(0.01)  # not over: it waits, then says so
    ended = []
    waiter = threading.Thread(target=lambda: ended.append(waited.wait(10)),
                              name="test-round-waiter")
    waiter.start()
    executor.run(1)
    waiter.join(10)
    assert ended == [True] and waited.done


def test_a_finished_round_and_its_owner_are_freed_without_the_collector():
    # The channel's detachment holds the round, the round's on_done holds
    # the detachment, each future keeps the done-callback that holds the
    # round, which held the futures: cycles, freed only by the garbage
    # collector, that outlived thousands of suspended requests each.
    import gc
    import weakref

    class Owner:  # what the channel's Detachment is to its round
        pass

    def finished(clear):
        executor = ManualExecutor()
        owner = Owner()
        deadlines = manual_deadlines(FakeClock())  # the real heap
        owner.job = make_round(executor, deadlines.call_at,
                               lambda outcomes: owner, a=lambda: 1).start()
        alive = weakref.ref(owner.job)
        executor.run(0)
        assert alive().done
        if not clear:  # the positive control: the round's links, as before
            alive().on_done = lambda outcomes: owner
            alive()._futures = {"a": executor.calls[0][0]}
        executor.calls.clear()
        del owner
        return alive

    gc.collect()
    gc.disable()
    try:
        assert finished(clear=True)() is None
        kept = finished(clear=False)
        assert kept() is not None
    finally:
        gc.enable()
    gc.collect()
    assert kept() is None


def test_a_promise_s_on_error_goes_with_its_outcome():
    executor, schedule, done = ManualExecutor(), ManualSchedule(), []
    promises_ = {
        "degraded": Promise("degraded", lambda: 1 / 0, on_error="fallback"),
        "strict": Promise("strict", lambda: 1 / 0),
        "late": Promise("late", lambda: "late", on_error="too late"),
    }
    Round(promises_, submitter(executor), schedule, deadline=10.0, timeout=10.0,
          on_done=done.append).start()
    executor.run(0)
    executor.run(1)
    schedule.entries[0][1]()  # the deadline: "late" times out
    outcomes = done[0]
    assert outcomes["degraded"].kind == "failed"
    assert outcomes["degraded"].unwrap() == "fallback"
    assert outcomes["late"].kind == "timed_out"
    assert outcomes["late"].unwrap() == "too late"
    with pytest.raises(ZeroDivisionError):  # the positive control
        outcomes["strict"].unwrap()


# a full executor (the admission saw room; another request took it)

class FullAfter(ManualExecutor):
    """Takes ``room`` submissions, then refuses as a full queue does."""

    def __init__(self, room):
        super().__init__()
        self.room = room

    def submit(self, fn, /, *args, **kwargs):
        from collective.futures.exceptions import ExecutorFullError
        if len(self.calls) >= self.room:
            raise ExecutorFullError("collective.futures-worker is full (max_queue)")
        return super().submit(fn, *args, **kwargs)


def test_a_promise_a_full_executor_refuses_makes_the_round_a_refusal():
    from collective.futures.exceptions import ExecutorFullError
    executor, done = FullAfter(room=1), []
    round_ = make_round(executor, ManualSchedule(), done.append,
                        a=lambda: 1, b=lambda: 2, c=lambda: 3).start()
    assert round_.refusal == "the threads executor's queue is full (max_queue)"
    assert round_.done and len(done) == 1
    assert isinstance(done[0]["b"].error, ExecutorFullError)
    # a was queued: dropped; c was never submitted.
    assert executor.calls[0][0].cancelled() and len(executor.calls) == 1
    assert isinstance(done[0]["a"].error, FutureCancelledError)
    assert isinstance(done[0]["c"].error, FutureCancelledError)


def test_a_refused_promise_with_a_fallback_is_its_outcome_not_a_refusal():
    from collective.futures.exceptions import ExecutorFullError
    executor, done = FullAfter(room=0), []
    round_ = Round({"a": Promise("a", lambda: 1, on_error="later")},
                   submitter(executor), ManualSchedule(), deadline=10.0, timeout=10.0,
                   on_done=done.append).start()
    assert round_.refusal is None
    assert isinstance(done[0]["a"].error, ExecutorFullError)
    assert done[0]["a"].unwrap() == "later"


def test_on_settled_hears_each_promise_as_it_settles_before_on_done():
    executor, schedule, heard = ManualExecutor(), ManualSchedule(), []
    round_ = Round(promises(a=lambda: 1, b=lambda: 2, c=lambda: 3), submitter(executor),
                   schedule, deadline=10.0, timeout=10.0,
                   on_done=lambda outcomes: heard.append(("done", sorted(outcomes))),
                   on_settled=lambda key, outcome: heard.append((key, outcome.kind)))
    round_.start()
    executor.run(1)
    assert heard == [("b", "completed")]
    round_.expire()  # a and c time out together
    assert heard == [("b", "completed"), ("a", "timed_out"), ("c", "timed_out"),
                     ("done", ["a", "b", "c"])]


def test_an_on_settled_that_raises_is_logged_and_the_round_goes_on(caplog):
    executor, done = ManualExecutor(), []

    def broken(key, outcome):
        raise RuntimeError("listener")

    Round(promises(a=lambda: 1), submitter(executor), ManualSchedule(), deadline=10.0,
          timeout=10.0, on_done=done.append, on_settled=broken).start()
    executor.run(0)
    assert done and done[0]["a"].value == 1
    assert "round callback for promise 'a' failed" in caplog.text


def test_a_degrading_round_fails_only_what_a_full_executor_refused():
    from collective.futures.exceptions import ExecutorFullError

    class FullForB(ManualExecutor):
        def submit(self, fn, /, *args, **kwargs):
            if args and args[0].key == "b":
                raise ExecutorFullError("full")
            return super().submit(fn, *args, **kwargs)

    for degrade in (False, True):
        executor, done = FullForB(), []
        round_ = Round(promises(a=lambda: 1, b=lambda: 2), submitter(executor),
                       ManualSchedule(), deadline=10.0, timeout=10.0,
                       on_done=done.append, degrade=degrade).start()
        if degrade:
            assert round_.refusal is None
            executor.run(0)
            assert done[0]["a"].value == 1 and done[0]["b"].kind == "rejected"
        else:  # the control: the request is refused (a 503)
            assert round_.refusal and done and done[0]["b"].kind == "rejected"
