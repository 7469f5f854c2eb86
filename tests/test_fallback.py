"""Wait mode: servers and test browsers that cannot suspend a request still
get correct pages (promises run concurrently while the worker waits), and a
placeholder never reaches the client."""

import concurrent.futures
import json
import subprocess
import sys
import time

import pytest

from conftest import wait_for
from zopeinstance import GUNICORN, HERE, ZopeInstance, subprocess_env


pytestmark = pytest.mark.functional


def check_wait_mode_pages(zope):
    # Warm: the first request of a process (imports, the ZODB) is not timed.
    assert zope.get("/@@parallel?n=1&delay=0")[0] == 200
    start = time.monotonic()
    assert zope.get("/@@parallel?n=3&delay=2") == (
        200, "parallel: p0 after 2s, p1 after 2s, p2 after 2s")
    # Concurrent: about 2 s; one after the other it would be 6 s.
    assert time.monotonic() - start < 4.5
    assert zope.get("/@@dependent?depth=2") == (
        200, "dependent: start>d0 after 0.05s>d1 after 0.05s")
    assert zope.get("/@@error-promise") == (
        200, "promise raised ValueError: the promise failed")
    token = "conflict-wait-" + str(time.monotonic_ns())
    assert zope.get(f"/@@conflict?token={token}")[0] == 200
    seen = zope.counters()
    assert seen[f"conflict-{token}.started"] == 1


def test_waitress_with_suspend_off(make_zope):
    zope = make_zope(product_config={"suspend": "off"})
    check_wait_mode_pages(zope)
    assert "collective.futures ready: wait mode" in zope.log()
    assert "futures are served in wait mode" in zope.log()


def test_gunicorn(make_zope, tmp_path):
    zope = make_zope(start=False, command=GUNICORN + [
        "--paste", str(tmp_path / "zope0/etc/zope.ini"),
        "--bind", "127.0.0.1:0", "--workers", "1", "--threads", "2",
        "--worker-class", "gthread", "--timeout", "60", "--no-control-socket"])
    zope.start()
    check_wait_mode_pages(zope)
    # A POST body (gunicorn's cannot seek) is replayed intact.
    status, _, body = zope.request(
        "/@@echo", method="POST", body=b"a=1&b=2",
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (status, json.loads(body)["form"]) == (200, {"a": "1", "b": "2"})
    assert "futures are served in wait mode" in zope.log()
    assert "gunicorn" in zope.log()


def threads_running(zope):
    status, _, body = zope.request("/@@futures-metrics", headers=zope.admin_headers())
    assert status == 200
    return json.loads(body)["executors"].get("threads", {}).get("running", 0)


def test_under_gunicorn_a_full_queue_is_a_503_and_commits_nothing(make_zope, tmp_path):
    """Wait mode's 503 is the pass's own response (not an exception a
    site's error views would render as they like), and the refused pass's
    writes are not committed."""
    zope = make_zope(start=False, product_config={
        "max_workers": "1", "max_queue": "0", "retry_after": "7"}, command=GUNICORN + [
        "--paste", str(tmp_path / "zope0/etc/zope.ini"),
        "--bind", "127.0.0.1:0", "--workers", "1", "--threads", "3",
        "--worker-class", "gthread", "--timeout", "60", "--no-control-socket"])
    zope.start()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        busy = pool.submit(zope.get, "/@@slow-futures?delay=3")
        wait_for(lambda: threads_running(zope) == 1, timeout=20,
                 message="the one worker busy")
        status, headers, body = zope.request("/@@write-then-futures")
        assert busy.result(30) == (200, "futures: slow after 3s")  # the control
    assert status == 503, (status, body)
    assert headers["Retry-After"] == "7"
    assert headers["Content-Type"].startswith("text/plain")
    assert body == b"Service Unavailable: the threads executor's queue is full " \
                   b"(max_queue); retry later\n"
    assert "503 for GET /@@write-then-futures" in zope.log()
    # The refused pass wrote "pass 1": aborted with it. Admitted now, the
    # view's two passes leave only pass 2's write.
    assert zope.get("/@@write-then-futures") == (200, '["pass 2"]')


def test_wait_mode_without_retry_budget_is_a_clear_error(make_zope):
    """Wait mode replays through Zope's retry loop; when its budget is
    spent, the request fails clearly instead of serving a placeholder."""
    zope = make_zope(start=False, product_config={"suspend": "off"})
    conf = zope.home / "etc/zope.conf"
    conf.write_text(conf.read_text() + "max-conflict-retries 1\n")
    zope.start()
    assert zope.get("/@@slow-futures?delay=0.1") == (200, "futures: slow after 0.1s")
    status, body = zope.get("/@@dependent?depth=2")
    assert status == 500
    assert "PLACEHOLDER" not in body
    assert "ReplayImpossibleError: cannot publish pass 3" in zope.log()


def test_webtest_and_zope_testbrowser(tmp_path):
    zope = ZopeInstance(tmp_path / "zope").create()
    result = subprocess.run(
        [sys.executable, str(HERE / "wsgi_clients.py"), str(zope.home)],
        capture_output=True, text=True, timeout=120, cwd=zope.home,
        env=subprocess_env())
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout)
    status, text, took = results["webtest_parallel"]
    assert (status, text) == (200, "parallel: p0 after 1s, p1 after 1s, p2 after 1s")
    assert took < 2.5
    assert results["webtest_post"] == [200, {"a": "1"}]
    assert results["webtest_dependent"] == [
        200, "dependent: start>d0 after 0.05s>d1 after 0.05s"]
    assert results["testbrowser_slow"] == ["200 OK", "futures: slow after 0.2s"]
    assert results["testbrowser_error_promise"] == [
        "200 OK", "promise raised ValueError: the promise failed"]
