"""core/runtime.py: admission (draining, queue bounds, max_suspended),
where a promise is submitted (runs_in), the stream pool, shutdown."""

import pickle
import threading
import types

import pytest

from collective.futures.core.promise import Promise
from collective.futures.exceptions import ConfigurationError
from collective.futures.core.runtime import PlainSandbox, Runtime
from collective.futures.executors.processes import PickledCall
from collective.futures.executors.threads import ThreadExecutor
from collective.futures.settings import Settings

from fakes import FakeClock, ManualExecutor, manual_deadlines


def add(a, b=0):
    return a + b


def fn(*args):
    return args


class Gauged:
    """An executor as admission sees it: bounds and gauges only."""

    def __init__(self, capacity=2, max_queue=3, queued=0, running=0):
        self.capacity = capacity
        self.max_queue = max_queue
        self.queued = queued
        self.running = running
        self.shutdowns = []

    def shutdown(self, wait=True, *, cancel_futures=False):
        self.shutdowns.append((wait, cancel_futures))


class Unbounded:
    """A custom executor: no bounds to read (its own business)."""

    queued = 10**6

    def shutdown(self, wait=True, *, cancel_futures=False):
        pass


def runtime_with(settings=None, **executors):
    clock = FakeClock()
    return Runtime(settings or Settings(), executors=executors,
                   deadlines=manual_deadlines(clock), clock=clock)


def promises(n, executor="threads"):
    return {f"k{i}": Promise(f"k{i}", add, (i,), executor=executor)
            for i in range(n)}


# admission

def test_admission_lets_a_request_in_below_every_bound():
    runtime = runtime_with(threads=Gauged())
    assert runtime.admission(promises(1), suspending=True) == (None, True)


def test_a_draining_runtime_admits_nothing():
    runtime = runtime_with(threads=Gauged())
    runtime.draining = True
    reason, may_wait = runtime.admission(promises(1), suspending=False)
    assert reason == "the server is shutting down" and may_wait is False
    # Even with nothing to submit.
    assert runtime.admission({}, suspending=True)[0] == reason


def test_a_full_queue_is_refused_without_waiting():
    # 2 workers busy, 3 of 4 queue places taken: one more fits, two do not.
    executor = Gauged(capacity=2, max_queue=4, queued=3, running=2)
    runtime = runtime_with(threads=executor)
    assert runtime.admission(promises(1), suspending=True) == (None, True)
    reason, may_wait = runtime.admission(promises(2), suspending=True)
    assert reason == "the threads executor's queue is full (max_queue)"
    assert may_wait is False  # waiting in the worker would pass the bound too


def test_free_capacity_counts_before_the_queue():
    # 3 of 4 workers free and a queue bound of 0: 3 promises run at once,
    # a 4th would have to wait.
    runtime = runtime_with(threads=Gauged(capacity=4, max_queue=0, running=1))
    assert runtime.admission(promises(3), suspending=False) == (None, True)
    assert runtime.admission(promises(4), suspending=False)[0] is not None
    # More running than capacity (a process being replaced) frees nothing.
    runtime = runtime_with(threads=Gauged(capacity=1, max_queue=0, running=3))
    assert runtime.admission(promises(1), suspending=False)[0] is not None


def test_admission_counts_as_the_pool_does():
    # Two items queued for two workers that have not picked them up yet:
    # the pool takes one more (a queue place), not two, and admission must
    # say the same (it counted the queued items against the free workers
    # twice, and turned a request away while the workers were free).
    from collective.futures.exceptions import ExecutorFullError
    from collective.futures.executors.base import BoundedPool

    class Cold(BoundedPool):
        def _start_worker(self, number):
            return object(), None

    pool = Cold(2, "cold", max_queue=1)
    pool.submit(add, 1)
    pool.submit(add, 2)
    runtime = runtime_with(threads=pool)
    assert runtime.admission(promises(1), suspending=False) == (None, True)
    assert runtime.admission(promises(2), suspending=False)[0] is not None
    pool.submit(add, 3)
    with pytest.raises(ExecutorFullError):
        pool.submit(add, 4)


def test_promises_are_counted_per_executor():
    runtime = runtime_with(threads=Gauged(capacity=1, max_queue=0),
                           asyncio=Gauged(capacity=1, max_queue=0))
    both = {**promises(1), "a": Promise("a", add, executor="asyncio")}
    assert runtime.admission(both, suspending=False) == (None, True)
    two_loop = {"a": Promise("a", add, executor="asyncio"),
                "b": Promise("b", add, executor="asyncio")}
    assert "asyncio executor's queue" in runtime.admission(two_loop, False)[0]


@pytest.mark.parametrize("executor", [Unbounded(), Gauged(max_queue=None,
                                                          queued=10**6)])
def test_an_executor_without_a_queue_bound_is_its_own_business(executor):
    runtime = runtime_with(custom=executor)
    assert runtime.admission(promises(50, "custom"), suspending=True) == (
        None, True)


def test_max_suspended_reached_may_wait_a_full_queue_may_not():
    runtime = runtime_with(Settings(max_suspended=2), threads=Gauged())
    runtime.metrics.suspend()
    assert runtime.admission(promises(1), suspending=True) == (None, True)
    runtime.metrics.suspend()
    reason, may_wait = runtime.admission(promises(1), suspending=True)
    assert reason == "2 requests are suspended (max_suspended)"
    assert may_wait is True  # the bounds allow running while the worker waits
    # A request that would not suspend (wait mode) is not counted against it.
    assert runtime.admission(promises(1), suspending=False) == (None, True)
    # Both bounds reached: the queue decides, and waiting would not help.
    full = runtime_with(Settings(max_suspended=2),
                        threads=Gauged(capacity=1, max_queue=0, running=1))
    full.metrics.suspend()
    full.metrics.suspend()
    assert full.admission(promises(1), suspending=True)[1] is False


# where a promise runs

class RecordingSandbox:
    def __init__(self):
        self.calls = []

    def run(self, promise):
        self.calls.append(("run", promise))
        return promise()

    async def run_async(self, promise):  # never awaited here
        self.calls.append(("run_async", promise))


def routed_runtime():
    clock = FakeClock()
    sandbox = RecordingSandbox()
    executors = {"threads": ManualExecutor("threads"),
                 "asyncio": ManualExecutor("loop"),
                 "processes": ManualExecutor("processes"),
                 "custom": ManualExecutor(runs_in=None)}
    del executors["custom"].runs_in  # a plain concurrent.futures.Executor
    runtime = Runtime(Settings(), executors=executors, sandbox=sandbox,
                      deadlines=manual_deadlines(clock), clock=clock)
    return runtime, executors, sandbox


@pytest.mark.parametrize("name", ["threads", "custom"])
def test_thread_executors_get_the_promise_wrapped_in_the_sandbox(name):
    runtime, executors, sandbox = routed_runtime()
    promise = Promise("k", add, (1, 2), executor=name)
    future = runtime.submit(promise)
    [(recorded, fn, args)] = executors[name].calls
    assert recorded is future
    assert (fn, args) == (sandbox.run, (promise,))
    executors[name].run(0)
    assert future.result(0) == 3 and sandbox.calls == [("run", promise)]


def test_a_loop_executor_gets_the_async_sandbox():
    runtime, executors, sandbox = routed_runtime()
    promise = Promise("k", add, (1,), executor="asyncio")
    runtime.submit(promise)
    [(_, fn, args)] = executors["asyncio"].calls
    assert (fn, args) == (sandbox.run_async, (promise,))


def test_a_process_executor_gets_the_call_pickled_once():
    runtime, executors, sandbox = routed_runtime()
    pickled = PickledCall(add, (1, 2))
    made = Promise("k", add, (1, 2), executor="processes", pickled=pickled)
    runtime.submit(made)
    [(_, call, args)] = executors["processes"].calls
    assert call is pickled and args == ()  # the bytes made at submit, as they are
    assert sandbox.calls == []  # another process: no sandbox here


def test_a_process_promise_made_without_pickled_still_gets_pickled():
    runtime, executors, _ = routed_runtime()
    runtime.submit(Promise("key", add, (1,), {"b": 5}, executor="processes"))
    [(_, call, args)] = executors["processes"].calls
    assert isinstance(call, PickledCall) and args == ()
    assert call.name == "key"
    assert pickle.loads(call.data) == (add, (1,), {"b": 5})
    assert call() == 6


def test_unknown_executor():
    runtime, _, _ = routed_runtime()
    with pytest.raises(ValueError, match="unknown executor 'gpu'"):
        runtime.submit(Promise("k", add, executor="gpu"))


def test_interrupt_asks_the_executor_when_it_can():
    runtime, executors, _ = routed_runtime()
    promise = Promise("k", add, executor="processes")
    asked = []
    executors["processes"].interrupt = lambda future: asked.append(future) or True
    assert runtime.interrupt(promise, "f") is True and asked == ["f"]
    # An executor without interrupt() cannot stop anything.
    assert runtime.interrupt(Promise("k", add, executor="custom"), "f") is False


def test_the_plain_sandbox_runs_promises_as_they_are():
    import asyncio

    async def coro(x):
        return x * 2

    assert PlainSandbox.run(Promise("k", add, (1, 2))) == 3
    assert asyncio.run(PlainSandbox.run_async(Promise("k", coro, (4,)))) == 8
    assert asyncio.run(PlainSandbox.run_async(Promise("k", add, (4,)))) == 4


# executors created on first use

def test_a_custom_executor_plugs_in_by_dotted_name():
    settings = Settings.from_mapping(
        {"executor.inline": "procfuncs:make_inline_executor"})
    runtime = Runtime(settings)
    try:
        runtime.check_factories()
        promise = Promise("k", fn, (1,), {}, executor="inline")
        assert runtime.submit(promise).result(5) == (1,)
        assert runtime.executor_for("inline").calls == 1
    finally:
        runtime.shutdown()
    with pytest.raises(ConfigurationError, match="cannot import 'nowhere:x'"):
        Runtime(Settings.from_mapping({"executor.bad": "nowhere:x"})).check_factories()
    with pytest.raises(ConfigurationError, match="built-in executor"):
        Settings.from_mapping({"executor.threads": "a:b"})



def test_executors_are_created_once_on_first_use():
    runtime = runtime_with()
    try:
        assert runtime.executor_gauges() == {}
        first = runtime.executor_for("threads")
        assert isinstance(first, ThreadExecutor)
        assert runtime.executor is first and runtime.executor_for("threads") is first
        assert (first.max_workers, first.max_queue) == (32, 1000)
        assert runtime.executor_gauges() == {"threads": {"queued": 0, "running": 0}}
    finally:
        runtime.shutdown()


def test_a_factory_that_lost_the_race_has_its_executor_shut_down():
    made = []

    class Racing(Runtime):
        def _create(self, name):
            executor = Gauged()
            made.append(executor)
            if len(made) == 1:
                # Another thread stores its executor while this one creates.
                self._executors[name] = winner
            return executor

    winner = Gauged()
    runtime = Racing(Settings(), deadlines=manual_deadlines(FakeClock()))
    assert runtime.executor_for("x") is winner
    assert made[0].shutdowns == [(False, False)]


# the stream pool

def test_the_stream_pool_is_stream_threads_with_a_step_queued_per_stream():
    runtime = runtime_with(Settings(max_streams=3, stream_threads=2))
    try:
        assert runtime.executor_gauges() == {}  # not made before first use
        streams = runtime.streams
        assert streams is runtime.streams
        assert isinstance(streams, ThreadExecutor)
        assert (streams.capacity, streams.max_queue) == (2, 3)
        assert streams.name == "collective.futures-stream"
        name = streams.submit(lambda: threading.current_thread().name).result(5)
        assert name == "collective.futures-stream-1"
        # Its gauges are reported with the executors' once it exists...
        assert runtime.executor_gauges() == {
            "streams": {"queued": 0, "running": 0}}
        # ...but it is not an executor promises can name.
        with pytest.raises(ValueError, match="unknown executor 'streams'"):
            runtime.executor_for("streams")
    finally:
        runtime.shutdown()


def test_open_streams_are_counted_up_to_max_streams():
    runtime = runtime_with(Settings(max_streams=2))
    assert runtime.open_stream() is None and runtime.open_stream() is None
    assert runtime.open_streams == 2
    assert runtime.open_stream() == "2 streams are open (max_streams)"
    runtime.close_stream()
    assert runtime.open_stream() is None
    assert runtime.open_streams == 2


def test_shutdown_is_idempotent_and_stops_the_stream_pool_too():
    executor = Gauged()
    runtime = runtime_with(threads=executor)
    streams = runtime.streams
    runtime.shutdown()
    runtime.shutdown()
    assert executor.shutdowns == [(False, True), (False, True)]
    with pytest.raises(RuntimeError, match="after shutdown"):
        streams.submit(lambda: None)


def test_shutdown_goes_on_when_an_executor_fails_to_stop(caplog):
    class Broken(Gauged):
        def shutdown(self, wait=True, *, cancel_futures=False):
            raise OSError("stuck")

    other = Gauged()
    runtime = runtime_with(a=Broken(), b=other)
    runtime.shutdown()
    assert other.shutdowns == [(False, True)]
    assert "shutting down" in caplog.text and "stuck" in caplog.text


def test_shutdown_before_any_use_starts_nothing():
    runtime = Runtime(Settings())
    before = {t.name for t in threading.enumerate()}
    runtime.shutdown()
    assert {t.name for t in threading.enumerate()} <= before


# rounds and sampling

def test_a_round_gets_the_timeout_as_its_deadline():
    clock = FakeClock(100.0)
    deadlines = manual_deadlines(clock)
    executor = ManualExecutor()
    runtime = Runtime(Settings(timeout=7), executors={"threads": executor},
                      deadlines=deadlines, clock=clock)
    done = []
    round_ = runtime.start_round({"k": Promise("k", add, (1,))}, done.append)
    assert round_.deadline == 107.0 and round_.timeout == 7
    clock.advance(6.9)
    assert deadlines.run_due() == 0 and not round_.done
    clock.advance(0.1)
    assert deadlines.run_due() == 1 and round_.done
    assert done[0]["k"].kind == "timed_out"
    assert runtime.metrics.outcomes["threads", "timed_out"] == 1


def test_sampling_runs_on_the_deadlines_at_the_history_interval():
    clock = FakeClock()
    deadlines = manual_deadlines(clock)
    runtime = Runtime(Settings(history_interval=5), executors={
        "threads": Gauged(queued=2, running=1)}, deadlines=deadlines, clock=clock)
    runtime.executor_for("threads")
    runtime.start_sampling()
    runtime.start_sampling()  # once only
    assert deadlines.run_due() == 1
    assert len(runtime.metrics.history) == 1
    assert runtime.metrics.history[0]["queued"] == 2
    assert runtime.metrics.history[0]["running"] == 1
    clock.advance(4.9)
    assert deadlines.run_due() == 0
    clock.advance(0.1)
    assert deadlines.run_due() == 1 and len(runtime.metrics.history) == 2
    runtime.shutdown()  # stops sampling: nothing is scheduled again
    clock.advance(5)
    assert deadlines.run_due() == 1  # the one already scheduled
    clock.advance(5)
    assert deadlines.run_due() == 0
    assert len(runtime.metrics.history) == 3


def test_a_failing_sample_does_not_stop_sampling(caplog):
    clock = FakeClock()
    deadlines = manual_deadlines(clock)
    runtime = Runtime(Settings(history_interval=1), deadlines=deadlines,
                      clock=clock)
    calls = []

    def sample(rt):
        calls.append(rt)
        raise RuntimeError("sampling bug")

    runtime.metrics = types.SimpleNamespace(sample=sample)
    runtime.start_sampling()
    assert deadlines.run_due() == 1
    clock.advance(1)
    assert deadlines.run_due() == 1
    assert len(calls) == 2 and "sampling bug" in caplog.text


def test_the_stream_pool_can_be_replaced():
    pool = ManualExecutor()
    runtime = runtime_with(streams=pool)
    assert runtime.streams is pool
    with pytest.raises(ValueError, match="unknown executor 'streams'"):
        runtime.executor_for("streams")
    runtime.shutdown()
    assert pool.shutdowns == [(False, True)]


@pytest.mark.parametrize("attribute", ["max_workers", "max_concurrency"])
def test_capacity_read_from_max_workers_or_max_concurrency(attribute):
    class Custom:
        max_queue = 0
        running = 0
        queued = 0

    executor = Custom()
    setattr(executor, attribute, 2)
    runtime = runtime_with(custom=executor)
    assert runtime.admission(promises(2, "custom"), False) == (None, True)
    assert runtime.admission(promises(3, "custom"), False)[0] == (
        "the custom executor's queue is full (max_queue)")
