"""Fragments on a real Plone site (issue 16): docs/fragments.rst's viewlet
and portlet, as written there, on the site's front page themed by Diazo
(Barceloneta), served by waitress over HTTP, their upstream a real HTTP
server."""

import concurrent.futures
import re
import socket
import time

import pytest

from waiting import wait_for
from ploneinstance import PloneInstance
from rawhttp import read_until
from slow_upstream import SlowUpstream


pytestmark = pytest.mark.functional

HOLE = "data-futures-fragment"
FORECAST = ('<ul class="weather"><li>Day 1: Story 1</li><li>Day 2: Story 2</li>'
            '<li>Day 3: Story 3</li></ul>')


@pytest.fixture(scope="module")
def upstream():
    service = SlowUpstream(delay=0).start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def plone(tmp_path_factory, upstream):
    instance = PloneInstance(tmp_path_factory.mktemp("plone-fragments"),
                             feed_url=f"{upstream.url}feed.xml?delay=0",
                             threads=2, server_extra="connection_limit = 500")
    instance.create().start()
    yield instance
    instance.stop()


def get(plone, path):
    status, headers, body = plone.request(path, headers=plone.host_headers(), timeout=60)
    return status, headers, body.decode("utf-8", "replace")


def one_pass_lines(plone):
    return re.findall(r"GET /Plone: 200 in one pass, .*", plone.log())


def test_the_viewlet_fills_its_hole_in_the_themed_page_in_one_pass(plone):
    before = len(one_pass_lines(plone))
    status, headers, body = get(plone, "/Plone?weather=fragment&delay=0.3")
    assert status == 200
    # The renderer's markup, as it wrote it (after Diazo, which never saw
    # it, and quotes attributes its own way), once, in the themed page.
    assert body.count("<ul class='weather'><li>Day 1: Story 1</li>") == 1, body[-3000:]
    assert HOLE not in body
    assert "++theme++barceloneta" in body and body.count("<html") == 1
    assert headers.get("X-Frame-Options") == "SAMEORIGIN"  # plone.protect ran
    # The viewlet sits below the content, where the page put its hole.
    assert body.index("<ul class='weather'>") > body.index('id="content"')
    wait_for(lambda: len(one_pass_lines(plone)) > before)
    assert "weather [threads]" in one_pass_lines(plone)[-1]
    assert "rendered" in one_pass_lines(plone)[-1]


def test_the_same_viewlet_as_a_promise_takes_two_passes(plone):
    # The control: the documented alternative renders the page twice.
    status, _, body = get(plone, "/Plone?weather=twopass&delay=0.3")
    assert status == 200 and FORECAST in body  # through Diazo: its quotes
    wait_for(lambda: "GET /Plone: 200 after 2 passes" in plone.log())


def test_an_upstream_that_fails_gives_the_viewlet_its_own_fallback(plone):
    status, _, body = get(plone, "/Plone?weather=down")
    assert status == 200
    assert "<p class='weather'>No forecast just now.</p>" in body
    assert "++theme++barceloneta" in body
    wait_for(lambda: "weather [threads]" in plone.log() and "fallback (URLError)" in plone.log())


def test_the_portlet_fills_its_hole_with_escaped_data(plone):
    status, _, body = get(plone, "/Plone?prices=1&prices_delay=0.2")
    assert status == 200
    # The portlet's frame went through Diazo (its quotes), its hole not.
    assert 'class="portlet portletPrices"' in body
    assert "<dl><dt>Story 1</dt><dd>1.00 EUR &lt;&amp;&gt;</dd>" in body
    assert HOLE not in body


def test_a_page_with_both_fills_both_holes_in_one_pass(plone):
    status, _, body = get(plone, "/Plone?weather=fragment&prices=1")
    assert status == 200
    assert "<ul class='weather'>" in body and "<dl><dt>Story 1</dt>" in body
    wait_for(lambda: any("2 fragment(s) filled" in line for line in one_pass_lines(plone)))


def test_a_page_of_fragments_is_not_kept_in_the_ram_cache_with_its_holes(plone, upstream):
    # plone.app.caching is on: the control, a page without fragments, is
    # answered from its RAM cache the second time.
    get(plone, "/Plone?weather=none&control=1")
    _, headers, _ = get(plone, "/Plone?weather=none&control=1")
    assert "x-ramcache" in {name.lower() for name in headers}
    for _ in range(2):
        status, headers, body = get(plone, "/Plone?weather=fragment&cached=1")
        assert status == 200 and "<ul class='weather'>" in body
        assert HOLE not in body
        assert "x-ramcache" not in {name.lower() for name in headers}


def test_mixed_fragment_and_promise_say_so_in_the_request_log(plone):
    status, _, body = get(plone, "/Plone?weather=twopass&prices=1")
    assert status == 200
    assert FORECAST in body and "<dl><dt>Story 1</dt>" in body
    wait_for(lambda: "as the page mixes them with promises: prices" in plone.log())


def test_twenty_visitors_on_two_threads_are_answered_together(plone):
    """threads = 2, 20 visitors whose viewlet's upstream takes 1 s: the
    workers are free while the fragments wait (blocking: 10 s)."""
    def visit(_):
        started = time.monotonic()
        status, _, body = get(plone, "/Plone?weather=fragment&delay=1")
        return status, "<ul class='weather'>" in body, time.monotonic() - started

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        started = time.monotonic()
        results = list(pool.map(visit, range(20)))
        total = time.monotonic() - started
    assert all(status == 200 and filled for status, filled, _ in results), results
    assert total < 5, total


def test_a_progressive_front_page_comes_before_its_slow_viewlet(plone):
    # Warm (a first page compiles its templates: seconds), then measured.
    assert get(plone, "/Plone?weather=fragment&progressive=1&delay=0")[0] == 200
    with socket.create_connection(plone.address, timeout=30) as sock:
        started = time.monotonic()
        sock.sendall(f"GET /Plone?weather=fragment&progressive=1&delay=1.5 HTTP/1.1\r\n"
                     f"Host: localhost:{plone.port}\r\nConnection: close\r\n\r\n".encode())
        firsts = []

        def seen(data):
            if not firsts and b"++theme++barceloneta" in data:
                firsts.append(time.monotonic() - started)

        data = read_until(sock, b"</html>", started + 30, seen)
        last = time.monotonic() - started
        first = firsts[0] if firsts else None
    assert first is not None and first < 1.0, first  # the themed page, early
    assert last >= 1.4, last
    text = data.decode("utf-8", "replace")
    assert text.index("++theme++barceloneta") < text.index('<template data-futures-fill="')
    assert "<ul class='weather'><li>Day 1: Story 1</li>" in text
