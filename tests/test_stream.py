"""stream.py: AsyncWorkerStreamIterator, bound at IPubBeforeCommit and then
handed off or run inline, with a fake request and response and the
process's runtime replaced for the test (stream.py reads get_runtime()).
The hand-off itself is test_server_streaming.py's; a real Zope is
test_streams.py's."""

import concurrent.futures
import logging
import threading

import pytest
from zope.globalrequest import getRequest

from collective import futures
from collective.futures import runtime as runtime_module
from collective.futures.core.body import StreamResult
from collective.futures.core.runtime import Runtime
from collective.futures.interfaces import HANDOFF_KEY, SUSPEND_KEY, StreamHandoff
from collective.futures.settings import Settings
from collective.futures.stream import AsyncWorkerStreamIterator, run_and_prepare
from collective.futures import sandbox
from collective.futures.sandbox import NO_REQUEST

from fakes import FakeClock, ManualExecutor, manual_deadlines


def fn(*args):
    return args


def test_a_stream_cannot_be_shared(request_):
    with pytest.raises(TypeError, match="cannot be shared"):
        futures.AsyncWorkerStreamIterator(
            futures.promise(fn, shared=True), request_)
    with pytest.raises(TypeError, match="request must be the Zope request"):
        futures.AsyncWorkerStreamIterator(fn, object())


def test_a_stream_takes_no_on_error(request_):
    # A stream answers its own errors (500 before the first byte, a cut
    # body after): a fallback value would have nowhere to go.
    with pytest.raises(TypeError, match="on_error is for submit"):
        futures.AsyncWorkerStreamIterator(
            futures.promise(fn, on_error=b""), request_)
    futures.AsyncWorkerStreamIterator(futures.promise(fn), request_)  # control


# fakes

class Request:
    def __init__(self, method="GET", suspend=False, handoff=None):
        self.environ = {"REQUEST_METHOD": method}
        if suspend:
            self.environ[SUSPEND_KEY] = "waitress"
        if handoff is not None:
            self.environ[HANDOFF_KEY] = handoff


class Response:
    """What bind() uses of a ZPublisher response."""

    def __init__(self):
        self.status, self.errmsg = 200, "OK"
        self.headers = [("Content-Type", "text/html; charset=utf-8"),
                        ("Date", "today"), ("Server", "Zope"), ("X-View", "1")]
        self.set = []

    def listHeaders(self):
        return list(self.headers)

    def setStatus(self, code):
        self.status = code

    def setHeader(self, name, value):
        self.set.append((name, value))


class Output:
    def __init__(self, chunks):
        self.chunks = chunks
        self.closed = 0

    def __iter__(self):
        return iter(self.chunks)

    def close(self):
        self.closed += 1


class TimedOut(concurrent.futures.Future):
    """A future whose wait runs out at once (no real time passes)."""

    def __init__(self, cancels=True):
        super().__init__()
        self.cancels = cancels
        self.cancel_calls = 0

    def result(self, timeout=None):
        raise concurrent.futures.TimeoutError

    def cancel(self):
        self.cancel_calls += 1
        return self.cancels


class Late(ManualExecutor):
    def __init__(self, runs_in="threads", cancels=True):
        super().__init__(runs_in)
        self.cancels = cancels

    def submit(self, fn, /, *args, **kwargs):
        future = TimedOut(self.cancels)
        self.calls.append((future, fn, args))
        return future


@pytest.fixture
def runtime(monkeypatch):
    """A runtime of the test's own as the process's (stream.py reads
    get_runtime()); ``runtime.replace(**executors)`` swaps executors."""

    def make(settings=None, **executors):
        clock = FakeClock()
        made = Runtime(settings or Settings(timeout=5), executors=executors,
                       sandbox=sandbox, deadlines=manual_deadlines(clock),
                       clock=clock)
        monkeypatch.setattr(runtime_module, "_runtime", made)
        made_runtimes.append(made)
        return made

    made_runtimes = []
    make()
    yield make
    for made in made_runtimes:
        made.shutdown()


def server_loop(stream):
    """Stands for waitress's task loop: the one frame allowed a hand-off."""
    return next(stream)


# binding: HEAD, hand-off or inline

def test_head_sends_headers_only_and_never_runs_fn(runtime):
    ran = []
    stream = AsyncWorkerStreamIterator(lambda: ran.append(1), Request("HEAD"))
    stream.bind(Response())
    assert stream.mode == "head"
    assert list(stream) == [] and ran == []


def test_a_suspendable_request_hands_the_stream_off(runtime):
    stream = AsyncWorkerStreamIterator(
        fn, Request(suspend=True, handoff=server_loop.__code__), "x")
    stream.bind(Response())
    assert stream.mode == "handoff"
    with pytest.raises(StreamHandoff) as info:
        server_loop(stream)
    assert info.value.stream is stream and stream.handed_off
    stream.close()  # the side thread owns the output now: nothing to close


def test_a_wrapping_middleware_gets_it_inline(runtime, caplog):
    stream = AsyncWorkerStreamIterator(
        lambda: [b"a", b"b"], Request(suspend=True, handoff=server_loop.__code__))
    stream.bind(Response())

    def middleware(body):
        upper = []
        for chunk in body:
            upper.append(chunk.upper())
        return upper

    assert middleware(stream) == [b"A", b"B"]
    assert not stream.handed_off
    assert "test_stream.test_a_wrapping_middleware_gets_it_inline.<locals>." \
           "middleware wraps the stream iterator" in caplog.text


def test_with_suspend_off_the_stream_runs_inline(runtime):
    runtime(Settings(suspend=False))
    stream = AsyncWorkerStreamIterator(
        lambda: b"inline", Request(suspend=True, handoff=server_loop.__code__))
    stream.bind(Response())
    assert stream.mode == "inline"
    assert server_loop(stream) == b"inline"


def test_inline_fn_runs_in_the_side_pool_and_sets_status_and_headers(runtime):
    seen = []
    output = Output([b"1,", b"2"])

    def export():
        seen.append((threading.current_thread().name, getRequest()))
        return StreamResult(output, status=201, content_type="text/csv",
                            filename="data.csv")

    stream = AsyncWorkerStreamIterator(export, Request())
    response = Response()
    stream.bind(response)
    assert seen == [("collective.futures-worker-1", NO_REQUEST)]
    assert response.status == 201
    assert ("Content-Type", "text/csv") in response.set
    assert ("Content-Disposition", 'attachment; filename="data.csv"') in response.set
    assert ("X-View", "1") in response.set  # the view's kept
    assert not any(n in ("Date", "Server") for n, _ in response.set)
    assert list(stream) == [b"1,", b"2"]
    stream.close()
    assert output.closed == 1


@pytest.mark.parametrize("result, error", [
    (None, LookupError("upstream down")),  # fn raised
    (42, None),                            # output that cannot be sent
])
def test_inline_failure_is_a_500(runtime, caplog, result, error):
    def broken():
        if error is not None:
            raise error
        return result

    stream = AsyncWorkerStreamIterator(broken, Request())
    response = Response()
    stream.bind(response)
    assert response.status == 500
    assert list(stream) == [b"Internal Server Error\n"]
    assert "500" in caplog.text


def test_inline_fn_late_is_a_504(runtime, caplog):
    late = Late()
    runtime(Settings(timeout=5), threads=late)
    stream = AsyncWorkerStreamIterator(fn, Request())
    response = Response()
    stream.bind(response)
    assert response.status == 504
    assert list(stream) == [b"Gateway Timeout\n"]
    assert late.calls[0][0].cancel_calls == 1
    assert "produced nothing within 5 s: 504" in caplog.text


def test_a_stream_not_bound_runs_inline_with_a_warning(runtime, caplog):
    stream = AsyncWorkerStreamIterator(lambda: "text", Request())
    with caplog.at_level(logging.WARNING, "collective.futures"):
        assert list(stream) == [b"text"]
    assert "was not bound at IPubBeforeCommit" in caplog.text
    assert "mode=None" in repr(stream)


def test_run_and_prepare_without_a_view(runtime):
    stream = AsyncWorkerStreamIterator(lambda: b"x", Request())
    prepared = run_and_prepare(stream, None, [])
    assert prepared.status == "200 OK" and list(prepared.chunks) == [b"x"]


# where fn runs

def test_fn_on_another_executor_is_waited_for(runtime):
    async def coro(x):
        return x * 2

    stream = AsyncWorkerStreamIterator(coro, Request(), 21)
    assert stream.promise.executor == "asyncio"
    assert stream.call() == 42


@pytest.mark.parametrize("cancels, interrupted", [(True, []), (False, ["f"])])
def test_fn_on_another_executor_that_is_late(runtime, cancels, interrupted):
    late = Late(runs_in="loop", cancels=cancels)
    asked = []
    late.interrupt = lambda future: asked.append("f") or True
    runtime(Settings(timeout=5), asyncio=late)

    async def coro():
        return 1

    stream = AsyncWorkerStreamIterator(coro, Request())
    with pytest.raises(concurrent.futures.TimeoutError):
        stream.call()
    assert late.calls[0][0].cancel_calls == 1
    assert asked == interrupted  # stopped where it could not be cancelled


def test_an_async_generator_is_iterated_on_the_loop(runtime):
    closed = []

    async def numbers():
        try:
            for n in range(3):
                yield f"{n};{threading.current_thread().name}\n"
        finally:
            closed.append(True)

    stream = AsyncWorkerStreamIterator(numbers, Request())
    response = Response()
    stream.bind(response)
    lines = b"".join(stream).decode().splitlines()
    assert lines == [f"{n};collective.futures-asyncio" for n in range(3)]
    stream.close()
    assert closed == [True]


def test_an_async_generator_needs_the_package_s_asyncio_executor(runtime):
    runtime(Settings(timeout=5), asyncio=ManualExecutor(runs_in="loop"))

    async def numbers():
        yield b"x"

    stream = AsyncWorkerStreamIterator(numbers, Request())
    response = Response()
    stream.bind(response)
    assert response.status == 500  # TypeError: not collective.futures' own
