"""The executors, against real threads, event loops and processes."""

import asyncio
import threading
import time

import pytest

import procfuncs
from collective import futures
from collective.futures.executors.asyncio import AsyncioExecutor
from collective.futures.exceptions import ConfigurationError
from collective.futures.executors.processes import ProcessExecutor, dumps_call
from collective.futures.api import make_promise
from collective.futures.core.promise import Promise
from collective.futures.core.runtime import Runtime
from collective.futures.settings import Settings
from collective.futures.core.shared import SharedFutures
from collective.futures.executors.threads import ThreadExecutor


# asyncio

@pytest.fixture
def loop_executor():
    executor = AsyncioExecutor(max_concurrency=2000, max_queue=10)
    yield executor
    executor.shutdown()


def test_asyncio_runs_coroutines_and_awaitable_factories(loop_executor):
    async def coro(x):
        await asyncio.sleep(0.01)
        return x + 1

    def factory(x):
        return coro(x)

    def plain(x):
        return x * 2

    assert loop_executor.submit(coro, 1).result(5) == 2
    assert loop_executor.submit(factory, 2).result(5) == 3
    assert loop_executor.submit(plain, 3).result(5) == 6
    assert loop_executor.loop is loop_executor.loop
    names = [t.name for t in threading.enumerate()]
    assert "collective.futures-asyncio" in names


def test_a_thousand_coroutines_cost_no_thread_each(loop_executor):
    async def wait():
        await asyncio.sleep(0.5)
        return threading.current_thread().name

    loop_executor.submit(wait).result(5)  # the loop thread exists now
    before = threading.active_count()
    start = time.monotonic()
    pending = [loop_executor.submit(wait) for _ in range(1000)]
    during = threading.active_count()
    names = {f.result(10) for f in pending}
    took = time.monotonic() - start
    assert names == {"collective.futures-asyncio"}
    assert during == before
    assert took < 2.0, took


def test_asyncio_cancel_cancels_the_running_task(loop_executor):
    seen = []

    async def long():
        try:
            await asyncio.sleep(30)
        finally:
            seen.append("finally")

    future = loop_executor.submit(long)
    time.sleep(0.1)
    assert future.cancel()
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == ["finally"]


def test_asyncio_bounds():
    executor = AsyncioExecutor(max_concurrency=2, max_queue=1)
    try:
        running = []

        async def hold(event):
            running.append(1)
            while not event.is_set():
                await asyncio.sleep(0.01)

        release = threading.Event()
        held = [executor.submit(hold, release) for _ in range(3)]
        time.sleep(0.2)
        assert len(running) == 2  # the third waits for a slot
        with pytest.raises(futures.ExecutorFullError, match="asyncio"):
            executor.submit(hold, release)
        release.set()
        for future in held:
            future.result(5)
        assert len(running) == 3
    finally:
        executor.shutdown()


# processes

@pytest.fixture(scope="module")
def pool():
    pool = ProcessExecutor(max_workers=2, max_queue=5, start_method="forkserver")
    yield pool
    pool.shutdown()


def test_processes_run_calls_in_other_processes(pool):
    import os
    assert pool.submit(procfuncs.square, 7).result(60) == 49
    assert pool.submit(procfuncs.pid_after, 0).result(60) != os.getpid()
    names = [t.name for t in threading.enumerate()]
    assert any(n.startswith("collective.futures-process-") for n in names)


def test_a_failing_call_raises_its_exception_and_logs_the_remote_traceback(
        pool, caplog):
    with pytest.raises(LookupError, match="nope"):
        pool.submit(procfuncs.fail, "nope").result(60)
    assert "in fail" in caplog.text and "LookupError: nope" in caplog.text


@pytest.mark.parametrize("how, said", [
    ("exit", "exit code 3"), ("SIGKILL", "SIGKILL"), ("SIGSEGV", "SIGSEGV"),
])
def test_a_dying_worker_fails_only_its_promise(pool, how, said):
    slow = pool.submit(procfuncs.pid_after, 1.0)
    time.sleep(0.2)  # the other worker takes the next call
    dying = pool.submit(procfuncs.die, how)
    with pytest.raises(futures.WorkerProcessDiedError, match=said):
        dying.result(60)
    assert isinstance(slow.result(60), int)  # the other worker was untouched
    assert pool.submit(procfuncs.square, 3).result(60) == 9  # rebuilt


def test_interrupt_stops_a_running_call(pool):
    future = pool.submit(procfuncs.pid_after, 30)
    time.sleep(0.5)
    start = time.monotonic()
    assert pool.interrupt(future)
    with pytest.raises(futures.WorkerProcessDiedError, match="SIGKILL"):
        future.result(30)
    assert time.monotonic() - start < 5
    assert pool.submit(procfuncs.square, 2).result(60) == 4


def test_unpicklable_calls_and_results(pool):
    with pytest.raises(TypeError, match="picklable"):
        dumps_call(lambda: 1, (), {})
    with pytest.raises(TypeError, match="cannot be pickled"):
        pool.submit(procfuncs.unpicklable_result).result(60)


def test_fork_is_refused():
    with pytest.raises(ValueError, match="fork"):
        ProcessExecutor(start_method="fork")
    with pytest.raises(ConfigurationError, match="fork is unsafe"):
        Settings.from_mapping({"process_start_method": "fork"})


# shared

def test_single_flight_and_time_to_live():
    clock = [0.0]
    shared = SharedFutures(max_entries=2, clock=lambda: clock[0])
    started = []
    release = threading.Event()
    import concurrent.futures as cf
    pool = cf.ThreadPoolExecutor(2)
    try:
        def submit():
            started.append(1)
            return pool.submit(lambda: release.wait(5) and "value")

        promise = Promise("k", str, shared=True, ttl=10)
        futures_ = [shared.run(promise, submit) for _ in range(100)]
        assert len(set(map(id, futures_))) == 1 and len(started) == 1
        release.set()
        assert futures_[0].result(5) == "value"
        assert shared.cached("k").value == "value"
        assert (shared.executions, shared.joined) == (1, 99)
        clock[0] = 11.0
        assert shared.cached("k") is None  # expired
    finally:
        pool.shutdown()


def test_errors_are_not_kept_and_the_cache_is_bounded():
    import concurrent.futures as cf
    shared = SharedFutures(max_entries=2)

    def done(value=None, error=None):
        future = cf.Future()
        future.set_exception(error) if error else future.set_result(value)
        return lambda: future

    shared.run(Promise("bad", str, shared=True, ttl=10), done(error=ValueError()))
    assert shared.cached("bad") is None
    for key in "abc":
        shared.run(Promise(key, str, shared=True, ttl=10), done(key))
    assert shared.cached("a") is None  # evicted: least recently used
    assert shared.cached("c").value == "c"


# promise() and the routing

def fn(*args):
    return args


async def afn():
    return 1


def test_promise_options_are_validated():
    with pytest.raises(TypeError, match="fn must be callable"):
        futures.promise(1)
    with pytest.raises(TypeError, match="executor must be a name"):
        futures.promise(fn, executor=3)
    with pytest.raises(ValueError, match="ttl needs shared=True"):
        futures.promise(fn, ttl=5)
    with pytest.raises(ValueError, match="ttl must be seconds"):
        futures.promise(fn, shared=True, ttl=-1)


def test_make_promise_routes_and_checks():
    assert make_promise("submit", "k", fn, (), {}).executor == "threads"
    assert make_promise("submit", "k", afn, (), {}).executor == "asyncio"
    options = futures.promise(procfuncs.square, executor="processes",
                              shared=True, ttl=3)
    promise = make_promise("submit", "k", options, (2,), {})
    assert (promise.fn, promise.executor, promise.shared, promise.ttl) == (
        procfuncs.square, "processes", True, 3.0)
    with pytest.raises(ValueError, match="unknown executor 'gpu'"):
        make_promise("submit", "k", futures.promise(fn, executor="gpu"), (), {})
    with pytest.raises(TypeError, match="async function: run it on the asyncio"):
        make_promise("submit", "k", futures.promise(afn, executor="threads"), (), {})
    with pytest.raises(TypeError, match=r"collective.futures.submit\(\): the "
                                         r"'processes' executor needs fn"):
        make_promise("submit", "k", futures.promise(lambda: 1, executor="processes"),
                     (), {})


def test_submit_multiprocess_checks_picklability_at_the_call(request_):
    assert futures.submitMultiprocess("k", procfuncs.square, 3) is True
    with pytest.raises(TypeError, match="picklable"):
        futures.submitMultiprocess("j", procfuncs.square, threading.Lock())
    assert futures.resultOrSubmitMultiprocess("m", "ph", procfuncs.square, 2) == "ph"


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


# the fairness gate

def test_the_resume_gate_lets_slots_resumed_requests_in_at_a_time():
    from collective.futures.server.fairness import ResumeGate

    queued = []

    class Server:
        def add_task(self, channel):
            queued.append(channel)

    class Channel:
        server = Server()

    channels = [Channel() for _ in range(5)]
    gate = ResumeGate(slots=2)
    for channel in channels:
        gate.resume(channel)
    assert queued == channels[:2] and gate.waiting == 3
    gate.done()
    assert queued == channels[:3]
    for _ in range(4):
        gate.done()
    assert queued == channels and gate.waiting == 0
    unlimited = ResumeGate(slots=0)
    for channel in channels:
        unlimited.resume(channel)
    assert queued == channels * 2


def test_a_shared_execution_older_than_the_timeout_is_not_joined():
    import concurrent.futures as cf
    clock = [0.0]
    shared = SharedFutures(clock=lambda: clock[0], stale_after=5)
    hung = cf.Future()
    promise = Promise("k", str, shared=True)
    first = shared.run(promise, lambda: hung)
    clock[0] = 4.0
    assert shared.run(promise, lambda: cf.Future()) is first  # joined
    clock[0] = 6.0
    fresh = cf.Future()
    second = shared.run(promise, lambda: fresh)  # hung: started anew
    assert second is not first
    assert shared.executions == 2
    fresh.set_result("fresh")
    assert second.result(0) == "fresh" and not first.done()


def test_the_sandbox_refusal_looks_at_keys_and_refuses_deep_nesting():
    from persistent import Persistent
    from collective.futures.zope.sandbox import refusal

    assert "persistent object" in refusal(len, ({Persistent(): 1},), {})
    assert "persistent object" in refusal(
        len, (), {"a": [(1, {"b": Persistent()})]})
    deep = "leaf"
    for _ in range(9):
        deep = [deep]
    assert "nest deeper" in refusal(len, (deep,), {})
    assert refusal(len, ([1, "a", {"k": (None, 2.5)}],), {"flag": True}) is None


def test_a_queue_bound_of_zero_still_uses_idle_capacity():
    pool = ThreadExecutor(2, max_queue=0)
    try:
        assert pool.submit(lambda: 1).result(5) == 1
        release = threading.Event()
        held = [pool.submit(release.wait, 5) for _ in range(2)]
        time.sleep(0.05)
        with pytest.raises(futures.ExecutorFullError):
            pool.submit(lambda: 2)
        release.set()
        for future in held:
            future.result(5)
    finally:
        pool.shutdown()


def test_a_stream_cannot_be_shared(request_):
    with pytest.raises(TypeError, match="cannot be shared"):
        futures.AsyncWorkerStreamIterator(
            futures.promise(fn, shared=True), request_)
    with pytest.raises(TypeError, match="request must be the Zope request"):
        futures.AsyncWorkerStreamIterator(fn, object())
