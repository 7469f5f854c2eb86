"""The waitress glue against a real waitress server in this process, with a
plain WSGI app (no Zope): the internals listed in
collective/futures/server/internals.py, exercised."""

import threading
import time

import pytest
import waitress.server
import waitress.wasyncore

import rawhttp
from collective.futures import runtime as runtime_module
from collective.futures import server as glue
from collective.futures.core.promise import Promise
from collective.futures.core.state import RequestFutures
from collective.futures.interfaces import STATE_KEY, SUSPEND_KEY
from collective.futures.interfaces import SuspendRequest
from collective.futures.server import internals
from collective.futures.server.channel import FuturesChannel
from collective.futures.settings import Settings


class App:
    """Pass 1 submits ``promise`` and suspends; pass 2 shows its outcome and
    the body it read (read in both passes)."""

    def __init__(self):
        self.promise_fn = lambda: "value"
        self.passes = []

    def __call__(self, environ, start_response):
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        path = environ["PATH_INFO"]
        self.passes.append((path, environ.get(SUSPEND_KEY), body))
        if path == "/plain":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"plain"]
        state = environ.get(STATE_KEY)
        if state is None:
            state = RequestFutures()
            state.pending["k"] = Promise("k", self.promise_fn)
            raise SuspendRequest(state)
        outcome = state.resolved["k"]
        text = repr(outcome.error) if outcome.error else outcome.value
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{text}|{body.decode()}".encode()]


@pytest.fixture
def served():
    old = runtime_module._runtime
    runtime_module.configure(Settings(max_workers=1, timeout=5))
    app = App()
    server = waitress.server.create_server(
        app, host="127.0.0.1", port=0, threads=1, clear_untrusted_proxy_headers=True)
    server.channel_class = FuturesChannel  # per server: no global patch here
    app.server = server
    thread = threading.Thread(target=server.run, name="test-waitress-loop",
                              daemon=True)
    thread.start()
    yield app, ("127.0.0.1", server.effective_port)
    # Closed on the loop's own thread: closing its sockets from here raced
    # its select() (EBADF in the loop thread, seen on Python 3.13). With
    # every socket of its map closed, the loop ends.
    server.trigger.pull_trigger(lambda: waitress.wasyncore.close_all(server._map))
    thread.join(10)
    assert not thread.is_alive(), "the waitress loop did not end"
    server.task_dispatcher.shutdown(timeout=5)
    runtime_module.get_runtime().shutdown()
    runtime_module._runtime = old


def test_this_waitress_provides_every_internal_we_rely_on():
    assert internals.check() == []


def test_the_only_worker_is_free_while_a_request_is_suspended(served):
    app, address = served
    release = threading.Event()
    app.promise_fn = lambda: "released" if release.wait(10) else "timeout"
    with rawhttp.Connection(address) as slow, rawhttp.Connection(address) as fast:
        slow.send(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody")
        time.sleep(0.2)
        # threads = 1, and that thread is not held by the suspended request.
        fast.send(rawhttp.get("/plain"))
        assert fast.read_response()[2] == b"plain"
        release.set()
        status, _, body = slow.read_response()
    assert (status, body) == (200, b"released|body")
    # Both passes read the whole body: pass 2 got it rewound.
    assert [p for p in app.passes if p[0] == "/slow"] == [
        ("/slow", "waitress", b"body"), ("/slow", "waitress", b"body")]


def test_a_hang_up_cancels_the_round_and_nothing_is_rendered(served):
    app, address = served
    blocker = threading.Event()
    started = []
    runtime = runtime_module.get_runtime()
    # Occupy the only side thread so the next promise stays queued.
    busy = runtime.executor.submit(blocker.wait, 10)
    app.promise_fn = lambda: started.append(1)
    conn = rawhttp.Connection(address)
    conn.send(rawhttp.get("/gone"))
    time.sleep(0.2)
    conn.close()
    time.sleep(0.3)
    blocker.set()
    busy.result(5)
    time.sleep(0.2)
    assert started == []  # the queued promise was dropped
    assert [p[0] for p in app.passes] == ["/gone"]  # no second pass
    with rawhttp.Connection(address) as again:
        again.send(rawhttp.get("/plain"))
        assert again.read_response()[2] == b"plain"


def test_each_resumed_request_releases_its_fairness_slot_once(served):
    # A slot not released would starve resumed requests; one released by
    # a pass that held none (a plain request, a first pass) would lift the
    # bound: after the load, the gate holds nothing and owes nothing.
    from conftest import wait_for
    from collective.futures.server.fairness import gate_for

    app, address = served
    gate = gate_for(app.server, "auto")
    connections = [rawhttp.Connection(address) for _ in range(3)]
    try:
        for _ in range(2):  # keep-alive: each connection serves 4 requests
            for conn in connections:
                conn.send(rawhttp.get("/slow") + rawhttp.get("/plain"))
            for conn in connections:
                assert conn.read_response()[2] == b"value|"
                assert conn.read_response()[2] == b"plain"
    finally:
        for conn in connections:
            conn.close()
    assert len([p for p in app.passes if p[0] == "/slow"]) == 12  # 6 x 2 passes
    wait_for(lambda: (gate._active, gate.waiting) == (0, 0),
             message=f"the gate to be empty (active {gate._active})")
    wait_for(lambda: not app.server.active_channels,
             message="the server to close the three connections")


def poll_default(**options):
    # clear_untrusted_proxy_headers: waitress 2.0 warns without it.
    return internals.Adjustments(clear_untrusted_proxy_headers=True,
                                 **options).asyncore_use_poll


def test_install_and_uninstall():
    server_class = internals.BaseWSGIServer
    assert server_class.channel_class is internals.HTTPChannel
    assert poll_default() is False  # stock
    try:
        assert glue.install() is True
        assert server_class.channel_class is FuturesChannel
        # select() dies past descriptor 1023: the package's servers poll,
        # unless the configuration says otherwise.
        assert poll_default() is True
        assert poll_default(asyncore_use_poll=False) is False
        assert glue.install() is True  # idempotent
    finally:
        glue.uninstall()
    assert server_class.channel_class is internals.HTTPChannel
    assert poll_default() is False


def test_install_refuses_a_channel_class_replaced_by_someone_else(caplog):
    class Other(internals.HTTPChannel):
        pass

    server_class = internals.BaseWSGIServer
    server_class.channel_class = Other
    try:
        assert glue.install() is False
        assert server_class.channel_class is Other
        assert "already replaced by" in caplog.text
    finally:
        glue.uninstall()
