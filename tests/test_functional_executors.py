"""Executors in a real Zope under real waitress: asyncio fan-out against a
real slow HTTP service, worker processes that die, shared promises,
cancellation."""

import concurrent.futures
import json
import os
import re
import time

import pytest

import rawhttp
from conftest import wait_for
from slow_upstream import SlowUpstream
from zopeinstance import ZopeInstance


pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def upstream():
    service = SlowUpstream(delay=1.0).start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def zope(tmp_path_factory):
    instance = ZopeInstance(
        tmp_path_factory.mktemp("zope"), threads=2,
        product_config={"asyncio_max_concurrency": "2000",
                        "process_workers": "2", "timeout": "20"},
        server_extra="connection_limit = 1000").create()
    instance.start()
    yield instance
    instance.stop()



def test_a_thousand_asyncio_promises_take_about_one_second(zope, upstream):
    zope.get(f"/@@async-fanout?n=5&port={upstream.port}&delay=0.1")  # loop started
    threads_before = zope.thread_count()
    start = time.monotonic()
    status, body = zope.get(f"/@@async-fanout?n=1000&port={upstream.port}&delay=1",
                            timeout=60)
    took = time.monotonic() - start
    assert (status, json.loads(body)) == (200, {"ok": 1000, "n": 1000})
    assert took < 3.0, took  # 1 s of latency each, all at once
    assert zope.thread_count() == threads_before
    names = json.loads(zope.get("/@@threads")[1])
    assert names.count("collective.futures-asyncio") == 1


def open_descriptors(zope):
    return len(os.listdir(f"/proc/{zope.pid}/fd"))


def test_descriptors_past_1023_do_not_stop_the_server(zope, upstream):
    # One request holding 1,100 upstream connections pushes every new
    # descriptor past 1023. waitress's stock select() loop died there
    # (ValueError, exit 1, every request lost); the package's servers poll.
    from zopeinstance import _more_file_descriptors
    _more_file_descriptors()  # the upstream, in this process, holds 1,100 too
    n = 1100
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        fan_out = pool.submit(
            zope.get, f"/@@async-fanout?n={n}&port={upstream.port}&delay=3",
            timeout=60)
        wait_for(lambda: open_descriptors(zope) > 1024, timeout=20,
                 message="the fan-out to hold its upstream connections")
        # A new connection: its descriptor is numbered past 1023.
        assert zope.get("/@@plain")[0] == 200
        status, body = fan_out.result(60)
    assert (status, json.loads(body)) == (200, {"ok": n, "n": n})
    assert zope.process.poll() is None


def test_a_dying_worker_process_fails_only_its_promise(zope):
    for how, said in [("exit", "exit code 3"), ("SIGKILL", "SIGKILL")]:
        status, body = zope.get(f"/@@process-crash?how={how}", timeout=60)
        assert status == 200
        assert body.startswith("square=49; died: worker process ")
        assert said in body
    # The pool was rebuilt: the next promises run.
    status, body = zope.get("/@@process-pid")
    pid, zope_pid = map(int, re.match(r"pid=(\d+) zope=(\d+)", body).groups())
    assert pid != zope_pid
    assert "starting a new worker process" in zope.log()


def test_unpicklable_functions_and_unknown_executors_fail_at_the_call(zope):
    status, body = zope.get("/@@bad-input?case=pickle")
    assert status == 200
    assert body.startswith(
        "TypeError: collective.futures.submit(): the 'processes' executor needs "
        "fn and its arguments to be picklable")
    assert zope.get("/@@bad-input?case=executor") == (
        200, "ValueError: collective.futures.submit(): unknown executor 'gpu'; "
             "configured: threads, processes, asyncio")


def test_a_hundred_concurrent_requests_share_one_execution(zope):
    def get(_):
        return zope.get("/@@shared?counter=flight&delay=1")

    with concurrent.futures.ThreadPoolExecutor(100) as pool:
        results = list(pool.map(get, range(100)))
    assert set(results) == {(200, "computed once for flight")}
    assert zope.counters()["flight.executions"] == 1


def test_a_kept_shared_result_needs_no_second_pass(zope):
    assert zope.get("/@@shared?counter=ttl&ttl=60&delay=0.1") == (
        200, "computed once for ttl")
    assert zope.counters()["ttl.passes"] == 2
    assert zope.get("/@@shared?counter=ttl&ttl=60&delay=0.1") == (
        200, "computed once for ttl")
    seen = zope.counters()
    assert seen["ttl.passes"] == 3  # one pass only for the second request
    assert seen["ttl.executions"] == 1


def test_a_hang_up_cancels_a_running_asyncio_promise(zope):
    conn = rawhttp.Connection(zope.address)
    conn.send(rawhttp.get("/@@async-cancel?counter=acancel"))
    wait_for(lambda: zope.counters().get("acancel.started"), interval=0.05,
             message="the asyncio promise started")
    conn.close()
    def finished():
        seen = zope.counters()
        return seen if seen.get("acancel.finally") else None

    seen = wait_for(finished, interval=0.1, message="the promise's finally ran")
    assert seen.get("acancel.started") == 1
    assert seen.get("acancel.finally") == 1  # cancelled, not left for 30 s


def test_process_work_past_its_deadline_is_stopped(tmp_path):
    zope = ZopeInstance(tmp_path / "z", product_config={
        "timeout": "1", "process_workers": "1"}).create().start()
    try:
        first = zope.get("/@@process-pid")[1]
        start = time.monotonic()
        status, body = zope.get("/@@process-pid?delay=30")
        assert body == "timed out: promise 'pid' did not finish within 1 s"
        assert time.monotonic() - start < 3
        # The only worker was stopped and replaced: the next call runs at
        # once, in a new process.
        start = time.monotonic()
        after = zope.get("/@@process-pid")[1]
        assert time.monotonic() - start < 10
        assert after != first
        assert re.search(r"0 abandoned .*, 1 stopped: pid", zope.log())
    finally:
        zope.stop()


def test_worker_processes_do_not_outlive_zope(tmp_path):
    # A worker process busy with a hung promise never reads its pipe, so it
    # did not notice Zope dying, and lived on (an orphan of the forkserver).
    import signal
    zope = ZopeInstance(tmp_path / "z", product_config={
        "timeout": "60", "process_workers": "1"}).create().start()
    try:
        worker = int(re.match(r"pid=(\d+)", zope.get("/@@process-pid")[1])[1])
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            hung = pool.submit(zope.get, "/@@process-pid?delay=60", timeout=90)
            wait_for(lambda: zope.get("/@@futures-metrics", headers=zope.admin_headers())[1]
                     .count('"running": 1'), timeout=10,
                     message="the hung promise to run in the worker")
            zope.stop(signal.SIGKILL)
            with pytest.raises(Exception):
                hung.result(30)  # the connection is gone with Zope
    finally:
        zope.stop()

    def gone():
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return True
        return _zombie(worker)

    wait_for(gone, timeout=10, message=f"worker process {worker} to end")


def _zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1].startswith("Z")
    except FileNotFoundError:
        return True


def _suspended(zope):
    status, _, body = zope.request("/@@futures-metrics",
                                   headers=zope.admin_headers())
    return json.loads(body)["suspended"]


def test_the_main_loop_is_idle_while_hundreds_of_requests_are_suspended(
        zope, upstream):
    # A loop that spins over suspended channels (issue 11, item 8: the
    # asyncio executor's main thread burnt a core) shows as CPU while
    # nothing happens but waiting.
    import asyncio

    # 15 s: all 600 are suspended at once even on a slow machine.
    count, path = 600, f"/@@async-fanout?n=1&port={upstream.port}&delay=15"

    async def scenario():
        connections = []
        for _ in range(count):
            reader, writer = await asyncio.open_connection(*zope.address)
            writer.write(rawhttp.get(path))
            connections.append((reader, writer))
        try:
            deadline = time.monotonic() + 14
            while _suspended(zope) < count and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert _suspended(zope) == count
            cpu = zope.cpu_seconds()
            await asyncio.sleep(1.0)
            idle_cpu = zope.cpu_seconds() - cpu
            answers = await asyncio.wait_for(asyncio.gather(
                *(reader.readuntil(b"}") for reader, _ in connections)), 60)
            return idle_cpu, answers
        finally:
            for _, writer in connections:
                writer.close()

    idle_cpu, answers = asyncio.run(scenario())
    assert all(answer.endswith(b'{"ok": 1, "n": 1}') for answer in answers)
    assert idle_cpu < 0.3, idle_cpu  # a spinning loop burns about 1.0
