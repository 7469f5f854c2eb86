"""Deadlines, hang-ups, stopping, configuration errors: each with its own
small Zope instance (real waitress, real sockets)."""

import concurrent.futures
import json
import re
import signal
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
