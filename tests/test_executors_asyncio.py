"""executors/asyncio.py: one event loop in one named thread; coroutines
bounded by max_concurrency and max_queue; cancel() reaches a running task."""

import asyncio
import threading
import time

import pytest
from zope.interface.verify import verifyObject

from collective import futures
from collective.futures.executors.asyncio import AsyncioExecutor
from collective.futures.interfaces import IBoundedExecutor

from conftest import wait_for


def test_the_asyncio_executor_provides_its_interface():
    assert verifyObject(IBoundedExecutor, AsyncioExecutor())


def test_the_asyncio_executor_reports_its_bounds_without_starting():
    executor = AsyncioExecutor(max_concurrency=3, max_queue=4)
    assert (executor.runs_in, executor.capacity, executor.max_queue) == (
        "loop", 3, 4)
    # Reading the bounds and gauges starts no loop.
    assert (executor.queued, executor.running, executor.pending) == (0, 0, 0)
    assert "collective.futures-asyncio" not in {
        t.name for t in threading.enumerate()}
    executor.shutdown()  # never started: nothing to stop


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

    started = threading.Event()

    async def long_started():
        started.set()
        await long()

    future = loop_executor.submit(long_started)
    assert started.wait(5)
    assert future.cancel()
    wait_for(lambda: seen, message="the task's finally to run")
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
        wait_for(lambda: len(running) == 2, message="two coroutines to run")
        assert (executor.running, executor.queued) == (2, 1)
        assert len(running) == 2  # the third waits for a slot
        with pytest.raises(futures.ExecutorFullError, match="asyncio"):
            executor.submit(hold, release)
        release.set()
        for future in held:
            future.result(5)
        assert len(running) == 3
    finally:
        executor.shutdown()


def test_interrupt_leaves_cancelling_to_the_future(loop_executor):
    future = loop_executor.submit(lambda: 1)
    assert loop_executor.interrupt(future) is False
    assert future.result(5) == 1


def test_what_fn_raises_goes_into_the_future(loop_executor):
    async def fail():
        raise LookupError("nope")

    with pytest.raises(LookupError, match="nope"):
        loop_executor.submit(fail).result(5)
    with pytest.raises(ZeroDivisionError):
        loop_executor.submit(lambda: 1 / 0).result(5)
    assert loop_executor.submit(lambda: "alive").result(5) == "alive"
    wait_for(lambda: loop_executor.pending == 0, message="the count to drop")


def test_after_shutdown():
    executor = AsyncioExecutor()
    assert executor.submit(lambda: 1).result(5) == 1
    executor.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(lambda: 1)
    assert "collective.futures-asyncio" not in {
        t.name for t in threading.enumerate()}


def test_shutdown_is_idempotent():
    # A second call once the first closed the loop used to raise 'Event
    # loop is closed' (Runtime.shutdown() twice logged it).
    executor = AsyncioExecutor()
    assert executor.submit(lambda: 1).result(5) == 1
    executor.shutdown()
    executor.shutdown()


def test_shutdown_can_cancel_running_tasks():
    executor = AsyncioExecutor()
    started, seen = threading.Event(), []

    async def long():
        started.set()
        try:
            await asyncio.sleep(30)
        finally:
            seen.append("finally")

    future = executor.submit(long)
    assert started.wait(5)
    executor.shutdown(wait=True, cancel_futures=True)
    assert seen == ["finally"] and future.cancelled()


@pytest.mark.parametrize("raised", [SystemExit, KeyboardInterrupt])
def test_a_coroutine_cannot_stop_the_loop(raised):
    # Raised out of a task, SystemExit and KeyboardInterrupt stop the
    # event loop: every later promise failed with 'Event loop is closed'.
    # They are this promise's failure; the loop goes on.
    from collective.futures.exceptions import FutureAbortedError

    executor = AsyncioExecutor()
    try:
        async def abort():
            raise raised("from a coroutine")

        async def fine():
            return "still running"

        with pytest.raises(FutureAbortedError, match=raised.__name__):
            executor.submit(abort).result(5)
        assert executor.submit(fine).result(5) == "still running"
    finally:
        executor.shutdown()


def test_a_coroutine_that_blocks_the_loop_is_logged_by_name(caplog):
    # time.sleep() in a coroutine stalls every asyncio promise; it went
    # unnoticed. The watchdog logs it, naming the promise's task.
    import logging
    import time as time_module
    from conftest import wait_for

    executor = AsyncioExecutor(block_threshold=0.2)
    try:
        async def polite():
            await asyncio.sleep(0.6)  # the control: waits without blocking
            return "polite"

        async def rude():
            time_module.sleep(0.6)
            return "rude"

        with caplog.at_level(logging.WARNING, "collective.futures"):
            assert executor.submit(polite).result(5) == "polite"
            assert executor.blocked == 0 and "blocked" not in caplog.text
            assert executor.submit(rude).result(5) == "rude"
            wait_for(lambda: executor.blocked == 1, message="the block logged")
        assert "the asyncio loop has been blocked for" in caplog.text
        assert "rude" in caplog.text
    finally:
        executor.shutdown()


def test_a_coroutine_that_ignores_its_cancellation_gives_its_slot_back(caplog):
    # A coroutine swallowing CancelledError kept its concurrency slot for
    # ever: with the slots gone, every later asyncio promise waited, and
    # nothing was logged.
    import logging

    executor = AsyncioExecutor(max_concurrency=1, cancel_grace=0.2)
    stop = threading.Event()
    try:
        async def stubborn():
            while not stop.is_set():
                try:
                    await asyncio.sleep(0.02)
                except asyncio.CancelledError:
                    pass  # the bug under test: cancellation swallowed
            return "stopped at last"

        async def next_one():
            return "next"

        with caplog.at_level(logging.WARNING, "collective.futures"):
            future = executor.submit(stubborn)
            wait_for(lambda: executor.running == 1, message="stubborn runs")
            queued = executor.submit(next_one)
            time.sleep(0.1)
            assert not queued.done()  # the control: the one slot is held
            assert future.cancel()
            assert queued.result(5) == "next"
        assert executor.ignored_cancellation == 1
        assert "ignored its cancellation for 0.2 s" in caplog.text
        assert "stubborn" in caplog.text
        assert executor.running == 0  # it no longer counts
    finally:
        stop.set()
        executor.shutdown()


def test_a_coroutine_that_honours_its_cancellation_is_not_reaped(caplog):
    import logging

    executor = AsyncioExecutor(max_concurrency=1, cancel_grace=0.1)
    try:
        async def polite():
            await asyncio.sleep(30)

        with caplog.at_level(logging.WARNING, "collective.futures"):
            future = executor.submit(polite)
            wait_for(lambda: executor.running == 1, message="polite runs")
            future.cancel()
            wait_for(lambda: executor.running == 0, message="its slot back")
            time.sleep(0.3)  # past the grace: the reaper finds it done
        assert executor.ignored_cancellation == 0
        assert "ignored its cancellation" not in caplog.text
        assert executor.submit(asyncio.sleep, 0).result(5) is None
    finally:
        executor.shutdown()
