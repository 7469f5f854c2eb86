"""The demo instance's pages (the README's first command) work."""

import concurrent.futures
import http.client
import io
import json
import time
import zipfile

import pytest

from collective.futures.demo import race
from zopeinstance import ZopeInstance


pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    # The demo's background jobs: its consumer on, as scripts/demo sets it
    # (the test looks more often, retries sooner).
    instance = ZopeInstance(tmp_path_factory.mktemp("demo"), threads=2,
                            product_config={"task_consumer": "on", "task_poll": "0.1"},
                            packages=("collective.futures.demo",)).create()
    instance.start()
    yield instance
    instance.stop()


def test_the_demo_page(demo):
    status, body = demo.get("/@@futures-demo")
    assert status == 200
    assert "collective.futures demo" in body
    assert "@@futures-demo-futures" in body and "@@futures-demo-blocking" in body
    # The page runs the races through the server, and says when it is done.
    assert "@@futures-demo-race" in body and "autorun" in body
    for id in ("futures-total", "blocking-total", "futures-plain-worst",
               "blocking-plain-worst"):
        assert f'id="{id}"' in body
    assert "innerHTML" not in body  # the page builds its DOM with textContent


def test_futures_and_blocking_pages_give_the_same_data(demo):
    for how in ("futures", "blocking"):
        status, body = demo.get(f"/@@futures-demo-{how}?delay=0.1")
        data = json.loads(body)
        assert status == 200 and data["how"] == how
        assert data["upstream"]["delay"] == 0.1


def test_ten_futures_requests_run_side_by_side(demo):
    def get(_):
        return demo.get("/@@futures-demo-futures?delay=1")[0]

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        start = time.monotonic()
        statuses = list(pool.map(get, range(10)))
        took = time.monotonic() - start
    assert statuses == [200] * 10
    assert took < 3, took  # blocking: 5 s on two threads


def test_the_zip_export_streams_a_valid_archive(demo):
    status, headers, body = demo.request("/@@futures-demo-export?n=3")
    assert status == 200
    assert headers["Content-Type"] == "application/zip"
    assert 'filename="upstream-export.zip"' in headers["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        names = archive.namelist()
        assert names == ["answer-1.json", "answer-2.json", "answer-3.json"]
        assert json.loads(archive.read("answer-2.json"))["delay"] == 0.2


def test_the_slow_feed_is_fetched_once_and_kept(demo):
    start = time.monotonic()
    status, body = demo.get("/@@futures-demo-feed?delay=1")
    assert status == 200 and body.count("<li>") == 5
    assert "Slow news 1" in body
    assert time.monotonic() - start >= 1.0
    start = time.monotonic()
    assert demo.get("/@@futures-demo-feed?delay=1") == (status, body)
    assert time.monotonic() - start < 0.5  # kept: no wait, no second pass


# The race: this Zope fires the requests at itself and streams the timings.

def run_race(demo, query, headers=None, timeout=60):
    """GET @@futures-demo-race?query: (status, headers, lines parsed, the
    seconds at which each line arrived)."""
    connection = http.client.HTTPConnection(*demo.address, timeout=timeout)
    try:
        start = time.monotonic()
        connection.request("GET", f"/@@futures-demo-race?{query}",
                           headers=headers or {})
        response = connection.getresponse()
        lines, arrived = [], []
        if response.status != 200:
            return response.status, dict(response.getheaders()), response.read(), []
        while line := response.readline():
            lines.append(json.loads(line))
            arrived.append(time.monotonic() - start)
        return response.status, dict(response.getheaders()), lines, arrived
    finally:
        connection.close()


def split(lines):
    kinds = [line["kind"] for line in lines]
    assert kinds[0] == "start" and kinds[-1] == "end", kinds
    assert set(kinds[1:-1]) <= {"request", "plain"}, kinds
    requests = [line for line in lines if line["kind"] == "request"]
    plain = [line for line in lines if line["kind"] == "plain"]
    for line in requests + plain:
        assert 0 <= line["start_ms"] <= line["end_ms"], line
    return lines[0], requests, plain, lines[-1]


def test_the_futures_race_streams_one_line_per_request(demo):
    # The Host header names another host: the race connects to 127.0.0.1
    # on this server's own port all the same (not a relay).
    status, headers, lines, arrived = run_race(
        demo, "how=futures&n=10&delay=1", headers={"Host": "attacker.example:1"})
    assert status == 200
    assert headers["Content-Type"] == "application/x-ndjson; charset=utf-8"
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"
    start, requests, plain, end = split(lines)
    assert start == {"kind": "start", "how": "futures", "n": 10, "delay": 1.0,
                     "threads": 2}
    assert sorted(r["index"] for r in requests) == list(range(10))
    assert [r["status"] for r in requests] == [200] * 10
    assert len(plain) == end["plain_count"] >= 1
    assert end["requests"] == end["ok"] == 10
    assert end["total_ms"] == max(r["end_ms"] for r in requests)
    # Side by side: about 1 s for all; the plain page fast meanwhile.
    assert 1000 <= end["total_ms"] < 3000, end
    assert end["plain_worst_ms"] < 800, end
    # Streamed: the first line came long before the last.
    assert arrived[0] < 0.5 < 1.0 <= arrived[-1], arrived


def test_the_blocking_race_queues_behind_two_workers(demo):
    status, _, lines, _ = run_race(demo, "how=blocking&n=6&delay=0.5")
    assert status == 200
    start, requests, plain, end = split(lines)
    assert start["how"] == "blocking" and start["n"] == 6
    assert end["requests"] == end["ok"] == 6
    # Two at a time: answers in three rounds of 0.5 s (a staircase).
    ends = sorted(r["end_ms"] for r in requests)
    assert ends[1] < 900 <= ends[2] and ends[3] < 1400 <= ends[4], ends
    assert end["total_ms"] >= 1400, end
    # The plain page waits in the same queue (the futures race above is
    # the control: < 800 ms there).
    assert end["plain_worst_ms"] > 800, end


@pytest.mark.parametrize("query, expected_n, expected_delay", [
    ("how=futures&n=500&delay=0", 20, 0.0),
    ("how=futures&n=0&delay=-1", 1, 0.0),
    ("how=blocking&n=-3&delay=0.2", 1, 0.2),
    ("how=futures&n=1&delay=99", 1, 3.0),
    ("how=futures&n=20&delay=3", 20, 3.0),  # the caps themselves: kept
])
def test_race_numbers_out_of_range_are_clamped(demo, query, expected_n, expected_delay):
    status, _, lines, _ = run_race(demo, query)
    assert status == 200
    start, requests, _, end = split(lines)
    assert (start["n"], start["delay"]) == (expected_n, expected_delay)
    assert len(requests) == end["requests"] == end["ok"] == expected_n
    assert end["total_ms"] >= expected_delay * 1000


@pytest.mark.parametrize("query, message", [
    ("n=3", "how must be futures or blocking"),
    ("how=other", "how must be futures or blocking"),
    ("how=futures&how=blocking", "how must be futures or blocking"),
    ("how=futures&n=ten", "n must be a whole number (1 to 20)"),
    ("how=futures&n=1.5", "n must be a whole number (1 to 20)"),
    ("how=futures&n=1&n=2", "n must be a whole number (1 to 20)"),
    ("how=futures&delay=soon", "delay must be a number of seconds (0 to 3)"),
    ("how=futures&delay=nan", "delay must be a number of seconds (0 to 3)"),
    ("how=futures&delay=inf", "delay must be a number of seconds (0 to 3)"),
])
def test_bad_race_parameters_are_a_400_naming_the_argument(demo, query, message):
    status, headers, body, _ = run_race(demo, query)
    assert status == 400
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert body.decode().strip() == message


def test_one_race_at_a_time(demo):
    connection = http.client.HTTPConnection(*demo.address, timeout=30)
    try:
        connection.request("GET", "/@@futures-demo-race?how=futures&n=2&delay=1")
        first = connection.getresponse()
        assert json.loads(first.readline())["kind"] == "start"  # it runs
        status, headers, body, _ = run_race(demo, "how=futures&n=1&delay=0")
        assert status == 503
        assert headers["Retry-After"] == "5"
        assert json.loads(body) == {
            "kind": "error", "error": "another race is running; try again when it ends"}
        rest = [json.loads(line) for line in first.read().splitlines()]
        assert rest[-1]["kind"] == "end" and rest[-1]["ok"] == 2
    finally:
        connection.close()
    # Ended: the next race runs.
    status, _, lines, _ = run_race(demo, "how=futures&n=1&delay=0")
    assert status == 200 and lines[-1]["ok"] == 1


def test_the_race_needs_the_waitress_server_that_received_the_request():
    # No waitress connection behind the environ (a test browser, another
    # server): no port to trust, so no race.
    with pytest.raises(LookupError, match="served by waitress"):
        race.own_server({"SERVER_PORT": "8080", "HTTP_HOST": "localhost:8080"})


def job_state(demo, task_id):
    status, body = demo.get(f"/@@futures-demo-job-status?id={task_id}")
    assert status == 200, body
    return json.loads(body)


def start_job(demo, kind):
    status, _, body = demo.request("/@@futures-demo-job-start", method="POST",
                                   body=f"kind={kind}".encode(),
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200, body
    return json.loads(body)["id"]


def test_the_jobs_page_queues_a_job_and_follows_it_to_done(demo):
    from conftest import wait_for
    status, body = demo.get("/@@futures-demo-jobs")
    assert status == 200 and "@@futures-demo-job-start" in body
    assert "innerHTML" not in body  # the page builds its DOM with textContent
    assert "@@futures-demo-jobs" in demo.get("/@@futures-demo")[1]
    task_id = start_job(demo, "pdf")
    seen = set()

    def done():
        state = job_state(demo, task_id)["state"]
        seen.add(state)
        return state == "done"

    wait_for(done, timeout=30, interval=0.1, message="the PDF job done")
    assert "running" in seen  # its status moved (the job takes 3 s)


def test_a_failing_job_is_retried_then_listed_in_the_dead_letters(demo):
    from conftest import wait_for
    task_id = start_job(demo, "failing")

    def dead():
        return json.loads(demo.get("/@@futures-demo-dead-jobs")[1])

    listed = wait_for(lambda: [t for t in dead() if t["id"] == task_id], timeout=60,
                      interval=0.2, message="the failing job a dead letter")
    assert listed[0]["attempts"] == 3 and listed[0]["last_error"].startswith("HTTP 500")


def test_the_jobs_endpoints_refuse_what_they_do_not_take(demo):
    assert demo.get("/@@futures-demo-job-start?kind=pdf")[0] == 405  # a GET
    status, _, _ = demo.request("/@@futures-demo-job-start", method="POST", body=b"kind=rm",
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400
    assert demo.get("/@@futures-demo-job-status?id=nope")[0] == 404
