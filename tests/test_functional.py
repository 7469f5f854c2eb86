"""collective.futures in a real Zope, served by real waitress (runwsgi),
over real sockets: two passes, the worker freed in between, HTTP intact."""

import concurrent.futures
import hashlib
import http.client
import json
import re
import time
import urllib.parse
import uuid

import pytest

import rawhttp
from conftest import wait_for


pytestmark = pytest.mark.functional




def test_startup_says_which_mode_is_active(zope):
    assert "collective.futures ready: suspend mode under waitress" in zope.log()


def test_twenty_slow_requests_on_two_threads_do_not_block(zope):
    """threads = 2; 20 concurrent requests whose promise sleeps 1 s. Blocking
    needs 10 s; freed workers need about 1 s. A plain page stays fast."""
    results, total, probes = zope.load_with_probes("/@@slow-futures?delay=1", 20)
    assert {(s, b) for s, b, _ in results} == {(200, "futures: slow after 1s")}
    assert total < 5, total
    assert probes and max(probes) < 1.0, probes


def test_blocking_view_does_block(zope):
    """The control: the same wait done in the view holds a worker each."""
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        start = time.monotonic()
        results = list(pool.map(
            lambda _: zope.timed_get("/@@slow-blocking?delay=1"), range(4)))
        total = time.monotonic() - start
    assert all(s == 200 for s, _, _ in results)
    assert total >= 1.9, total


def test_promises_of_one_pass_run_concurrently(zope):
    status, body, took = zope.timed_get("/@@parallel?n=5&delay=1")
    assert status == 200
    assert body == "parallel: " + ", ".join(f"p{i} after 1s" for i in range(5))
    assert took < 2.5, took


def test_pass_one_writes_are_aborted(zope):
    assert zope.get("/@@write-then-futures") == (200, '["pass 2"]')
    assert zope.get("/@@write-then-futures") == (200, '["pass 2", "pass 2"]')


def test_keep_alive_connection_serves_several_futures_requests(zope):
    connection = http.client.HTTPConnection(*zope.address, timeout=30)
    try:
        for path, expected in [
            ("/@@slow-futures?delay=0.1", "futures: slow after 0.1s"),
            ("/@@plain", "plain page"),
            ("/@@slow-futures?delay=0.2", "futures: slow after 0.2s"),
        ]:
            connection.request("GET", path)
            sock = connection.sock
            response = connection.getresponse()
            assert (response.status, response.read().decode()) == (200, expected)
            assert connection.sock is sock  # the same connection, kept alive
    finally:
        connection.close()


def test_pipelined_requests_are_answered_in_order(zope):
    with rawhttp.Connection(zope.address) as conn:
        conn.send(
            rawhttp.get("/@@slow-futures?delay=0.5")
            + rawhttp.get("/@@plain")
            + rawhttp.get("/@@echo?x=3&delay=0.1")
            + rawhttp.get("/@@plain"))
        bodies = [conn.read_response() for _ in range(4)]
    assert [b[0] for b in bodies] == [200] * 4
    assert bodies[0][2] == b"futures: slow after 0.5s"
    assert bodies[1][2] == b"plain page"
    assert json.loads(bodies[2][2])["form"] == {"x": "3", "delay": "0.1"}
    assert bodies[3][2] == b"plain page"


def test_post_form_is_replayed_in_pass_two(zope):
    body = urllib.parse.urlencode({"a": "1", "name": "Zoë"}).encode()
    status, _, data = zope.request(
        "/@@echo", method="POST", body=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    data = json.loads(data)
    assert status == 200
    assert data["value"] == "echo after 0.2s"
    assert data["method"] == "POST"
    assert data["form"] == {"a": "1", "name": "Zoë"}


def multipart(fields, files):
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'
            f"\r\n\r\n{value}\r\n".encode())
    for name, (filename, content) in files.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream'
            f"\r\n\r\n".encode() + content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def test_large_multipart_upload_is_replayed_intact(zope):
    # 2 MB: far over waitress's in-memory limit, so the body lives in a
    # temporary file that pass 2 reads again.
    content = bytes(range(256)) * 8192
    body, content_type = multipart({"title": "big"}, {"upload": ("big.bin", content)})
    status, _, data = zope.request(
        "/@@echo", method="POST", body=body,
        headers={"Content-Type": content_type})
    data = json.loads(data)
    assert status == 200
    assert data["form"]["title"] == "big"
    assert data["upload_len"] == len(content)
    assert data["upload_name"] == "big.bin"
    assert data["upload_sha256"] == hashlib.sha256(content).hexdigest()


def test_expect_100_continue(zope):
    body = b"a=1&b=two"
    with rawhttp.Connection(zope.address) as conn:
        conn.send(
            b"POST /@@echo HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Expect: 100-continue\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode())
        status, _, _ = conn.read_response()
        assert status == 100
        conn.send(body)
        status, _, data = conn.read_response()
    assert status == 200
    assert json.loads(data)["form"] == {"a": "1", "b": "two"}


def test_non_ascii_path(zope):
    status, body = zope.get("/@@t%C3%ABst-%C3%A9ch%C3%B6?x=1")
    data = json.loads(body)
    assert status == 200
    assert data["value"] == "echo after 0.2s"
    assert data["path"] == "/@@tëst-échö"


def test_head_gets_headers_and_no_body(zope):
    status, headers, body = zope.request("/@@slow-futures?delay=0.2", method="HEAD")
    assert status == 200
    assert body == b""
    get_status, get_headers, get_body = zope.request("/@@slow-futures?delay=0.2")
    assert get_status == 200 and get_body
    # Present in both (two missing headers would compare equal), and equal.
    assert "Content-Type" in headers and "Content-Type" in get_headers
    assert headers["Content-Type"] == get_headers["Content-Type"]


def test_conflict_error_in_pass_two_is_retried_without_running_promises_again(zope):
    token = uuid.uuid4().hex[:8]
    status, body = zope.get(f"/@@conflict?token={token}")
    assert (status, body) == (200, "after conflict: c after 0.1s")
    seen = zope.counters()
    assert seen[f"conflict-{token}.started"] == 1
    assert seen[f"conflict-{token}.renders"] == 2


def test_promise_exception_is_raised_by_result_in_pass_two(zope):
    before = zope.log().count("ValueError: the promise failed")
    status, body = zope.get("/@@error-promise")
    assert (status, body) == (200, "promise raised ValueError: the promise failed")
    # The traceback is logged once, by the side thread it ran on.
    log = zope.log()
    assert log.count("ValueError: the promise failed") == before + 1
    assert re.search(r"ERROR \[collective\.futures\]\[collective\.futures-worker-\d+\] "
                     r"promise 'boom'", log)


def test_uncaught_promise_exception_is_an_error_response(zope):
    status, body = zope.get("/@@uncaught-error")
    assert status == 500
    assert "PLACEHOLDER" not in body


@pytest.mark.parametrize("name", ["SystemExit", "KeyboardInterrupt",
                                  "GeneratorExit"])
def test_a_promise_raising_a_base_exception_gets_its_request_answered(zope, name):
    # On c8bbd45 result() re-raised it in pass 2: it escaped ZPublisher and
    # waitress, and the request was never answered (the client hung).
    status, body = zope.get(f"/@@base-exception-promise?raise={name}")
    assert (status, body) == (
        200, f"aborted: promise 'abort' raised {name}: from a promise")
    assert zope.get("/@@plain")[0] == 200  # and the server serves on


def test_dependent_lookups_take_another_pass(zope):
    status, body = zope.get("/@@dependent?depth=2")
    assert (status, body) == (
        200, "dependent: start>d0 after 0.05s>d1 after 0.05s")


def test_too_many_passes_is_a_clear_error(zope):
    status, body = zope.get("/@@dependent?depth=3")
    assert status == 500
    assert "PLACEHOLDER" not in body
    assert ("TooManyPassesError: pass 3 submitted promises (d2) but "
            "max_passes is 3") in zope.log()


@pytest.mark.parametrize("case, message", [
    ("fn", "TypeError: collective.futures.submit(): fn must be callable, "
           "not str ('not callable')"),
    ("key", "TypeError: collective.futures.submit(): key must be a str, not int (42)"),
    ("resolved", "FutureAlreadyResolvedError: future 'r' already has a result; "
                 "clear('r') before submitting it again"),
])
def test_bad_input_fails_at_the_call(zope, case, message):
    assert zope.get(f"/@@bad-input?case={case}") == (200, message)


def test_cancelled_promises_mean_no_second_pass(zope):
    status, body, took = zope.timed_get("/@@cancel-all")
    assert (status, body) == (200, "cancelled=True")
    assert took < 2


def test_access_log_has_one_line_per_client_request(zope):
    token = uuid.uuid4().hex
    assert zope.get(f"/@@slow-futures?delay=0.1&t={token}")[0] == 200
    assert zope.get(f"/@@dependent?depth=3&t={token}")[0] == 500
    # A third, plain request marks the end: the log is written in order, so
    # once its line is there, any line of the two before it is too.
    marker = uuid.uuid4().hex
    assert zope.get(f"/@@plain?m={marker}")[0] == 200
    wait_for(lambda: marker in zope.access_log(), message="the marker's log line")
    lines = [l for l in zope.access_log().splitlines() if token in l]
    assert len(lines) == 1, lines  # the 500 comes from waitress, not the app
    assert '" 200 ' in lines[0] and "slow-futures" in lines[0]
