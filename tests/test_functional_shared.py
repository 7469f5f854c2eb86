"""Shared promises are identified by what they compute (issue 12): the
viewlet snippet of the README and docs/plone.rst (the constant key
``"news"``, the feed's URL as argument) run as it is written, in a real
Zope under real waitress, against a real feed server on 127.0.0.1. Two
URLs under one key get their own items; concurrent requests for one URL
share one fetch; a kept result serves later requests in one pass."""

import concurrent.futures
import http.server
import json
import threading
import time
import urllib.parse

import pytest

from doc_snippets import snippet
from zopeinstance import ZopeInstance


SOURCES = ("README.rst", "docs/plone.rst")


# The snippet as the pages show it (no server needed).

@pytest.mark.parametrize("source", SOURCES)
def test_the_viewlet_snippet_is_where_the_page_shows_it(source):
    code = snippet(source, "shared-viewlet")
    compile(code, source, "exec")
    assert 'futures.resultOrSubmit(\n    "news", None' in code
    assert "futures.promise(fetch_feed, shared=True, ttl=300), url)" in code


def test_a_missing_or_doubled_snippet_is_an_error(tmp_path, monkeypatch):
    import doc_snippets

    page = tmp_path / "page.rst"
    page.write_text(".. snippet: one\n\n.. code:: python\n\n    x = 1\n\nText.\n")
    monkeypatch.setattr(doc_snippets, "ROOT", tmp_path)
    assert snippet("page.rst", "one") == "x = 1\n"  # positive control
    with pytest.raises(ValueError, match="0 snippets named 'two'"):
        snippet("page.rst", "two")
    page.write_text(page.read_text() * 2)
    with pytest.raises(ValueError, match="2 snippets named 'one'"):
        snippet("page.rst", "one")
    page.write_text(".. snippet: one\n\nText.\n")
    with pytest.raises(ValueError, match="not followed by a python code block"):
        snippet("page.rst", "one")


# A real feed server, and a real Zope that runs the snippet.

class _NamedThreadsServer(http.server.ThreadingHTTPServer):
    """One daemon thread per connection, named as whose it is."""

    daemon_threads = True

    def process_request(self, request, client_address):
        threading.Thread(target=self.process_request_thread,
                         args=(request, client_address),
                         name="test-feed-server-connection", daemon=True).start()


class FeedServer:
    """RSS feeds over HTTP on 127.0.0.1, in a thread of this process:
    ``/NAME.xml?delay=S`` answers after S seconds with three items titled
    ``NAME story N``; ``hits`` counts the requests per feed name."""

    def __init__(self):
        self.hits = {}
        self._lock = threading.Lock()  # guards hits: one handler thread each
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                name = url.path.strip("/").removesuffix(".xml")
                with server._lock:
                    server.hits[name] = server.hits.get(name, 0) + 1
                query = urllib.parse.parse_qs(url.query)
                time.sleep(float(query.get("delay", ["0"])[0]))
                body = ('<?xml version="1.0"?><rss version="2.0"><channel>'
                        + "".join(f"<item><title>{name} story {n}</title>"
                                  f"<link>https://example.org/{name}/{n}</link></item>"
                                  for n in (1, 2, 3))
                        + "</channel></rss>").encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = _NamedThreadsServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       name="test-feed-server", daemon=True)

    def url(self, name, delay=0):
        return f"http://127.0.0.1:{self.httpd.server_port}/{name}.xml?delay={delay:g}"

    def count(self, name):
        with self._lock:
            return self.hits.get(name, 0)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()  # returns once serve_forever has (0.5 s poll)
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def feeds():
    server = FeedServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def zope(tmp_path_factory):
    instance = ZopeInstance(
        tmp_path_factory.mktemp("zope"), threads=2,
        packages=("futures_testapp", "futures_sharedapp")).create()
    instance.start()
    yield instance
    instance.stop()


def titles(name):
    return json.dumps([f"{name} story {n}" for n in (1, 2, 3)])


def news(zope, source, url, tag):
    query = urllib.parse.urlencode({"source": source, "url": url, "tag": tag})
    return zope.get(f"/@@news-snippet?{query}")


@pytest.mark.functional
@pytest.mark.parametrize("source", SOURCES)
def test_two_urls_under_one_key_get_their_own_items(zope, feeds, source):
    # Failed before issue 12: the key "news" kept the first feed's items
    # and served them for the second URL for the whole ttl.
    first, second = f"a-{source}", f"b-{source}"
    assert news(zope, source, feeds.url(first), "two") == (200, titles(first))
    assert news(zope, source, feeds.url(second), "two") == (200, titles(second))
    assert (feeds.count(first), feeds.count(second)) == (1, 1)
    # The kept result still serves the same computation, in one pass.
    passes = zope.counters()["two.passes"]
    assert news(zope, source, feeds.url(first), "two") == (200, titles(first))
    assert zope.counters()["two.passes"] == passes + 1
    assert feeds.count(first) == 1


@pytest.mark.functional
def test_concurrent_requests_share_a_fetch_per_url_only(zope, feeds):
    # Ten visitors for each of two slow feeds at once, under one key: one
    # fetch per feed (single flight), and every visitor gets its own feed
    # (before issue 12 all twenty joined the first fetch).
    wanted = {"c1": feeds.url("c1", delay=1), "c2": feeds.url("c2", delay=1)}
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = {name: [pool.submit(news, zope, "docs/plone.rst", url, "many")
                          for _ in range(10)]
                   for name, url in wanted.items()}
        for name, futures_ in answers.items():
            assert {future.result(30) for future in futures_} == {
                (200, titles(name))}, name
    assert (feeds.count("c1"), feeds.count("c2")) == (1, 1)
