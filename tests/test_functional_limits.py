"""Deadlines, hang-ups, stopping, configuration errors: each with its own
small Zope instance (real waitress, real sockets)."""

import concurrent.futures
import json
import re
import signal
import socket
import time

import pytest

import rawhttp
from conftest import wait_for


pytestmark = pytest.mark.functional


def test_a_promise_past_its_timeout_raises_in_pass_two(make_zope):
    zope = make_zope(product_config={"timeout": "1", "max_workers": "2"})
    start = time.monotonic()
    status, body = zope.get("/@@timeout?delay=3")
    took = time.monotonic() - start
    assert status == 200
    assert body == "timed out: promise 'hang' did not finish within 1 s"
    assert 0.9 < took < 2.5, took
    # The abandoned promise was logged, and the server goes on serving.
    assert re.search(r"1 abandoned .*: hang", zope.log())
    assert zope.get("/@@plain") == (200, "plain page")
    assert zope.get("/@@slow-futures?delay=0.1") == (200, "futures: slow after 0.1s")


def test_a_client_that_hangs_up_while_suspended_is_noticed(make_zope):
    """Promises not yet started are skipped and pass 2 is never rendered."""
    zope = make_zope(product_config={"max_workers": "2"})
    conn = rawhttp.Connection(zope.address)
    conn.send(rawhttp.get("/@@parallel?n=6&delay=1&counter=gone"))
    wait_for(lambda: zope.counters().get("gone.started") == 2,
             message="two promises started")
    conn.close()
    wait_for(lambda: zope.counters().get("gone.finished") == 2,
             message="the two started promises finished")
    # Both pool threads are free again: a full round still works. Its
    # promises queue behind any of the 4 others not skipped, so once it
    # is done, those would have started.
    assert zope.get("/@@parallel?n=2&delay=0.1&counter=after")[0] == 200
    seen = zope.counters()
    assert seen["after.renders"] == 1
    assert seen["gone.started"] == 2, seen  # the rest never started
    assert "gone.renders" not in seen


def _half_closed_request(zope, path):
    """Send ``path``, shut the sending side (half-close), read the answer."""
    sock = socket.create_connection(zope.address, timeout=15)
    try:
        sock.sendall(rawhttp.get(path, extra="Connection: close\r\n"))
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while True:
            data = sock.recv(65536)
            if not data:
                return received
            received += data
    finally:
        sock.close()


@pytest.mark.parametrize("path, body", [
    ("/@@slow-futures?delay=0.5", b"futures: slow after 0.5s"),
    ("/@@stream?kind=bytes&delay=0.5", b"streamed"),
])
def test_a_half_closed_client_is_answered_when_hangups_are_not_watched(
        make_zope, path, body):
    zope = make_zope(product_config={"watch_hangups": "false"})
    # The control: a blocking view answers a half-closed client.
    assert _half_closed_request(zope, "/@@plain").endswith(b"plain page")
    answer = _half_closed_request(zope, path)
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(body), answer


def test_unwatched_a_hang_up_is_noticed_when_the_response_is_written(make_zope):
    zope = make_zope(product_config={"watch_hangups": "false"})
    conn = rawhttp.Connection(zope.address)
    conn.send(rawhttp.get("/@@slow-futures?delay=0.5&counter=unwatched"))
    wait_for(lambda: suspended(zope) == 1, message="the request suspended")
    conn.close()
    # Its promise runs on and its page is rendered for nobody; then the
    # connection is closed and nothing is held.
    wait_for(lambda: zope.counters().get("slow-futures.passes") == 2,
             message="the second pass")
    wait_for(lambda: suspended(zope) == 0, message="nothing suspended")
    assert zope.get("/@@plain") == (200, "plain page")


def test_by_default_a_half_closed_client_is_taken_for_gone(make_zope):
    # What watch_hangups (on) trades: promises of clients that hang up are
    # dropped at once, and a half-close looks the same as a hang-up.
    zope = make_zope()
    assert _half_closed_request(zope, "/@@slow-futures?delay=0.5") == b""
    assert zope.get("/@@plain") == (200, "plain page")


def suspended(zope):
    """Requests suspended now, from the metrics."""
    status, _, body = zope.request("/@@futures-metrics",
                                   headers=zope.admin_headers())
    assert status == 200
    return json.loads(body)["suspended"]


def read_until_closed(address, path, timeout):
    with rawhttp.Connection(address, timeout=timeout) as conn:
        conn.send(rawhttp.get(path))
        try:
            status, headers, body = conn.read_response()
            return status, headers.get("retry-after"), body
        except (ConnectionError, OSError):
            return "closed"


def test_sigterm_lets_suspended_requests_finish_within_the_grace(make_zope):
    zope = make_zope(product_config={"shutdown_grace": "10"})
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        clients = [pool.submit(read_until_closed, zope.address,
                               "/@@slow-futures?delay=1.5", 30) for _ in range(5)]
        wait_for(lambda: suspended(zope) == 5, message="5 requests suspended")
        start = time.monotonic()
        zope.process.send_signal(signal.SIGTERM)
        # Draining: a new request that would suspend is refused.
        wait_for(lambda: "draining 5 suspended request(s)" in zope.log(),
                 message="the drain started")
        late = read_until_closed(zope.address, "/@@slow-futures?delay=1", 10)
        outcomes = [c.result(timeout=30) for c in clients]
        zope.process.wait(20)
        stopped = time.monotonic() - start
    assert outcomes == [(200, None, b"futures: slow after 1.5s")] * 5
    assert late[0] == 503 and late[1] == "5"
    assert stopped < 5, stopped  # it did not wait for the grace to end
    assert "draining 5 suspended request(s) within 10 s" in zope.log()


def test_sigterm_answers_503_to_what_is_still_suspended_after_the_grace(make_zope):
    zope = make_zope(product_config={"shutdown_grace": "1"})
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        clients = [pool.submit(read_until_closed, zope.address,
                               "/@@slow-futures?delay=60", 30) for _ in range(5)]
        wait_for(lambda: suspended(zope) == 5, message="5 requests suspended")
        assert not any(c.done() for c in clients)
        start = time.monotonic()
        zope.process.send_signal(signal.SIGTERM)
        outcomes = [c.result(timeout=30) for c in clients]
        zope.process.wait(20)
        stopped = time.monotonic() - start
    # Nobody is left without an answer: a 503 with Retry-After each.
    assert [(o[0], o[1]) for o in outcomes] == [(503, "5")] * 5
    assert stopped < 8, stopped
    assert "answered 5 request(s) still suspended after 1 s with a 503" in zope.log()


@pytest.mark.parametrize("config, message", [
    ({"max_wrokers": "8"}, "unknown key 'max_wrokers'"),
    ({"timeout": "-1"}, "bad value '-1' for 'timeout'"),
    ({"max_passes": "one"}, "bad value 'one' for 'max_passes'"),
])
def test_bad_configuration_stops_startup_naming_the_key(make_zope, config, message):
    zope = make_zope(start=False, product_config=config)
    with pytest.raises(RuntimeError, match="Zope exited") as info:
        zope.start(timeout=60)
    assert "ConfigurationError" in str(info.value)
    assert message in str(info.value)


# descriptors: admission refuses before the budget is spent; accept never
# fails with EMFILE because of connections

def test_more_connections_than_descriptors_no_spin_no_flood(make_zope):
    # Before: with connection_limit above ulimit -n, accept() failed with
    # EMFILE on every loop iteration: 100 % CPU and ~2,000 log lines (a
    # traceback each) per second, until connections closed.
    zope = make_zope(nofile=200, server_extra="connection_limit = 1000")
    assert zope.get("/@@plain") == (200, "plain page")
    sockets = []
    try:
        for _ in range(250):
            sockets.append(socket.create_connection(zope.address, timeout=10))
        cpu = zope.cpu_seconds()
        time.sleep(2)
        assert zope.cpu_seconds() - cpu < 0.5  # idle, not spinning
        assert zope.process.poll() is None
    finally:
        for sock in sockets:
            sock.close()
    assert zope.get("/@@plain") == (200, "plain page")
    log = zope.log()
    assert "accept() threw an exception" not in log
    assert ("lowered waitress's connection_limit from 1000 to 100: this "
            "process may open 200 files (ulimit -n)") in log


def test_past_the_descriptor_budget_a_suspension_gets_a_503(make_zope):
    # ulimit -n 400 and descriptor_reserve 256: about 70 suspended requests
    # fit; the rest are refused before the process runs out.
    zope = make_zope(nofile=400, product_config={"max_workers": "200"},
                     server_extra="connection_limit = 1000")
    def ask(_):
        with rawhttp.Connection(zope.address) as connection:
            connection.send(rawhttp.get("/@@slow-futures?delay=5"))
            return connection.read_response()

    with concurrent.futures.ThreadPoolExecutor(120) as pool:
        answers = list(pool.map(ask, range(120)))
    statuses = [status for status, _, _ in answers]
    assert statuses.count(200) >= 40, statuses
    refused = [body for status, _, body in answers if status == 503]
    assert refused, statuses
    assert all(b"file descriptors are open (ulimit -n; descriptor_reserve 256)"
               in body for body in refused)
    assert set(statuses) <= {200, 503}
    assert zope.process.poll() is None
    assert zope.get("/@@slow-futures?delay=0.1") == (200, "futures: slow after 0.1s")
