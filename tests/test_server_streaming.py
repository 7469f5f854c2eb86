"""server/streaming.py: StreamJob, a handed-off stream, with a fake channel,
task and stream, a real core Runtime whose stream pool is settled by hand
(or is real, once), and a fake clock driving the deadline. on_done must be
called exactly once in every path: every test checks it."""

import io
import logging
import threading
import types

from zope.globalrequest import getRequest
from zope.interface.verify import verifyObject

from collective.futures.core.body import StreamResult, prepare
from collective.futures.core.runtime import Runtime
from collective.futures.exceptions import ExecutorFullError
from collective.futures.interfaces import IDetachedJob
from collective.futures.server.internals import ClientDisconnected
from collective.futures.stream import AsyncWorkerStreamIterator
from collective.futures.server.streaming import (
    StreamJob, set_response)
from collective.futures.settings import Settings
from collective.futures.sandbox import NO_REQUEST

from conftest import wait_for
from fakes import FakeClock, ManualExecutor, manual_deadlines


class Channel:
    """What a stream job uses of waitress's channel."""

    def __init__(self, high=1 << 20, patience=120):
        self.adj = types.SimpleNamespace(outbuf_high_watermark=high,
                                         channel_timeout=patience)
        self.total_outbufs_len = 0
        self.outbuf_lock = threading.Condition()
        self.connected = True
        self.triggers = 0
        self.server = types.SimpleNamespace(pull_trigger=self.pull_trigger)

    def pull_trigger(self):
        self.triggers += 1


class Task:
    """What a stream job uses of waitress's task: the response start_response
    gave it, write() (which sends status and headers first) and finish()."""

    def __init__(self, disconnect_after=None):
        self.status = "200 OK"
        self.response_headers = [("Content-Type", "text/csv"), ("X-View", "1")]
        self.content_length = None
        self.content_bytes_written = 0
        self.close_on_finish = False
        self.request = types.SimpleNamespace(command="GET", path="/export")
        self.disconnect_after = disconnect_after
        self.sent_status = None
        self.sent_headers = None
        self.written = []
        self.finished = 0

    def write(self, data):
        if self.disconnect_after is not None and (
                len(self.written) >= self.disconnect_after):
            raise ClientDisconnected("the client is gone")
        if self.sent_status is None:
            self.sent_status = self.status
            self.sent_headers = list(self.response_headers)
        self.written.append(data)
        self.content_bytes_written += len(data)

    def finish(self):
        self.finished += 1

    @property
    def body(self):
        return b"".join(self.written)


class Stream:
    """A handed-off AsyncWorkerStreamIterator: its promise runs fn."""

    name = "export_csv"
    # What the job asks of it (IHandedOff), as the real one answers.
    deadline = None
    start_work = AsyncWorkerStreamIterator.start_work
    stop_work = AsyncWorkerStreamIterator.stop_work
    finished = AsyncWorkerStreamIterator.finished
    fallback = AsyncWorkerStreamIterator.fallback

    def __init__(self, result=b"", error=None, during=None, executor="threads"):
        self.result = result
        self.error = error
        self.during = during  # what happens elsewhere while fn runs
        self.calls = 0
        self.promise = Promise(executor=executor, shared=False, key="stream",
                               name=self.name, pickled=None, run=self.call)

    def call(self):
        self.calls += 1
        if self.during is not None:
            self.during()
        if self.error is not None:
            raise self.error
        return self.result

    def prepare(self, result, view_status, view_headers):
        return prepare(result, view_status, view_headers)


class Promise(types.SimpleNamespace):
    def __call__(self):
        return self.run()


class Output:
    """fn's output: chunks, optionally doing something before one of them;
    records that it was closed."""

    def __init__(self, chunks, before=None):
        self.chunks = list(chunks)
        self.before = before or {}
        self.closed = 0

    def __iter__(self):
        for index, chunk in enumerate(self.chunks):
            if index in self.before:
                self.before[index]()
            yield chunk

    def close(self):
        self.closed += 1


class Harness:
    """A StreamJob on a real core Runtime whose executors the test settles:
    ``fns`` (the threads executor fn runs on) and ``pool`` (the stream
    pool the pump runs on)."""

    def __init__(self, result=b"", error=None, task=None, channel=None,
                 pool=None, fns=None, timeout=5.0, **settings):
        self.clock = FakeClock()
        self.deadlines = manual_deadlines(self.clock)
        self.pool = pool if pool is not None else ManualExecutor()
        self.fns = fns if fns is not None else ManualExecutor()
        self.runtime = Runtime(
            Settings(timeout=timeout, retry_after=7, **settings),
            executors={"streams": self.pool, "threads": self.fns},
            deadlines=self.deadlines, clock=self.clock)
        self.channel = channel or Channel()
        self.task = task or Task()
        self.stream = Stream(result, error)
        self.done = []
        self.job = StreamJob(self.channel, self.task, self.stream,
                             on_done=self.done.append, runtime=self.runtime)

    def start(self):
        return self.job.start()

    def fn_starts(self):
        """fn's executor picks fn up (it can no longer be cancelled)."""
        assert self.fns.calls[-1][0].set_running_or_notify_cancel()

    def run_fn(self):
        """fn's executor runs it (to the end); then the stream pool runs the
        pump until it ends or parks."""
        future, fn, args = self.fns.calls[-1]
        if future.running():
            try:
                future.set_result(fn(*args))
            except Exception as exc:
                future.set_exception(exc)
        else:
            self.fns.run(len(self.fns.calls) - 1)
        self.pump()

    def pump(self):
        """Run the pump steps queued on the stream pool (and those they
        queue); how many ran."""
        ran = index = 0
        while index < len(self.pool.calls):
            if not self.pool.calls[index][0].done():
                self.pool.run(index)
                ran += 1
            index += 1
        return ran

    def time_passes(self, seconds):
        self.clock.advance(seconds)
        return self.deadlines.run_due()

    def outcome(self):
        assert self.done == [self.job], "on_done must be called exactly once"
        [(outcome, count)] = self.runtime.metrics.streams.items()
        assert count == 1
        assert self.runtime.open_streams == 0, "the stream must be closed"
        return outcome


def header(headers, name):
    return dict((n.lower(), v) for n, v in headers).get(name.lower())


def test_a_stream_job_is_a_detached_job():
    job = Harness().job
    assert verifyObject(IDetachedJob, job)
    assert job.state == "pending" and job.timeout == 5.0


def test_fn_runs_on_its_executor_and_the_output_on_the_stream_pool():
    h = Harness(result=b"x")
    assert h.runtime.streams is h.pool
    h.start()
    [(future, fn, args)] = h.fns.calls
    assert h.job._future is future
    assert h.pool.calls == []  # no thread waits for fn
    assert h.done == []  # nothing ends before fn or the deadline
    assert h.runtime.open_streams == 1
    h.fns.run(0)
    [(_, pump, _)] = h.pool.calls  # fn done: the output's pump is queued
    assert pump == h.job._pump
    h.pump()
    assert h.task.body == b"x" and h.outcome() == "complete"


# the race for the first byte

def test_fn_returns_before_the_deadline_its_output_is_streamed():
    h = Harness(result=b"a,b\n1,2\n")
    h.start()
    h.time_passes(4.9)
    h.run_fn()
    assert h.task.sent_status == "200 OK"
    assert header(h.task.sent_headers, "Content-Type") == "text/csv"
    assert header(h.task.sent_headers, "Content-Length") == "8"
    assert h.task.body == b"a,b\n1,2\n" and h.task.finished == 1
    assert not h.task.close_on_finish
    assert h.job.state == "streaming" and h.job.sent == 8
    # The deadline was disarmed: nothing fires, nothing is written again.
    assert h.time_passes(10) == 0
    h.job.cancel("late hang-up")
    h.job.refuse("late shutdown")
    assert h.outcome() == "complete" and h.task.finished == 1


def test_the_deadline_first_504_and_the_late_output_is_closed(caplog):
    output = io.BytesIO(b"too late")
    h = Harness(result=output)
    h.start()
    h.fn_starts()
    assert h.time_passes(5.0) == 1
    assert h.task.sent_status == "504 Gateway Timeout"
    assert h.task.body == b"Gateway Timeout\n" and h.task.finished == 1
    assert "produced nothing within 5 s: 504" in caplog.text
    assert h.done == [h.job]
    h.run_fn()  # fn finishes after all
    assert h.stream.calls == 1
    assert output.closed  # discarded, never sent
    assert h.task.body == b"Gateway Timeout\n"
    assert h.outcome() == "timed out"


def test_the_deadline_while_fn_runs():
    output = Output([b"late"])
    h = Harness(result=output)
    h.stream.during = lambda: h.time_passes(5.0)  # the deadline thread wins
    h.start()
    h.run_fn()
    assert h.task.sent_status == "504 Gateway Timeout"
    assert output.closed == 1 and b"late" not in h.task.body
    assert h.outcome() == "timed out"


def test_cancel_first_fn_never_runs(caplog):
    h = Harness(result=b"never")
    h.start()
    with caplog.at_level(logging.INFO, "collective.futures"):
        h.job.cancel("the client disconnected")
    assert h.fns.calls[0][0].cancelled()
    assert h.task.close_on_finish and h.task.written == []
    assert "the client disconnected before its first byte" in caplog.text
    h.run_fn()
    assert h.stream.calls == 0
    assert h.time_passes(10) == 0  # the deadline was disarmed
    h.job.cancel("again")
    h.job.refuse("the server is shutting down")
    assert h.task.written == []
    assert h.outcome() == "cancelled"


def test_cancel_while_fn_runs_its_output_is_closed():
    output = Output([b"unwanted"])
    h = Harness(result=output)
    h.stream.during = lambda: h.job.cancel("the client disconnected")
    h.start()
    h.run_fn()
    assert output.closed == 1
    assert h.task.written == [] and h.task.close_on_finish
    assert h.outcome() == "cancelled"


def test_the_deadline_after_a_cancel_does_nothing():
    h = Harness()
    h.start()
    h.job.cancel("gone")
    h.job._expire()
    assert h.task.written == []
    assert h.outcome() == "cancelled"


# refusal (graceful shutdown, a full stream pool)

def test_refuse_before_the_first_byte_is_the_503():
    h = Harness(result=b"never")
    h.start()
    h.job.refuse("the server is shutting down")
    assert h.task.sent_status == "503 Service Unavailable"
    assert header(h.task.sent_headers, "Retry-After") == "7"
    assert h.task.body == (b"Service Unavailable: the server is shutting "
                           b"down; retry later\n")
    assert h.task.finished == 1
    assert h.fns.calls[0][0].cancelled()
    h.run_fn()
    assert h.stream.calls == 0
    assert h.time_passes(10) == 0
    assert h.outcome() == "refused"


def test_refuse_while_fn_runs_the_503_wins_and_the_output_is_closed():
    output = Output([b"unwanted"])
    h = Harness(result=output)
    h.stream.during = lambda: h.job.refuse("the server is shutting down")
    h.start()
    h.run_fn()
    assert h.task.sent_status == "503 Service Unavailable"
    assert output.closed == 1 and b"unwanted" not in h.task.body
    assert h.outcome() == "refused"


def test_refuse_after_streaming_started_is_a_no_op():
    h = Harness()
    output = Output([b"one,", b"two"], before={
        1: lambda: h.job.refuse("the server is shutting down")})
    h.stream.result = output
    h.start()
    h.run_fn()
    assert h.task.sent_status == "200 OK"
    assert h.task.body == b"one,two" and h.task.finished == 1
    assert output.closed == 1
    assert h.outcome() == "complete"


def test_past_max_streams_a_503_naming_it_and_logged(caplog):
    # The message named max_queue and "promises", and nothing was logged.
    h = Harness(max_streams=1)
    assert h.runtime.open_stream() is None  # another stream is open
    with caplog.at_level(logging.WARNING, "collective.futures"):
        h.start()
    assert h.task.sent_status == "503 Service Unavailable"
    assert b"1 streams are open (max_streams)" in h.task.body
    assert "refused with a 503" in caplog.text and "(max_streams)" in caplog.text
    assert h.fns.calls == []  # fn never submitted
    assert h.runtime.open_streams == 1  # the other one's, still open
    h.runtime.close_stream()
    assert h.outcome() == "refused"


def test_a_full_executor_is_a_503_naming_it():
    class Full(ManualExecutor):
        def submit(self, fn, /, *args, **kwargs):
            raise ExecutorFullError("collective.futures-threads: 3 promises "
                                    "already wait for a worker (max_queue)")

    h = Harness(fns=Full())
    h.start()
    assert h.task.sent_status == "503 Service Unavailable"
    assert b"3 promises already wait for a worker (max_queue)" in h.task.body
    assert h.time_passes(10) == 0  # its deadline was disarmed
    assert h.outcome() == "refused"


# failures before and after the first byte

def test_fn_raising_before_the_first_byte_is_a_500(caplog):
    h = Harness(error=LookupError("upstream down"))
    h.start()
    h.run_fn()
    assert h.task.sent_status == "500 Internal Server Error"
    assert h.task.body == b"Internal Server Error\n"
    assert "raised before its first byte: 500" in caplog.text
    assert "upstream down" in caplog.text  # the traceback
    assert h.time_passes(10) == 0
    assert h.outcome() == "failed"


def test_output_that_cannot_be_sent_is_a_500():
    h = Harness(result=42)
    h.start()
    h.run_fn()
    assert h.task.sent_status == "500 Internal Server Error"
    assert h.outcome() == "failed"


def test_fn_raising_after_the_deadline_changes_nothing():
    h = Harness(error=LookupError("upstream down"))
    h.start()
    h.time_passes(5)
    h.run_fn()
    assert h.task.sent_status == "504 Gateway Timeout"
    assert h.task.finished == 1
    assert h.outcome() == "timed out"


def test_a_body_shorter_than_its_content_length_is_truncated(caplog):
    h = Harness(result=StreamResult(iter([b"abc"]), content_length=10))
    h.start()
    h.run_fn()
    assert h.task.content_length == 10
    assert h.task.body == b"abc"
    assert h.task.finished == 0  # no terminating chunk: the client sees it
    assert h.task.close_on_finish
    assert "wrote 3 bytes of its Content-Length 10" in caplog.text
    assert h.outcome() == "truncated"


def test_fn_s_status_and_headers_replace_the_view_s():
    h = Harness(result=StreamResult(b"{}", status=201,
                                    content_type="application/json",
                                    filename="data.json"))
    h.start()
    h.run_fn()
    assert h.task.sent_status == "201 Created"
    headers = h.task.sent_headers
    assert header(headers, "Content-Type") == "application/json"
    assert header(headers, "X-View") == "1"
    assert header(headers, "Content-Disposition") == (
        'attachment; filename="data.json"')
    assert h.outcome() == "complete"


def test_the_client_disconnecting_mid_stream(caplog):
    output = Output([b"a", b"b", b"c"])
    h = Harness(result=output, task=Task(disconnect_after=1))
    h.start()
    with caplog.at_level(logging.INFO, "collective.futures"):
        h.run_fn()
    assert h.task.body == b"a" and h.job.sent == 1
    assert h.task.close_on_finish and h.task.finished == 0
    assert output.closed == 1
    assert "stopped: the client disconnected" in caplog.text
    assert h.outcome() == "client gone"


def test_fn_s_output_raising_mid_stream_truncates(caplog):
    def output():
        yield b"first"
        raise OSError("disk gone")

    h = Harness(result=output())
    h.start()
    h.run_fn()
    assert h.task.body == b"first"
    assert h.task.close_on_finish and h.task.finished == 0
    assert "raised after its first byte" in caplog.text
    assert h.outcome() == "truncated"


def test_a_failing_close_is_logged(caplog):
    class BadClose(Output):
        def close(self):
            raise OSError("close failed")

    h = Harness(result=BadClose([b"x"]))
    h.start()
    h.run_fn()
    assert "closing the output of stream export_csv failed" in caplog.text
    assert h.outcome() == "complete"


def test_an_error_response_to_a_gone_client():
    h = Harness(task=Task(disconnect_after=0))
    h.start()
    h.time_passes(5)
    assert h.task.written == [] and h.task.close_on_finish
    assert h.outcome() == "timed out"


def test_an_error_response_that_fails_otherwise_is_logged(caplog):
    h = Harness()

    def broken(data):
        raise RuntimeError("task broken")

    h.task.write = broken
    h.start()
    h.job.refuse("the server is shutting down")
    assert h.task.close_on_finish
    assert "sending the error response of stream export_csv failed" in caplog.text
    assert h.outcome() == "refused"


def test_the_request_log_line(caplog):
    h = Harness(result=b"12345")
    h.start()
    with caplog.at_level(logging.INFO, "collective.futures.requests"):
        h.run_fn()
    [record] = [r for r in caplog.records
                if r.name == "collective.futures.requests"]
    assert record.getMessage().startswith(
        "GET /export: stream export_csv threads: complete, 5 bytes in ")
    assert h.outcome() == "complete"


def test_the_request_log_line_is_one_line_whatever_the_path(caplog):
    h = Harness(result=b"12345")
    h.task.request.path = "/export\nINFO [collective.futures.requests] GET /x"
    h.start()
    with caplog.at_level(logging.INFO, "collective.futures.requests"):
        h.run_fn()
    [record] = [r for r in caplog.records
                if r.name == "collective.futures.requests"]
    assert "\n" not in record.getMessage()
    assert record.getMessage().startswith(
        "GET /export\\nINFO [collective.futures.requests] GET /x: stream ")


# waiting for room in waitress's output buffer: the pump parks

def buffering(h):
    """The task's writes stay in waitress's buffer until send() is called."""
    original = h.task.write

    def write(data):
        original(data)
        h.channel.total_outbufs_len += len(data)

    h.task.write = write

    def send(count=None):  # the main loop sends, then wakes a parked pump
        h.channel.total_outbufs_len -= (
            h.channel.total_outbufs_len if count is None else count)
        h.job.drained()

    return send


def test_a_full_buffer_parks_the_pump_and_gives_its_thread_back():
    output = Output([b"12345", b"67890"])
    h = Harness(result=output, channel=Channel(high=3))
    send = buffering(h)
    h.start()
    h.run_fn()
    # One chunk went into the empty buffer; past the mark the pump parked:
    # its step is over (no thread waits), the main loop was woken to send.
    assert h.task.body == b"12345"
    assert h.job._parked and len(h.pool.calls) == 1 and h.pool.calls[0][0].done()
    assert h.channel.triggers == 1
    send(1)  # still past the mark: the pump stays parked
    assert h.job._parked and h.pump() == 0
    send()
    assert not h.job._parked and h.pump() == 1  # woken: a new step
    assert h.task.body == b"1234567890"
    send()
    assert h.pump() == 1
    assert h.task.finished == 1 and output.closed == 1
    assert h.outcome() == "complete"


def test_room_that_comes_while_parking_lets_the_same_step_go_on():
    output = Output([b"12345", b"67890"])
    h = Harness(result=output, channel=Channel(high=4))
    buffering(h)
    # The main loop sends everything as soon as it is woken, before the
    # pump has finished parking.
    h.channel.server.pull_trigger = lambda: setattr(h.channel, "total_outbufs_len", 0)
    h.start()
    h.run_fn()
    assert len(h.pool.calls) == 1  # one step did it all
    assert h.task.body == b"1234567890" and h.outcome() == "complete"


def test_a_hang_up_wakes_a_parked_pump_which_closes_the_output(caplog):
    output = Output([b"12345", b"67890"])
    h = Harness(result=output, channel=Channel(high=4))
    buffering(h)
    h.start()
    h.run_fn()
    assert h.job._parked
    h.channel.connected = False
    with caplog.at_level(logging.INFO, "collective.futures"):
        h.job.cancel("the connection closed")
        assert h.pump() == 1
    assert output.closed == 1 and h.task.close_on_finish
    assert "stopped: the client disconnected" in caplog.text
    assert h.outcome() == "client gone"


def test_a_client_that_reads_nothing_stalls_the_stream(caplog):
    output = Output([b"12345", b"67890"])
    h = Harness(result=output, channel=Channel(high=4, patience=120))
    buffering(h)
    h.start()
    h.run_fn()
    h.time_passes(119)
    assert h.job._parked and h.done == []
    h.time_passes(1)
    with caplog.at_level(logging.INFO, "collective.futures"):
        assert h.pump() == 1
    assert "the client read nothing for 120 s" in caplog.text
    assert output.closed == 1 and h.task.close_on_finish
    assert h.outcome() == "client gone"


def test_a_client_that_reads_slowly_is_not_stalled():
    output = Output([b"x" * 400, b"last"])
    h = Harness(result=output, channel=Channel(high=100, patience=120))
    send = buffering(h)
    h.start()
    h.run_fn()
    h.time_passes(100)
    send(100)  # progress, still past the mark: no wake-up
    h.time_passes(20)  # the first stall check sees the progress
    assert h.job._parked and h.done == []
    h.time_passes(119)
    assert h.job._parked and h.done == []
    h.time_passes(1)  # 120 s after the check that saw progress: stalled
    h.pump()
    assert h.outcome() == "client gone"


def test_drained_without_a_parked_pump_does_nothing():
    h = Harness(result=b"x")
    h.start()
    h.job.drained()
    assert h.pool.calls == []


# set_response, and a run on the real stream pool

def test_set_response_replaces_status_headers_and_length():
    task = Task()
    task.content_length = 99
    set_response(task, "201 Created", [("content-length", "3"), ("X", "y")])
    assert (task.status, task.response_headers, task.content_length) == (
        "201 Created", [("content-length", "3"), ("X", "y")], 3)
    set_response(task, "200 OK", [])
    assert task.content_length is None


def test_a_stream_on_the_real_pools():
    seen = []

    def output():
        seen.append(("output", threading.current_thread().name, getRequest()))
        yield b"from a stream thread"

    class Inside(Stream):
        def call(self):
            seen.append(("fn", threading.current_thread().name))
            return output()

    clock = FakeClock()
    runtime = Runtime(Settings(max_streams=1), deadlines=manual_deadlines(clock),
                      clock=clock)
    done = []
    task = Task()
    try:
        job = StreamJob(Channel(), task, Inside(), on_done=done.append,
                        runtime=runtime).start()
        wait_for(lambda: done, message="the stream to be written")
        assert done == [job]
        assert seen == [("fn", "collective.futures-worker-1"),
                        ("output", "collective.futures-stream-1", NO_REQUEST)]
        assert task.body == b"from a stream thread" and task.finished == 1
        assert runtime.metrics.streams == {"complete": 1}
        assert runtime.open_streams == 0
    finally:
        runtime.shutdown()


def test_an_async_output_is_pumped_on_the_loop_without_a_thread():
    seen = []

    async def output():
        for chunk in (b"a", b"b"):
            seen.append(threading.current_thread().name)
            yield chunk

    class Async(Stream):
        def call(self):
            return output()

    clock = FakeClock()
    runtime = Runtime(Settings(), deadlines=manual_deadlines(clock), clock=clock)
    done = []
    task = Task()
    try:
        job = StreamJob(Channel(), task, Async(), on_done=done.append,
                        runtime=runtime).start()
        wait_for(lambda: done, message="the stream to be written")
        assert done == [job] and task.body == b"ab" and task.finished == 1
        assert seen == ["collective.futures-asyncio"] * 2
        assert runtime.metrics.streams == {"complete": 1}
        # The stream pool was never started: no thread iterated the output.
        assert "streams" not in runtime.executor_gauges()
    finally:
        runtime.shutdown()


def test_a_finished_job_lets_go_of_its_owner_and_of_fn_s_future():
    # The channel's detachment holds the job and the job's on_done holds
    # the detachment; fn's future keeps its done-callback (the job): cycles
    # that outlived every stream until the garbage collector ran.
    import gc
    import weakref

    h = Harness(result=b"done")
    owner = types.SimpleNamespace(job=h.job)  # the channel's detachment
    record = h.job.on_done
    h.job.on_done = lambda job: (record(job), owner)  # holds it, as the channel's
    h.start()
    h.run_fn()
    assert h.outcome() == "complete"
    assert h.job.on_done is None and h.job._future is None
    alive = weakref.ref(owner.job)
    h.job = record = None
    h.done.clear()
    h.fns.calls.clear()
    h.pool.calls.clear()
    gc.collect()
    gc.disable()
    try:
        del owner
        assert alive() is None  # freed at once
    finally:
        gc.enable()
