"""AsyncWorkerStreamIterator in a real Zope under real waitress: the worker
is freed at once, output streams with bounded memory, errors are honest."""

import asyncio
import concurrent.futures
import hashlib
import http.client
import json
import re
import socket
import time

import pytest

import rawhttp
from conftest import wait_for
from futures_testapp.views import pattern


pytestmark = pytest.mark.functional



def expected_digest(size, chunk=65536):
    digest = hashlib.sha256()
    for piece in pattern(size, chunk):
        digest.update(piece)
    return digest.hexdigest()



def test_twenty_slow_streams_on_two_threads_do_not_block(zope):
    results, total, probes = zope.load_with_probes("/@@stream?kind=bytes&delay=1", 20)
    assert {(s, b) for s, b, _ in results} == {(200, "streamed")}
    assert total < 5, total
    assert probes and max(probes) < 1.0, probes


def test_large_generated_body_is_streamed_intact(zope):
    size = 64 * 1024 * 1024 + 12345
    connection = http.client.HTTPConnection(*zope.address, timeout=60)
    try:
        connection.request("GET", f"/@@stream?kind=gen&size={size}&chunk=65536")
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("Transfer-Encoding") == "chunked"
        digest, received = hashlib.sha256(), 0
        while True:
            data = response.read(1 << 20)
            if not data:
                break
            digest.update(data)
            received += len(data)
    finally:
        connection.close()
    assert received == size
    assert digest.hexdigest() == expected_digest(size)
    # The request log counts the body bytes of a chunked stream too (the
    # line is written just after the last chunk: wait for it, bounded).
    line = f"stream generated threads: complete, {size} bytes in"
    wait_for(lambda: line in zope.log(), interval=0.05, message=repr(line))


@pytest.mark.parametrize("query, status, headers, body", [
    ("kind=bytes&delay=0.05", 200, {"Content-Length": "8"}, b"streamed"),
    ("kind=str", 200, {"Content-Length": "7"}, "grüße".encode()),
    ("kind=result", 201, {
        "Content-Type": "text/plain; charset=latin-1",
        "Content-Disposition":
            "attachment; filename=\"_xport 1.txt\"; "
            "filename*=UTF-8''%C3%ABxport%201.txt",
        "X-Export": "yes",
        "Content-Length": "15",
    }, "ünïcode export\n".encode("latin-1")),
    ("kind=view-headers", 200, {
        "Content-Type": "text/csv; charset=utf-8", "X-From-View": "1",
    }, b"a,b\n"),
])
def test_what_fn_returns_and_the_headers(zope, query, status, headers, body):
    got_status, got_headers, got_body = zope.request(f"/@@stream?{query}")
    assert (got_status, got_body) == (status, body)
    for name, value in headers.items():
        assert got_headers.get(name) == value, name


def test_a_binary_file_is_streamed_with_its_length(zope):
    size = 3 * 65536 + 17
    status, headers, body = zope.request(f"/@@stream?kind=file&size={size}")
    assert status == 200
    assert headers["Content-Length"] == str(size)
    assert hashlib.sha256(body).hexdigest() == expected_digest(size)


def test_fn_on_the_processes_executor(zope):
    status, headers, body = zope.request("/@@stream?kind=process&size=100000")
    assert (status, headers["Content-Length"], body) == (200, "100000", b"p" * 100000)


def test_an_async_generator_on_the_asyncio_executor(zope):
    size = 1024 * 1024 + 5
    status, headers, body = zope.request(f"/@@stream?kind=async-gen&size={size}")
    assert status == 200
    assert headers["Content-Type"] == "application/octet-stream"
    assert hashlib.sha256(body).hexdigest() == expected_digest(size)


def test_fn_raising_before_its_first_byte_is_a_500(zope):
    status, headers, body = zope.request("/@@stream?kind=error")
    assert (status, body) == (500, b"Internal Server Error\n")
    assert "stream failing_stream raised before its first byte: 500" in zope.log()
    assert "RuntimeError: stream failed before its first byte" in zope.log()


def test_a_bad_content_length_from_fn_is_a_500(zope):
    status, headers, body = zope.request("/@@stream?kind=bad-length")
    assert (status, body) == (500, b"Internal Server Error\n")
    assert "Content-Length 'three' is not a number of bytes" in zope.log()
    assert zope.get("/@@plain") == (200, "plain page")


def streams_open(zope):
    """Streams admitted and not over (the metrics' gauge)."""
    status, _, body = zope.request("/@@futures-metrics",
                                   headers=zope.admin_headers())
    assert status == 200
    return json.loads(body)["streams_open"]


def test_past_max_streams_a_new_stream_gets_a_503(make_zope):
    zope = make_zope(product_config={"max_streams": "1", "retry_after": "3"})
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(zope.request, "/@@stream?kind=bytes&delay=1")
        wait_for(lambda: streams_open(zope) == 1, message="the first stream runs")
        second = zope.request("/@@stream?kind=bytes&delay=0.1")
        assert first.result(30)[2] == b"streamed"
    assert second[0] == 503 and second[1]["Retry-After"] == "3"
    assert zope.request("/@@stream?kind=bytes&delay=0.1")[2] == b"streamed"


def test_fn_raising_mid_stream_truncates_the_response(zope):
    connection = http.client.HTTPConnection(*zope.address, timeout=30)
    try:
        connection.request("GET", "/@@stream?kind=midway&counter=mid")
        response = connection.getresponse()
        assert response.status == 200
        with pytest.raises(http.client.IncompleteRead) as info:
            response.read()
        assert info.value.partial == b"first part;"
    finally:
        connection.close()
    assert "stream failing_midway raised after its first byte" in zope.log()


def test_head_gets_headers_and_fn_does_not_run(zope):
    status, headers, body = zope.request(
        "/@@stream?kind=counted&counter=head", method="HEAD")
    assert (status, body) == (200, b"")
    assert zope.request("/@@stream?kind=counted&counter=get")[2] == b"ran"
    seen = zope.counters()
    assert "head.ran" not in seen and seen["get.ran"] == 1


def test_keep_alive_and_pipelining_around_streams(zope):
    with rawhttp.Connection(zope.address) as conn:
        conn.send(rawhttp.get("/@@stream?kind=bytes&delay=0.3")
                  + rawhttp.get("/@@plain")
                  + rawhttp.get("/@@stream?kind=str"))
        responses = [conn.read_response() for _ in range(3)]
    assert [r[2] for r in responses] == [b"streamed", b"plain page",
                                         "grüße".encode()]


def test_a_client_that_disconnects_stops_the_stream(zope):
    conn = rawhttp.Connection(zope.address)
    conn.send(rawhttp.get(
        "/@@stream?kind=gen&size=1000000000&chunk=65536&delay=0.01&counter=gone"))
    status_line = conn.stream.readline()
    assert b"200" in status_line
    conn.stream.read(200000)
    conn.close()
    def finished():
        seen = zope.counters()
        return seen if seen.get("gone.closed") else None

    seen = wait_for(finished, timeout=10, interval=0.1,
                    message="the stream's generator closed")
    # The generator was closed: its finally ran, nothing keeps running.
    assert seen.get("gone.started") == 1 and seen.get("gone.closed") == 1, seen
    assert zope.get("/@@plain") == (200, "plain page")


def test_fn_past_the_timeout_before_its_first_byte_is_a_504(make_zope):
    zope = make_zope(product_config={"timeout": "1"})
    start = time.monotonic()
    status, headers, body = zope.request("/@@stream?kind=bytes&delay=3")
    took = time.monotonic() - start
    assert (status, body) == (504, b"Gateway Timeout\n")
    assert 0.9 < took < 2.5, took
    assert zope.get("/@@plain") == (200, "plain page")


def test_wrapping_middleware_is_named_and_the_stream_runs_inline(make_zope):
    zope = make_zope(filters={"wrap": "call:futures_testapp.middleware:make_filter"})
    status, headers, body = zope.request("/@@stream?kind=bytes&delay=0.1")
    assert (status, body) == (200, b"streamed")
    assert ("futures_testapp.middleware.make_filter.<locals>.filter_.<locals>."
            "wrapping.<locals>."
            "wrapped wraps the stream iterator of slow_bytes") in zope.log()


@pytest.mark.parametrize("suspend", ["off"])
def test_streams_without_suspension_run_inline_with_the_same_output(make_zope, suspend):
    zope = make_zope(product_config={"suspend": suspend})
    status, headers, body = zope.request("/@@stream?kind=result")
    assert status == 201
    assert headers["X-Export"] == "yes"
    assert body == "ünïcode export\n".encode("latin-1")
    assert zope.request("/@@stream?kind=error")[0] == 500
    size = 1024 * 1024 + 3
    status, headers, body = zope.request(f"/@@stream?kind=gen&size={size}")
    assert status == 200
    assert hashlib.sha256(body).hexdigest() == expected_digest(size)
    assert zope.request("/@@stream?kind=counted&counter=ih", method="HEAD")[0] == 200
    assert "ih.ran" not in zope.counters()


# streams at scale: a thread only while something computes

async def _open_streams(port, path, count):
    connections = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        connections.append((reader, writer))
    return connections


async def _read_body(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    return head.split(b" ")[1], await reader.readexactly(length)


def test_hundreds_of_async_streams_hold_no_thread(make_zope):
    # Before: a thread per stream for its whole life, async fn included
    # (300 streams, 300 more threads).
    zope = make_zope(product_config={"max_streams": "1000"},
                     server_extra="connection_limit = 1000")
    assert zope.request("/@@stream?kind=async-slow&delay=0")[2] == b"slow async"
    baseline = zope.thread_count()

    async def scenario():
        # fn waits 20 s: long enough for all 300 to be open at once even
        # on a slow machine (their first passes take two workers' time).
        connections = await _open_streams(
            zope.port, "/@@stream?kind=async-slow&delay=20", 300)
        try:
            await asyncio.sleep(0)
            peak = 0
            deadline = time.monotonic() + 18
            while streams_open(zope) < 300 and time.monotonic() < deadline:
                peak = max(peak, zope.thread_count())
                await asyncio.sleep(0.1)
            assert streams_open(zope) == 300
            peak = max(peak, zope.thread_count())
            answers = await asyncio.wait_for(asyncio.gather(
                *(_read_body(reader) for reader, _ in connections)), 60)
            return peak, answers
        finally:
            for _, writer in connections:
                writer.close()

    peak, answers = asyncio.run(scenario())
    assert set(answers) == {(b"200", b"slow async")}
    assert peak <= baseline + 5, (baseline, peak)


def test_a_client_that_reads_nothing_holds_no_thread(make_zope):
    # Before: each such client held a stream thread until channel_timeout.
    zope = make_zope(product_config={"stream_threads": "2", "max_workers": "2"})
    assert zope.request("/@@stream?kind=bytes&delay=0")[2] == b"streamed"
    baseline = zope.thread_count()
    size = 64 * 1024 * 1024
    sockets = []
    try:
        for _ in range(12):
            sock = socket.create_connection(zope.address, timeout=10)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(f"GET /@@stream?kind=gen&size={size} HTTP/1.1\r\n"
                         f"Host: x\r\n\r\n".encode())
            sockets.append(sock)
        wait_for(lambda: streams_open(zope) == 12, message="12 streams open")
        time.sleep(1)  # their buffers fill; their pumps park
        # At most: the stream pool's 2 and the thread executor's 2 (fn
        # runs there), whatever the number of streams.
        assert zope.thread_count() <= baseline + 2 + 2, baseline
        # Another stream, to a client that reads, is written meanwhile.
        assert zope.request("/@@stream?kind=bytes&delay=0")[2] == b"streamed"
    finally:
        for sock in sockets:
            sock.close()
    # The hang-ups wake the parked pumps, which close their output.
    wait_for(lambda: streams_open(zope) == 0, message="the streams to end")
    assert zope.log().count("stream generated threads: client gone") == 12


def test_small_chunks_reach_the_client_as_they_are_made(zope):
    # Each chunk goes out as it is made, and the main loop stays idle while
    # the generator sleeps.
    cpu_before = zope.cpu_seconds()
    sock = socket.create_connection(zope.address, timeout=10)
    try:
        sock.sendall(b"GET /@@stream?kind=events&count=3&delay=1 HTTP/1.1\r\n"
                     b"Host: x\r\n\r\n")
        started = time.monotonic()
        received, first_event = b"", None
        while not received.endswith(b"0\r\n\r\n"):
            data = sock.recv(65536)
            assert data, "the connection closed early"
            received += data
            if first_event is None and b"event 0" in received:
                first_event = time.monotonic() - started
    finally:
        sock.close()
    total = time.monotonic() - started
    assert b"event 2" in received
    assert first_event < 0.8 and total >= 2.5, (first_event, total)
    # Three seconds of a slow stream: an idle main loop, not a spinning one.
    assert zope.cpu_seconds() - cpu_before < 1.0
