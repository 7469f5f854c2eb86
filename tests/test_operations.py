"""Operations in a real Zope under real waitress: metrics (JSON,
Prometheus, the Control Panel), the request log, backpressure."""

import concurrent.futures
import json
import re

import pytest

import rawhttp
from conftest import wait_for


pytestmark = pytest.mark.functional

TOKEN = "s3cret-scrape-token-0123"


def metrics(zope):
    status, _, body = zope.request("/@@futures-metrics", headers=zope.admin_headers())
    assert status == 200
    return json.loads(body)


def test_metrics_are_for_managers_or_the_scrape_token(make_zope):
    zope = make_zope(product_config={"metrics_token": TOKEN})
    assert zope.request("/@@futures-metrics")[0] == 401
    assert zope.request("/@@futures-metrics", headers={
        "Authorization": "Bearer wrong-token-but-long-enough"})[0] == 401
    status, headers, body = zope.request(
        "/@@futures-metrics?format=prometheus",
        headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    assert "# TYPE collective_futures_suspended_requests gauge" in text
    assert re.search(r"^collective_futures_suspended_requests 0\.0$", text, re.M)
    assert metrics(zope)["suspended"] == 0
    # What Prometheus asks for: OpenMetrics, written by prometheus_client.
    status, headers, body = zope.request(
        "/@@futures-metrics?format=prometheus",
        headers={"Authorization": f"Bearer {TOKEN}",
                 "Accept": "application/openmetrics-text;version=1.0.0,"
                           "text/plain;version=0.0.4;q=0.5"})
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.decode().endswith("# EOF\n")
    assert "# TYPE collective_futures_requests counter" in body.decode()


def site_endpoint(make_zope, product_config=None):
    """A Zope whose site serves prometheus_client's default registry on a
    port of its own (docs/operations.rst's snippet, started at startup):
    (zope, scrape), scrape() giving the endpoint's text or None."""
    import socket
    import urllib.request
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    zope = make_zope(packages=("futures_testapp", "futures_promsite"),
                     product_config=product_config,
                     environment={"FUTURES_TEST_METRICS_PORT": str(port)})

    def scrape():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                        timeout=10) as response:
                return response.read().decode()
        except OSError:
            return None

    return zope, scrape


def test_a_site_endpoint_for_the_default_registry_shows_our_metrics(make_zope):
    # Our figures are there with no step of the site's, live, beside
    # Python's own.
    zope, scrape = site_endpoint(make_zope)
    text = wait_for(scrape, message="the site's metrics endpoint")
    # Positive control: it is the default registry (Python's process metrics).
    assert "process_start_time_seconds" in text
    assert "# TYPE collective_futures_suspended_requests gauge" in text
    assert re.search(r"^collective_futures_tasks_up 1\.0$", text, re.M)
    passes = r'^collective_futures_request_passes_total\{passes="2"\} (\S+)$'
    assert re.findall(passes, text, re.M) == []
    assert zope.get("/@@slow-futures?delay=0.05")[0] == 200
    after = wait_for(lambda: re.findall(passes, scrape() or "", re.M),
                     message="the request counted at the endpoint")
    assert after == ["1.0"]
    assert metrics(zope)["passes"] == {"2": 1}


def test_metrics_registry_off_keeps_our_metrics_off_the_default_registry(make_zope):
    zope, scrape = site_endpoint(make_zope, {"metrics_registry": "off"})
    text = wait_for(scrape, message="the site's metrics endpoint")
    assert "process_start_time_seconds" in text  # the endpoint works
    assert "collective_futures_" not in text
    # @@futures-metrics still has them.
    status, _, body = zope.request("/@@futures-metrics?format=prometheus",
                                   headers=zope.admin_headers())
    assert status == 200 and b"collective_futures_suspended_requests " in body


def test_a_hung_task_backend_costs_a_scrape_the_deadline_not_its_timeout(make_zope):
    # A "Redis" that accepts connections and never answers: its reads wait
    # for the socket timeout (10 s, Prometheus's whole scrape timeout). The
    # site's endpoint, @@futures-metrics and the Control Panel answer after
    # FIGURES_DEADLINE (2 s) with the backend unreachable.
    import socket
    import time
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        zope, scrape = site_endpoint(make_zope, {
            "task_backend": f"redis://127.0.0.1:{silent.getsockname()[1]}/0"})
        wait_for(scrape, timeout=30, message="the site's metrics endpoint")
        started = time.monotonic()
        text = scrape()
        assert time.monotonic() - started < 6
        assert re.search(r"^collective_futures_tasks_up 0\.0$", text, re.M), text
        assert "process_start_time_seconds" in text  # the site's own, still
        started = time.monotonic()
        data = metrics(zope)
        assert time.monotonic() - started < 6
        assert data["tasks"]["unreachable"] == (
            "the task backend did not answer within 2 s")
        started = time.monotonic()
        status, _, body = zope.request("/Control_Panel/manage_futures",
                                       headers=zope.admin_headers())
        assert status == 200 and time.monotonic() - started < 6
        assert b"did not answer within 2 s" in body
    finally:
        silent.close()


def test_metrics_add_up_after_a_mixed_load(make_zope):
    zope = make_zope(product_config={"timeout": "1", "max_workers": "8"})
    for _ in range(3):
        assert zope.get("/@@slow-futures?delay=0.1")[0] == 200
    for _ in range(2):
        assert zope.get("/@@error-promise")[0] == 200
    assert zope.get("/@@timeout?delay=2")[1].startswith("timed out")
    conn = rawhttp.Connection(zope.address)
    conn.send(rawhttp.get("/@@parallel?n=2&delay=0.5&counter=mixed"))
    wait_for(lambda: zope.counters().get("mixed.started") == 2,
             message="both promises started")
    conn.close()

    def both_cancelled():
        # The hang-up is noticed and both running promises counted cancelled.
        data = metrics(zope)
        return data if data["promises"]["threads"]["cancelled"] == 2 else None

    data = wait_for(both_cancelled, message="two cancelled promises in the metrics")
    threads = data["promises"]["threads"]
    assert threads["submitted"] == 3 + 2 + 1 + 2
    assert (threads["completed"], threads["failed"], threads["timed_out"],
            threads["cancelled"], threads["rejected"]) == (3, 2, 1, 2, 0)
    assert threads["submitted"] == sum(
        threads[k] for k in ("completed", "failed", "timed_out", "cancelled", "rejected"))
    assert data["abandoned"] == 1 + 2  # the timed-out one, the hung-up two
    assert data["suspended"] == 0 and data["suspended_peak"] >= 1
    assert data["requests"] == {"200": 6}
    assert data["passes"] == {"2": 6}
    assert data["durations"]["slow_value"]["count"] == 3 + 1 + 2
    assert data["durations"]["failing"]["count"] == 2
    log = zope.log()
    assert re.search(r"\[collective\.futures\.requests\]\[waitress-\d\] GET "
                     r"/@@slow-futures: 200 after 2 passes in \d\.\d+s; promises: "
                     r"slow \[threads\] \d\.\d+s completed", log)
    assert "promises: boom [threads]" in log and "ValueError" in log


def test_a_flood_past_the_bounds_gets_503_and_recovers(make_zope):
    zope = make_zope(product_config={"max_suspended": "5", "retry_after": "7"},
                     server_extra="connection_limit = 200")
    with concurrent.futures.ThreadPoolExecutor(30) as pool:
        flood = [pool.submit(zope.request, "/@@slow-futures?delay=1")
                 for _ in range(30)]
        # The bound is reached: a plain page now.
        wait_for(lambda: metrics(zope)["suspended"] == 5, message="5 suspended")
        plain = zope.get("/@@plain")
        results = [f.result(30) for f in flood]
    statuses = sorted(r[0] for r in results)
    assert plain == (200, "plain page")  # requests without futures: unaffected
    assert statuses.count(200) >= 5 and statuses.count(503) >= 10, statuses
    assert set(statuses) == {200, 503}
    assert {r[1].get("Retry-After") for r in results if r[0] == 503} == {"7"}
    assert metrics(zope)["rejected_requests"] == statuses.count(503)
    # The flood is over: the next request suspends and succeeds.
    assert zope.get("/@@slow-futures?delay=0.1") == (200, "futures: slow after 0.1s")


def test_overload_wait_runs_blocking_instead_of_503(make_zope):
    zope = make_zope(product_config={"max_suspended": "2", "overload": "wait"})
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: zope.get("/@@slow-futures?delay=0.5"),
                                range(6)))
    assert set(results) == {(200, "futures: slow after 0.5s")}
    assert metrics(zope)["rejected_requests"] == 0


def test_the_control_panel_tab(make_zope):
    # History sampled every 0.2 s: the chart needs two samples.
    zope = make_zope(product_config={"history_interval": "0.2"})
    zope.get("/@@slow-futures?delay=0.1")
    status, _, body = zope.request("/Control_Panel/manage_main",
                                   headers=zope.admin_headers())
    assert status == 200 and b"manage_futures" in body

    def tab():
        status, _, body = zope.request("/Control_Panel/manage_futures",
                                       headers=zope.admin_headers())
        assert status == 200
        page = body.decode()
        return page if "<svg" in page else None

    page = wait_for(tab, timeout=10, interval=0.1, message="the history chart")
    assert "Suspended requests now" in page and "<svg" in page
    assert "slow_value" in page  # the durations table
    assert zope.request("/Control_Panel/manage_futures")[0] == 401
