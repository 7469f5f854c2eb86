"""The consumer (collective.futures.tasks.consumer) against a real HTTP
server on 127.0.0.1 and the real SQLite backend: each task requested once
and signed, retried on 5xx and connection failures, buried at once on a
4xx, at most ``concurrency`` at once, its lease kept alive while it runs
and taken over when its consumer is gone."""

import http.server
import threading
import time
import urllib.parse

import pytest

from conftest import wait_for
from collective.futures.tasks import signature
from collective.futures.tasks.consumer import Consumer
from collective.futures.tasks.model import new_task
from collective.futures.tasks.sqlite import SQLiteBackend


SECRET = "c" * 40


class Site:
    """What the instance would publish: answers by path, and records every
    request (verified against SECRET as Zope's side verifies it)."""

    def __init__(self):
        self.requests = []
        self.lock = threading.Lock()
        self.in_flight = self.most_in_flight = 0
        #: path -> list of statuses to answer in turn (the last repeats)
        self.script = {}
        self.delay = {}
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def handle_one(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                path, _, query = self.path.partition("?")
                environ = {"REQUEST_METHOD": self.command, "QUERY_STRING": query,
                           "PATH_INFO": urllib.parse.unquote_to_bytes(path).decode("latin-1")}
                for name, value in self.headers.items():
                    environ["HTTP_" + name.upper().replace("-", "_")] = value
                try:
                    verified = signature.verify(SECRET, environ)
                except signature.InvalidSignature as exc:
                    verified = f"refused: {exc}"
                with site.lock:
                    site.requests.append({"method": self.command, "path": self.path,
                                          "body": body, "verified": verified,
                                          "headers": dict(self.headers)})
                    site.in_flight += 1
                    site.most_in_flight = max(site.most_in_flight, site.in_flight)
                    statuses = site.script.get(path, [200])
                    status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
                try:
                    time.sleep(site.delay.get(path, 0.0))
                finally:
                    with site.lock:
                        site.in_flight -= 1
                text = f"answer {status}".encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            do_GET = do_POST = handle_one

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       name="test-task-site", daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def paths(self):
        with self.lock:
            return [request["path"] for request in self.requests]


@pytest.fixture
def site():
    server = Site()
    yield server
    server.stop()


@pytest.fixture
def backend(tmp_path):
    backend = SQLiteBackend(tmp_path / "tasks.db")
    yield backend
    backend.close()


@pytest.fixture
def consumers():
    made = []

    def make(backend, url, **kw):
        kw.setdefault("poll_interval", 0.05)
        kw.setdefault("rng", lambda: 0.0)  # retry at once
        consumer = Consumer(backend, ["default"], url, SECRET, **kw).start()
        made.append(consumer)
        return consumer

    yield make
    for consumer in made:
        assert consumer.stop(10), "a consumer thread did not end"


def queue(backend, path, **kw):
    task = new_task(path, queue="default", **kw)
    backend.prepare([task], task["id"])
    backend.confirm(task["id"])
    return task


def settled(backend, task, state):
    return wait_for(lambda: backend.status(task["id"])["state"] == state and
                    backend.status(task["id"]), timeout=10, message=f"{task['path']} {state}")


def test_a_task_is_requested_once_signed_and_acknowledged(backend, site, consumers):
    outcomes = []
    consumers(backend, site.url, on_settled=lambda t, o, s: outcomes.append(o))
    task = queue(backend, "/Plone/f%C3%B6lder/@@job?n=1", method="POST",
                 payload=b"\x00data", headers={"X-Kind": "pdf"}, user={"id": "jane"})
    done = settled(backend, task, "done")
    assert done["attempts"] == 1 and done["finished"] is not None
    (request,) = site.requests
    assert (request["method"], request["path"], request["body"]) == (
        "POST", "/Plone/f%C3%B6lder/@@job?n=1", b"\x00data")
    assert request["headers"]["X-Kind"] == "pdf"
    assert request["verified"][0] == task["id"] and request["verified"][2] == ("", "jane")
    assert outcomes == ["done"]


def test_a_4xx_buries_the_task_at_once(backend, site, consumers):
    site.script["/missing"] = [404]
    consumers(backend, site.url)
    task = queue(backend, "/missing", max_attempts=5)
    dead = settled(backend, task, "dead")
    assert site.paths() == ["/missing"]  # no retry storm
    assert dead["last_error"].startswith("HTTP 404") and "answer 404" in dead["last_error"]


def test_5xx_is_retried_until_it_succeeds(backend, site, consumers):
    site.script["/flaky"] = [500, 503, 409, 200]
    consumers(backend, site.url)
    task = queue(backend, "/flaky", max_attempts=5)
    done = settled(backend, task, "done")
    assert done["attempts"] == 4 and site.paths() == ["/flaky"] * 4
    assert done["last_error"].startswith("HTTP 409")  # the last failure, kept


def test_a_task_that_keeps_failing_ends_in_the_dead_letters(backend, site, consumers):
    site.script["/broken"] = [500]
    consumers(backend, site.url)
    task = queue(backend, "/broken", max_attempts=3)
    dead = settled(backend, task, "dead")
    assert site.paths() == ["/broken"] * 3
    assert "attempt 3 of 3" in dead["last_error"]
    assert backend.dead_letters("default")[0]["id"] == task["id"]


def test_a_connection_that_fails_is_retried(backend, consumers):
    # Nobody listens on this port (bound, then closed).
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    consumers(backend, f"http://127.0.0.1:{port}")
    task = queue(backend, "/anything", max_attempts=2)
    dead = settled(backend, task, "dead")
    assert dead["attempts"] == 2 and "the request failed" in dead["last_error"]


def test_at_most_concurrency_tasks_run_at_once(backend, site, consumers):
    site.delay["/slow"] = 0.3
    consumers(backend, site.url, concurrency=2)
    tasks = [queue(backend, "/slow") for _ in range(6)]
    for task in tasks:
        settled(backend, task, "done")
    assert site.most_in_flight == 2  # and not 1: they did run two at a time
    names = {thread.name for thread in threading.enumerate()}
    assert {"collective.futures-task-1", "collective.futures-task-2",
            "collective.futures-task-leases"} <= names


def test_the_lease_of_a_running_task_is_kept_alive(backend, site, consumers):
    # The request takes four leases' time; the heartbeat extends the lease,
    # so no other consumer takes the task meanwhile.
    site.delay["/long"] = 1.2
    consumers(backend, site.url, lease_seconds=0.3, concurrency=2)
    task = queue(backend, "/long")
    settled(backend, task, "done")
    assert site.paths() == ["/long"]


def test_a_task_whose_consumer_is_gone_is_delivered_again(backend, site, consumers):
    task = queue(backend, "/job")
    # A consumer that leased the task and died: it never settles it.
    ((dead_lease, _),) = backend.lease("default", "dead-consumer", 1, 0.2)
    consumers(backend, site.url)
    done = settled(backend, task, "done")
    assert done["attempts"] == 2 and site.paths() == ["/job"]
    # The dead consumer's lease is void: its late ack changes nothing.
    assert backend.ack(dead_lease) is False


def test_a_task_redelivered_past_its_attempts_is_buried_unrequested(backend, site, consumers):
    task = queue(backend, "/hangs", max_attempts=1)
    backend.lease("default", "killed-consumer", 1, 0.1)
    consumers(backend, site.url)
    dead = settled(backend, task, "dead")
    assert site.paths() == [] and "lease expired" in dead["last_error"]


def test_wake_starts_a_task_without_waiting_for_the_poll(backend, site, consumers):
    consumer = consumers(backend, site.url, poll_interval=30.0)
    time.sleep(0.2)  # the worker is idle in its 30 s wait
    task = queue(backend, "/now")
    started = time.monotonic()
    consumer.wake()
    settled(backend, task, "done")
    assert time.monotonic() - started < 5  # not the 30 s poll


def test_a_bad_base_url_is_refused(backend):
    with pytest.raises(ValueError, match="base_url"):
        Consumer(backend, ["default"], "https://127.0.0.1:8080", SECRET)


class BrokenLease(SQLiteBackend):
    """A backend whose lease fails (a row it cannot read) while its reads
    work: next_eta says a task is due."""

    def __init__(self, path):
        super().__init__(path)
        self.calls = 0

    def lease(self, *args, **kw):
        self.calls += 1
        raise ValueError("a row that cannot be read")


def test_a_backend_that_cannot_lease_is_asked_once_a_poll_not_in_a_loop(tmp_path, site):
    backend = BrokenLease(tmp_path / "broken.db")
    queue(backend, "/due")  # next_eta: now, a past time from then on
    consumer = Consumer(backend, ["default"], site.url, SECRET, poll_interval=0.5).start()
    try:
        time.sleep(1.2)
    finally:
        assert consumer.stop(10)
        backend.close()
    assert 1 <= backend.calls <= 4  # about one per poll, not hundreds
