"""executors/processes.py: pickled calls run in worker processes, each fed
by a named thread; a dying worker fails only its call; interrupt() kills
and replaces a process. Real processes (forkserver), bounded waits."""

import pickle
import os
import threading
import time

import pytest
from zope.interface.verify import verifyObject

import procfuncs
from collective import futures
from collective.futures.exceptions import ConfigurationError
from collective.futures.executors.processes import (
    PickledCall, ProcessExecutor, dumps_call)
from collective.futures.interfaces import IBoundedExecutor
from collective.futures.settings import Settings

from conftest import wait_for


def test_the_process_executor_provides_its_interface():
    assert verifyObject(IBoundedExecutor, ProcessExecutor(1, 1, "spawn"))


def test_the_process_executor_reports_its_bounds():
    executor = ProcessExecutor(3, 4, "spawn")
    assert (executor.runs_in, executor.capacity, executor.max_queue) == (
        "processes", 3, 4)
    assert (executor.queued, executor.running, executor.processes) == (0, 0, [])


# PickledCall: a call pickled once

def test_a_pickled_call_is_pickled_when_made():
    call = PickledCall(procfuncs.square, (4,), name="key")
    assert pickle.loads(call.data) == (procfuncs.square, (4,), {})
    assert call.name == "key" and call() == 16
    assert PickledCall(procfuncs.square, (2,)).name == "square"
    with pytest.raises(TypeError, match="needs fn and its arguments to be picklable"):
        PickledCall(procfuncs.square, (threading.Lock(),))


def test_a_pickled_call_is_submitted_as_its_bytes():
    executor = ProcessExecutor(1, 1, "spawn")
    call = PickledCall(procfuncs.square, (3,), name="key")
    # What a worker process receives: the bytes made once, as they are.
    assert executor._item(call, (), {}) == (call.data, "key")
    data, name = executor._item(procfuncs.square, (3,), {})
    assert pickle.loads(data) == (procfuncs.square, (3,), {}) and name == "square"


def test_a_call_that_cannot_be_pickled_fails_at_submit():
    executor = ProcessExecutor(1, 1, "spawn")
    with pytest.raises(TypeError, match="picklable"):
        executor.submit(lambda: 1)
    assert executor.queued == 0 and executor.threads == 0  # nothing started


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
    wait_for(lambda: pool.running == 1, timeout=30,
             message="a worker to take the slow call")  # the other takes the next
    dying = pool.submit(procfuncs.die, how)
    with pytest.raises(futures.WorkerProcessDiedError, match=said):
        dying.result(60)
    assert isinstance(slow.result(60), int)  # the other worker was untouched
    assert pool.submit(procfuncs.square, 3).result(60) == 9  # rebuilt


def test_interrupt_stops_a_running_call(pool, tmp_path):
    started = tmp_path / "started"
    future = pool.submit(procfuncs.touch_then_sleep, str(started), 30)
    wait_for(started.exists, timeout=30, message="the call to start")
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


class GatedContext:
    """A multiprocessing context whose processes start only when the test
    opens the gate: the window between a worker thread taking a call and
    its process being up, held open."""

    def __init__(self, context, gate):
        self._context = context
        self._gate = gate

    def Pipe(self):
        return self._context.Pipe()

    def Process(self, *args, **kwargs):
        return GatedProcess(self._context.Process(*args, **kwargs), self._gate)


class GatedProcess:
    def __init__(self, process, gate):
        self._process = process
        self._gate = gate

    def start(self):
        assert self._gate.wait(30)
        self._process.start()

    def __getattr__(self, name):
        return getattr(self._process, name)


def test_interrupt_before_the_process_is_up_still_stops_the_call():
    # interrupt() used to return True here while the call then ran in full
    # in the new process (the round counting it as stopped).
    gate = threading.Event()
    executor = ProcessExecutor(1, 1, "forkserver")
    executor.context = GatedContext(executor.context, gate)
    try:
        future = executor.submit(procfuncs.pid_after, 0)
        wait_for(lambda: executor.running == 1, message="the thread to take it")
        assert executor.interrupt(future) is True
        gate.set()
        assert isinstance(future.exception(30), futures.WorkerProcessDiedError)
    finally:
        gate.set()
        executor.shutdown()


def test_shutdown_stops_the_processes_and_cancels_what_is_queued(tmp_path):
    # Its processes are killed, so queued calls could not run: they are
    # cancelled even without cancel_futures.
    executor = ProcessExecutor(1, 5, "forkserver")
    started = tmp_path / "started"
    running = executor.submit(procfuncs.touch_then_sleep, str(started), 30)
    queued = executor.submit(procfuncs.square, 2)
    wait_for(started.exists, timeout=30, message="the call to start")
    executor.shutdown(wait=True)
    assert queued.cancelled()
    with pytest.raises(futures.WorkerProcessDiedError, match="SIGKILL"):
        running.result(10)
    assert executor.processes == []


def test_a_worker_ends_when_its_parent_does():
    # The watch, without processes: a parent pid that changes, or a Zope
    # pid that is gone, ends the worker (os._exit, patched here).
    from unittest import mock
    from collective.futures.executors import processes

    exits = []

    class Exit(Exception):
        pass

    def fake_exit(code):
        exits.append(code)
        raise Exit

    with mock.patch.object(processes.os, "_exit", fake_exit), \
            mock.patch.object(processes.time, "sleep", lambda s: None):
        with mock.patch.object(processes.os, "getppid", lambda: 1):
            with pytest.raises(Exit):
                processes._watch_parent(os.getpid(), parent_pid=4242)
        with pytest.raises(Exit):
            processes._watch_parent(2**22 + 12345, parent_pid=os.getppid())
    assert exits == [1, 1]


def test_an_interrupt_in_the_gap_before_the_call_is_recorded_stops_it(tmp_path):
    # The deadline thread interrupts exactly when the worker thread has
    # taken the call (the future is running) and not yet recorded it: no
    # process to kill was found, the call ran in full, and a hung promise
    # kept the only worker for good.
    executor = ProcessExecutor(1, 1, "forkserver")
    started = tmp_path / "started"
    try:
        interrupted = []
        # Holding the pool's lock (re-entrant) keeps its worker thread from
        # taking the call before the test has set the trap.
        with executor._cv:
            future = executor.submit(procfuncs.touch_then_sleep, str(started), 30)
            original = future.set_running_or_notify_cancel

            def running_then_interrupted():
                running = original()
                interrupted.append(executor.interrupt(future))  # in the gap
                return running

            future.set_running_or_notify_cancel = running_then_interrupted
        with pytest.raises(futures.WorkerProcessDiedError, match="stopped"):
            future.result(30)
        assert interrupted == [True]
        assert not started.exists()  # the call was never sent
        # The worker is free for the next call.
        assert executor.submit(procfuncs.square, 3).result(60) == 9
    finally:
        executor.shutdown()
