"""The package's 503s on a real Plone 6 site: a site whose error views
render every exception they see (Plone answers a Zope
HTTPServiceUnavailable with a 500) still sends a real 503 with
Retry-After, classic and plone.restapi alike."""

import concurrent.futures
import json

import pytest

from ploneinstance import PloneInstance
from slow_upstream import SlowUpstream


pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def plone(tmp_path_factory):
    upstream = SlowUpstream(delay=1.0).start()
    instance = PloneInstance(tmp_path_factory.mktemp("plone-overload"),
                             feed_url=f"{upstream.url}feed.xml?delay=1",
                             threads=2, server_extra="connection_limit = 500",
                             product_config={"max_suspended": "2",
                                             "retry_after": "7"})
    instance.create().start()
    yield instance
    instance.stop()
    upstream.stop()


def burst(plone, path, count, **headers):
    def one(_):
        return plone.request(path, headers=plone.host_headers(**headers), timeout=60)

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


@pytest.mark.parametrize("accept", ["text/html", "application/json"])
def test_past_max_suspended_a_real_503_with_retry_after(plone, accept):
    answers = burst(plone, "/Plone/@@plone-whoami", 6, Accept=accept)
    statuses = sorted(status for status, _, _ in answers)
    assert 503 in statuses, statuses  # two suspended at most: some refused
    assert 500 not in statuses, statuses
    assert set(statuses) <= {200, 503}, statuses
    for status, headers, body in answers:
        if status == 503:
            assert headers["Retry-After"] == "7"
            assert b"max_suspended" in body
        else:  # the positive control: those admitted are rendered
            assert body == b"user=Anonymous value=computed"
    assert "503 for GET /Plone/@@plone-whoami" in plone.log()


def test_a_rest_api_service_past_max_suspended_is_a_503_too(plone):
    import base64
    auth = "Basic " + base64.b64encode(b"admin:secret").decode()
    answers = burst(plone, "/Plone/@futures-slow", 6, Accept="application/json",
                    Authorization=auth)
    statuses = sorted(status for status, _, _ in answers)
    assert 503 in statuses and 500 not in statuses, statuses
    for status, headers, body in answers:
        if status == 503:
            assert headers["Retry-After"] == "7"
        else:
            assert status == 200 and json.loads(body) == {"value": "json"}


@pytest.fixture(scope="module")
def plone_gunicorn(tmp_path_factory):
    """The same site served by gunicorn (wait mode: no suspension), with
    an executor whose queue holds nothing beyond its one worker."""
    import sys

    upstream = SlowUpstream(delay=1.0).start()
    home = tmp_path_factory.mktemp("plone-gunicorn")
    instance = PloneInstance(
        home, feed_url=f"{upstream.url}feed.xml?delay=1", threads=2,
        product_config={"max_workers": "1", "max_queue": "0", "retry_after": "7"},
        command=[sys.executable, "-m", "gunicorn", "--paste",
                 str(home / "etc/zope.ini"), "--bind", "127.0.0.1:0",
                 "--workers", "1", "--threads", "6", "--worker-class",
                 "gthread", "--timeout", "60", "--no-control-socket"])
    instance.create().start()
    yield instance
    instance.stop()
    upstream.stop()


@pytest.mark.parametrize("accept", ["text/html", "application/json"])
def test_under_another_server_a_full_queue_is_a_503_too(plone_gunicorn, accept):
    # Wait mode (no server of ours to write the 503): the pass's response
    # becomes the 503, which Plone's error views never see.
    answers = burst(plone_gunicorn, "/Plone/@@plone-whoami", 6, Accept=accept)
    statuses = sorted(status for status, _, _ in answers)
    assert 503 in statuses and 500 not in statuses, statuses
    assert set(statuses) <= {200, 503}, statuses
    for status, headers, body in answers:
        if status == 503:
            assert headers.get("Retry-After") == "7", headers
            # The package's own 503, untouched by the theme, plone.protect
            # or a caching rule (the transform chain is switched off for it).
            assert body.startswith(b"Service Unavailable: "), body[:200]
            assert "public" not in headers.get("Cache-Control", ""), headers
        else:
            assert body == b"user=Anonymous value=computed"
    assert "wait mode" in plone_gunicorn.log()
