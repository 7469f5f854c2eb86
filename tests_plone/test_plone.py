"""collective.futures on a real Plone 6 site, over HTTP, served by real
waitress: Plone's stack (plone.protect, plone.transformchain and the Diazo
theme, plone.app.caching) around two passes, and the news feed."""

import concurrent.futures
import time
import urllib.parse

import pytest

from ploneinstance import PloneInstance
from slow_upstream import HITS, SlowUpstream


pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def upstream():
    service = SlowUpstream(delay=1.0).start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def plone(tmp_path_factory, upstream):
    instance = PloneInstance(tmp_path_factory.mktemp("plone"),
                             feed_url=f"{upstream.url}feed.xml?delay=1",
                             threads=2, server_extra="connection_limit = 500")
    instance.create().start()
    yield instance
    instance.stop()


def get(plone, path, **headers):
    status, response_headers, body = plone.request(
        path, headers=plone.host_headers(**headers), timeout=60)
    return status, response_headers, body.decode("utf-8", "replace")


def basic(user, password):
    import base64
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_plone_picks_the_package_up_through_autoinclude(plone):
    assert "collective.futures ready: suspend mode under waitress" in plone.log()


def test_a_themed_page_renders_the_result_once(plone):
    status, headers, body = get(plone, "/Plone/@@plone-themed")
    assert status == 200
    assert '<p id="futures-value">themed result</p>' in body
    assert "PLACEHOLDER" not in body
    assert "++theme++barceloneta" in body  # Diazo applied to the final pass
    assert body.count("<html") == 1
    # plone.app.caching ran on the final pass too.
    assert headers.get("X-Cache-Rule") == "plone.content.itemView"
    assert "X-Cache-Operation" in headers
    # plone.protect's transform ran on the final pass as well.
    assert headers.get("X-Frame-Options") == "SAMEORIGIN"


def test_pass_two_runs_as_the_same_user(plone):
    assert get(plone, "/Plone/@@plone-whoami")[2] == "user=Anonymous value=computed"
    status, _, body = get(plone, "/Plone/@@plone-whoami",
                          Authorization=basic("jane", "jane-Secret-1"))
    assert (status, body) == (200, "user=jane value=computed")


def authenticator(plone, auth):
    status, _, token = get(plone, "/Plone/@@plone-token", Authorization=auth)
    assert status == 200 and token
    return token


def test_plone_protect_checks_the_final_pass(plone):
    admin = basic("admin", "secret")
    before = int(get(plone, "/Plone/@@plone-count")[2])
    token = authenticator(plone, admin)
    body = urllib.parse.urlencode({"_authenticator": token}).encode()
    status, _, text = plone.request(
        "/Plone/@@plone-write", method="POST", body=body, timeout=60,
        headers=plone.host_headers(
            Authorization=admin,
            **{"Content-Type": "application/x-www-form-urlencoded"}))
    assert status == 200 and f"writes={before + 1}" in text.decode()
    # Without the token, plone.protect refuses the write of the final pass:
    # it aborts the transaction (plone.transformchain logs its Forbidden and
    # answers the page as rendered, as it does without collective.futures).
    plone.request(
        "/Plone/@@plone-write", method="POST", body=b"x=1", timeout=60,
        headers=plone.host_headers(
            Authorization=admin,
            **{"Content-Type": "application/x-www-form-urlencoded"}))
    assert "Forbidden: Form authenticator is invalid." in plone.log()
    assert int(get(plone, "/Plone/@@plone-count")[2]) == before + 1


def test_a_stream_is_not_touched_by_plone_transforms(plone):
    status, headers, body = plone.request(
        "/Plone/@@plone-stream", headers=plone.host_headers(), timeout=60)
    assert status == 200
    assert headers["Content-Type"] == "application/octet-stream"
    assert 'filename="data.bin"' in headers["Content-Disposition"]
    assert body == b"".join(bytes([n % 256]) * 1000 for n in range(200))


def test_the_news_feed_is_fetched_once_for_concurrent_visitors(plone):
    # The template first, alone (see WarmNews: a CPython 3.11 compile()
    # race, not the package's); no feed is fetched for it.
    hits = HITS.get("/feed.xml", 0)
    assert get(plone, "/Plone/@@plone-warm-news")[0:3:2] == (200, "warm")
    assert HITS.get("/feed.xml", 0) == hits
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        start = time.monotonic()
        pages = list(pool.map(lambda _: get(plone, "/Plone/@@futures-news"), range(20)))
        took = time.monotonic() - start
    for status, _, body in pages:
        assert status == 200
        assert '<a href="https://example.org/2">Story 2</a>' in body
        assert "++theme++barceloneta" in body
    assert HITS["/feed.xml"] == hits + 1  # one fetch for twenty visitors
    assert took < 10, took  # blocking: 20 x 1 s on 2 threads
    # Kept for its time-to-live: the next visitor needs no second pass.
    start = time.monotonic()
    assert get(plone, "/Plone/@@futures-news")[0] == 200
    assert time.monotonic() - start < 0.9
    assert HITS["/feed.xml"] == hits + 1


def test_suspensions_never_reach_the_error_log_and_real_errors_do(plone):
    # Products.SiteErrorLog records every IPubFailure that is not a
    # TransientError: each suspension was one (SuspendRequest), 20 of them
    # pushed the real error out of Site Setup > Errors (it keeps 20).
    import json

    admin = basic("admin", "secret")
    status, _, _ = get(plone, "/Plone/@@plone-boom")
    assert status == 500
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        pages = list(pool.map(lambda _: get(plone, "/Plone/@@plone-whoami"), range(20)))
    assert [(status, body) for status, _, body in pages] == [
        (200, "user=Anonymous value=computed")] * 20
    status, _, body = get(plone, "/Plone/@@plone-error-log", Authorization=admin)
    assert status == 200
    types = json.loads(body)
    assert "ValueError" in types  # the positive control: real errors stay
    assert "SuspendRequest" not in types
    log = plone.log()
    assert "boom for the error log" in log  # copied to the event log
    assert "SuspendRequest" not in log


def test_the_add_on_uninstalls_and_installs_again(plone):
    # The Add-ons panel said "cannot be uninstalled": no uninstall profile.
    import json

    status, _, body = get(plone, "/Plone/@@plone-uninstall",
                          Authorization=basic("admin", "secret"))
    assert status == 200, body[:500]
    assert json.loads(body) == {
        "installed": True, "uninstall_profile": True, "uninstalled": True,
        "installed_after_uninstall": False, "record_after_uninstall": False,
        "reinstalled": True, "record_after_reinstall": True,
        # The background tasks' PAS plugin goes and comes back with it.
        "plugin": True, "plugin_after_uninstall": False,
        "plugin_after_reinstall": True}
    # The news view still works with the record back (empty: no URL set).
    assert get(plone, "/Plone/@@futures-news")[0] == 200


@pytest.mark.parametrize("path", [
    "/Plone/@@futures",
    "/Plone/@@futures/resultOrSubmit?key=z&placeholder=p&name=rss-feed",
    "/Plone/@@futures/result?key=news",
])
@pytest.mark.parametrize("who", ["anonymous", "manager"])
def test_futures_is_not_published_by_url_on_plone(plone, path, who):
    headers = {"Authorization": basic("admin", "secret")} if who == "manager" else {}
    status, _, _ = get(plone, path, **headers)
    assert status == 404, (path, who, status)


def test_a_viewlet_whose_upstream_fails_degrades_its_part_only(plone):
    # The documented pattern: futures.promise(fn, on_error=[]), the
    # viewlet being docs/plone.rst's code as written (futures_plone_app
    # runs its snippet news-viewlet-on-error). Without on_error (the same
    # code, the control) one failing upstream turns every page that shows
    # the viewlet into a 500.
    status, _, body = get(plone, "/Plone/@@plone-degraded")
    assert status == 200, body[:500]
    # The fallback state, in the doc's words, once in the final page.
    assert body.count("<p>News are unavailable just now.</p>") == 1, body[:2000]
    assert "The page's own content." in body
    assert "++theme++barceloneta" in body
    assert "news.example.org/feed is down" in plone.log()  # logged where it ran
    assert get(plone, "/Plone/@@plone-broken")[0] == 500
