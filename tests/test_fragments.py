"""Fragments in a real Zope served by real waitress, over real sockets: a
page whose promises are all fragments renders once, is committed with its
holes, and has them filled outside the worker (issue 16)."""

import json
import re
import socket
import time

import pytest

from conftest import wait_for
from rawhttp import read_until
from test_demo_browser import chromium  # noqa: F401 - the fixture


pytestmark = pytest.mark.functional

HOLE = re.compile(r'<span data-futures-fragment="[0-9a-f]{16}"></span>')


def passes(zope):
    return zope.counters().get("fragment-page.passes", 0)


def slot(body, n=0):
    match = re.search(rf"<div id='slot{n}'>(.*?)</div>", body, re.S)
    assert match, body
    return match.group(1)


def test_a_page_of_fragments_renders_once_and_fills_its_holes(zope):
    before = passes(zope)
    status, body = zope.get("/@@fragment-page?delay=0.2&n=2")
    assert status == 200
    assert passes(zope) == before + 1  # one pass: the page rendered once
    assert slot(body, 0) == "<ul class='news'><li>item0 1</li><li>item0 2 &lt;b&gt;&amp;</li></ul>"
    assert slot(body, 1).startswith("<ul class='news'><li>item1 1</li>")
    assert not HOLE.search(body)
    assert body.endswith("<p>The end of the page.</p></body></html>")
    wait_for(lambda: "GET /@@fragment-page: 200 in one pass, 2 fragment(s) filled"
             in zope.log())


def test_the_manual_s_log_line_is_the_one_written(zope):
    from doc_snippets import ROOT
    text = (ROOT / "docs/fragments.rst").read_text()
    line = re.search(r"^    (GET /Plone: 200 in one pass.*)$", text, re.M).group(1)
    # Its shape: the path, key and figures are the example's.
    shape = re.escape(line)
    shape = re.sub(r"\\ (\d|\\\.)+s", r" [\\d.]+s", shape)
    for example, real in (("/Plone", r"/@@fragment\-page"), ("weather", "part0"),
                          ("48213", r"\d+")):
        shape = shape.replace(re.escape(example), real)
    zope.get("/@@fragment-page?delay=0.1")
    assert wait_for(lambda: re.search(shape, zope.log())), shape
    # Positive control: the shape is not so loose that anything matches.
    assert not re.search(shape, line.replace("in one pass", "after 2 passes"))


def test_the_control_a_page_with_an_ordinary_promise_takes_two_passes(zope):
    before = passes(zope)
    status, body = zope.get("/@@fragment-page?delay=0.2&mixed=1")
    assert status == 200
    assert passes(zope) == before + 2
    # The fragment's HTML in its place all the same, and the promise's.
    assert slot(body).startswith("<ul class='news'><li>item0 1</li>")
    assert "<p id='mixed'>ordinary after 0.2s</p>" in body
    wait_for(lambda: "fragments rendered in a later pass, as the page mixes them "
             "with promises: part0" in zope.log())


def test_text_from_a_renderer_is_escaped_and_markup_is_not(zope):
    status, body = zope.get("/@@fragment-page?delay=0&render=text&text=" +
                            "%3Cscript%3Ealert(1)%3C/script%3E")
    assert status == 200
    assert slot(body) == "text: &lt;script&gt;alert(1)&lt;/script&gt;"
    assert "<script>alert" not in body


def test_a_failing_promise_gives_the_part_its_on_error_rendering(zope):
    status, body = zope.get("/@@fragment-page?fail=1&on_error=degraded")
    assert status == 200
    assert slot(body) == "<ul class='news'><li>degraded</li></ul>"


def test_a_failing_promise_without_on_error_gives_the_site_fallback(zope):
    status, body = zope.get("/@@fragment-page?fail=1")
    assert status == 200
    assert slot(body) == ""  # fragment_fallback's default: nothing
    assert "The end of the page." in body


@pytest.mark.parametrize("render, logged", [
    ("raising", "RuntimeError: this renderer fails"),
    # A renderer has no request: using one fails loudly, in the log.
    ("request", "a promise has no request (it tried request.get)"),
])
def test_a_failing_renderer_gives_the_fallback_and_is_logged(zope, render, logged):
    status, body = zope.get(f"/@@fragment-page?delay=0&render={render}")
    assert status == 200
    assert slot(body) == ""
    wait_for(lambda: logged in zope.log())


def test_a_renderer_runs_as_nobody(zope):
    status, body = zope.get("/@@fragment-page?delay=0&render=user",
                            headers=zope.admin_headers())
    assert status == 200
    assert slot(body) == "user=Anonymous User"


def test_a_renderer_that_belongs_to_the_view_is_refused_at_the_call(zope):
    status, body = zope.get("/@@fragment-method-renderer")
    assert status == 200
    assert body.startswith("refused: collective.futures.fragment(): render: it is "
                           "a method of a view")


def test_a_placeholder_written_into_content_is_left_as_it_is(zope):
    # The positive control: the real hole of the same page is filled.
    status, body = zope.get("/@@fragment-forged")
    assert status == 200
    assert "<div id='real'>text: filled</div>" in body
    assert ("<div id='forged'><span data-futures-fragment=\"0123456789abcdef\">"
            "</span></div>") in body


def test_a_head_request_computes_no_fragment(zope):
    before = zope.counters().get("fragment-head.started", 0)
    status, _, body = zope.request(
        "/@@fragment-page?delay=0&text=x&counter=fragment-head", method="HEAD")
    assert status == 200 and body == b""
    status, _, _ = zope.request("/@@fragment-page?delay=0", method="HEAD")
    wait_for(lambda: "fragment(s) nothing to fill" in zope.log())
    assert zope.counters().get("fragment-head.started", 0) == before


def test_twenty_fragment_pages_on_two_threads_do_not_block(zope):
    """threads = 2, 20 concurrent pages whose fragment takes 1 s: the
    workers are freed once each page is rendered, and a plain page stays
    fast meanwhile."""
    results, total, probes = zope.load_with_probes(
        "/@@fragment-page?delay=1&render=text&text=slow", 20)
    assert all(status == 200 and "<div id='slot0'>text: slow</div>" in body
               for status, body, _ in results), results[0]
    assert total < 5, total
    assert probes and max(probes) < 1.0, probes


def test_the_metrics_count_pages_and_fragments(zope):
    zope.get("/@@fragment-page?delay=0&n=2")
    zope.get("/@@fragment-page?fail=1")

    def figures():
        _, _, body = zope.request("/@@futures-metrics", headers=zope.admin_headers())
        return json.loads(body)

    data = wait_for(lambda: figures() if figures()["fragments"].get("fallback") else None)
    assert data["fragment_pages"]["filled"] >= 2
    assert data["fragments"]["rendered"] >= 2
    assert data["passes"]["1"] >= 2
    status, _, text = zope.request("/@@futures-metrics?format=prometheus",
                                   headers=zope.admin_headers())
    text = text.decode()
    assert status == 200
    assert re.search(r'collective_futures_fragment_pages_total\{delivery="filled"\} \d', text)
    assert re.search(r'collective_futures_fragments_total\{outcome="fallback"\} \d', text)


def test_a_template_submits_a_named_promise_as_a_fragment(zope):
    status, body = zope.get("/@@fs-fragment?text=%3Chi%3E")
    assert status == 200
    assert "<div id=\"shout\"><strong class='shout'>&lt;HI&gt;</strong></div>" in body


# Progressive delivery: the page first, each fragment as it comes

def test_a_progressive_page_sends_its_first_byte_before_the_slow_result(zope):
    with socket.create_connection(zope.address, timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /@@fragment-page?delay=1.5&progressive=1&render=text&text=late "
                     b"HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        head = read_until(sock, b"The end of the page.", started + 10)
        first = time.monotonic() - started
        rest = read_until(sock, b"</html>", started + 20)
        last = time.monotonic() - started
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"Transfer-Encoding: chunked" in head
    assert HOLE.search(head.decode())
    assert first < 1.0, first  # the page, long before the 1.5 s promise
    assert last >= 1.4, last
    assert b'<template data-futures-fill="' in rest and b"text: late" in rest
    assert b"</body></html>" in rest


@pytest.mark.parametrize("method, version", [("HEAD", "1.1"), ("GET", "1.0")])
def test_clients_that_cannot_take_it_get_the_page_filled(zope, method, version):
    # HTTP/1.0 cannot take chunked output; HEAD has no body to stream.
    with socket.create_connection(zope.address, timeout=10) as sock:
        sock.sendall(f"{method} /@@fragment-page?delay=0&progressive=1&render=text&text=x "
                     f"HTTP/{version}\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                     .encode())
        data = read_until(sock, b"\x00never", time.monotonic() + 5)
    assert b" 200 " in data.split(b"\r\n", 1)[0], data[:200]
    assert b"Transfer-Encoding: chunked" not in data
    assert b"<template" not in data
    if method == "GET":
        assert b"<div id='slot0'>text: x</div>" in data


def test_a_client_that_hangs_up_stops_a_progressive_page(zope):
    with socket.create_connection(zope.address, timeout=10) as sock:
        sock.sendall(b"GET /@@fragment-page?delay=3&progressive=1&text=gone&path=hangup "
                     b"HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert HOLE.search(read_until(sock, b"end of the page", time.monotonic() + 5).decode())
    # The round is cancelled at once, its fragment never rendered.
    started = time.monotonic()
    wait_for(lambda: re.search(r"fragment\(s\) progressive in \d+\.\d+s, \d+ bytes "
                               r"\(client gone\); fragments: part0 \[threads\] "
                               r"[\d.]+s fallback \(FutureCancelledError\)",
                               zope.log()), timeout=10)
    assert time.monotonic() - started < 2.5  # not when the 3 s promise ends


# Other settings: a timeout, the site's fallback, wait mode

@pytest.fixture(scope="module")
def strict_zope(tmp_path_factory):
    from zopeinstance import ZopeInstance
    instance = ZopeInstance(tmp_path_factory.mktemp("fragments"), threads=2, product_config={
        "timeout": "1", "fragment_fallback": "<em class='na'>Not available</em>"}).create()
    instance.start()
    yield instance
    instance.stop()


def test_a_fragment_past_the_timeout_gets_the_fallback(strict_zope):
    started = time.monotonic()
    status, body = strict_zope.get("/@@fragment-page?delay=3&render=text&text=late&n=1")
    took = time.monotonic() - started
    assert status == 200
    assert slot(body) == "<em class='na'>Not available</em>"
    assert 0.9 < took < 2.9, took
    wait_for(lambda: "part0 [threads] 1.0" in strict_zope.log()
             and "fallback (FutureTimeoutError)" in strict_zope.log())


def test_a_hostile_promise_raising_base_exception_gets_the_fallback(strict_zope):
    for fail in ("SystemExit", "KeyboardInterrupt"):
        status, body = strict_zope.get(f"/@@fragment-page?fail={fail}")
        assert status == 200 and slot(body) == "<em class='na'>Not available</em>"
    wait_for(lambda: "fallback (FutureAbortedError)" in strict_zope.log())
    # and the server still serves
    assert strict_zope.get("/@@plain")[0] == 200


def test_without_suspension_the_worker_fills_the_page_in_one_pass(make_zope):
    zope = make_zope(product_config={"suspend": "off"})
    before = passes(zope)
    status, headers, body = zope.request("/@@fragment-page?delay=0.2&render=text&text=waited")
    body = body.decode()
    assert status == 200
    assert passes(zope) == before + 1
    assert "<div id='slot0'>text: waited</div>" in body
    assert int(headers["Content-Length"]) == len(body.encode())
    wait_for(lambda: "1 fragment(s) waited" in zope.log())


# Odd pages and hostile parts (found by review)

def test_a_fragment_in_a_streamed_response_is_dropped_and_the_stream_goes_out(zope):
    before = zope.counters().get("odd-case.started", 0)
    status, body = zope.get("/@@fragment-odd?case=stream")
    assert (status, body) == (200, "streamed")
    assert zope.counters().get("odd-case.started", 0) == before  # never computed


def test_a_fragment_of_a_redirect_is_not_computed(zope):
    before = zope.counters().get("odd-case.started", 0)
    status, headers, _ = zope.request("/@@fragment-odd?case=redirect")
    assert status == 302 and headers["Location"].endswith("/@@plain")
    wait_for(lambda: "a 302 response is not a page anyone sees" in zope.log())
    assert zope.counters().get("odd-case.started", 0) == before


def test_a_renderer_closing_over_the_view_is_refused_at_the_call(zope):
    status, body = zope.get("/@@fragment-odd?case=closure")
    assert status == 200
    assert body == ("refused: collective.futures.fragment(): render: it closes over "
                    "a view (it holds the request and its context): use a "
                    "module-level function of plain data")


@pytest.mark.parametrize("case, was", [("reuse", "fragment"), ("reuse-reversed", "promise")])
def test_a_key_is_a_fragment_or_a_promise_not_both(zope, case, was):
    status, body = zope.get(f"/@@fragment-odd?case={case}")
    assert status == 200
    assert f"'k' was submitted as a {was} in this pass" in body


@pytest.mark.parametrize("query", ["", "&mixed=1"])
def test_a_renderer_raising_system_exit_fails_its_hole_not_the_page(zope, query):
    status, body = zope.get(f"/@@fragment-page?delay=0&render=exit{query}")
    assert status == 200
    assert slot(body) == ""
    assert "The end of the page." in body
    wait_for(lambda: "SystemExit: a renderer that exits" in zope.log())


def test_a_committed_page_past_max_streams_goes_out_with_its_fallbacks(make_zope):
    # Not a 503: the page's transaction is committed (a POST's write done).
    zope = make_zope(product_config={"max_streams": "1",
                                     "fragment_fallback": "<i>later</i>"})
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: zope.get(
            "/@@fragment-page?delay=1&render=text&text=slow"), range(3)))
    assert [status for status, _ in results] == [200, 200, 200]
    slots = sorted(slot(body) for _, body in results)
    assert "<i>later</i>" in slots and "text: slow" in slots, slots
    wait_for(lambda: "stream fragments refused with its fallback: 1 streams are open "
             "(max_streams)" in zope.log())
    # Counted as pages filled (with fallbacks), and the scrape still works.
    status, _, text = zope.request("/@@futures-metrics?format=prometheus",
                                   headers=zope.admin_headers())
    assert status == 200
    assert 'collective_futures_fragment_pages_total{delivery="filled"} 3.0' in text.decode()


def test_a_renderer_that_never_returns_gets_the_fallback_at_the_deadline(strict_zope):
    started = time.monotonic()
    status, body = strict_zope.get("/@@fragment-page?delay=0&render=hanging")
    took = time.monotonic() - started
    assert status == 200
    assert slot(body) == "<em class='na'>Not available</em>"
    assert 5.5 < took < 10, took  # timeout (1 s) and the renderers' grace (5 s)
    wait_for(lambda: "stream fragments produced nothing within 6 s: its fallback"
             in strict_zope.log())
    assert strict_zope.get("/@@plain")[0] == 200


def test_without_suspension_a_renderer_raising_system_exit_fails_its_hole(make_zope):
    zope = make_zope(product_config={"suspend": "off"})
    status, body = zope.get("/@@fragment-page?delay=0&render=exit")
    assert status == 200 and slot(body) == ""


def test_a_real_browser_moves_each_progressive_fragment_into_its_hole(zope, chromium, tmp_path):
    """Headless Chromium loads a progressive page and runs its script: the
    DOM it ends with has each fragment in its place, no hole and no
    template left."""
    import subprocess
    url = (f"{zope.url}/@@fragment-page?delay=0.5&progressive=1&n=2&render=text"
           f"&text=%3Cb%3Elate%3C/b%3E")
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu",
         f"--user-data-dir={tmp_path}", "--dump-dom", url],
        capture_output=True, text=True, timeout=60)
    dom = done.stdout
    assert done.returncode == 0, done.stderr[-2000:]
    assert '<div id="slot0">text: &lt;b&gt;late&lt;/b&gt;</div>' in dom, dom
    assert '<div id="slot1">text: &lt;b&gt;late&lt;/b&gt;</div>' in dom, dom
    assert "<span data-futures-fragment" not in dom and "<template" not in dom
    # The control: the same page as sent, before any script ran, has both.
    status, _, sent = zope.request(url.replace(zope.url, ""))
    assert b"<span data-futures-fragment" in sent and b"<template" in sent
