"""Every example of the README runs as it is written (issue 12).

The README's code blocks are each either a snippet (``.. snippet: NAME``
before the block, tests/doc_snippets.py) that a test runs, or a fragment
listed in FRAGMENTS with the reason it cannot run alone: a unit test
reads the README's blocks with docutils and fails on any other block.

The functional tests start a real Zope under real waitress with
tests/readme_app, whose modules run the README's Python snippets at
import, and include the README's ZCML snippets and templates as written,
copied into the instance (the test's files: the package's tree stays
clean). The README's upstreams are replaced by a local HTTP server of
this process (Upstream), the only change to the README's code: in the
weather view and the feed template, their URL; the ``futures:promise``
ZCML is included unchanged, its ``.feeds.fetch_feed`` being
readme_app.feeds (collective.futures.plone.feeds.fetch_feed).
"""

import csv
import http.server
import inspect
import json
import pathlib
import socket
import threading
import urllib.parse

import docutils.core
import docutils.nodes
import pytest

import doc_snippets
from conftest import wait_for
from doc_snippets import ROOT, snippet, substituted
from readme_app import UPSTREAM_VARIABLE
from zopeinstance import ZopeInstance


# Every code block: a snippet that a test runs, or a fragment.

#: Each snippet of the README, and what runs it (which names it): a file,
#: or ``file::function`` for a function of this file.
RUN_BY = {
    "weather-view": "tests/readme_app/views.py",
    "weather-zcml": "tests/test_readme_examples.py::write_readme_files",
    "weather-template": "tests/test_readme_examples.py::write_readme_files",
    "feed-promise": "tests/test_readme_examples.py::write_readme_files",
    "feed-template": "tests/test_readme_examples.py::write_readme_files",
    "status-report": "tests/readme_app/reports.py",
    "shared-viewlet": "tests/futures_sharedapp/views.py",
}

#: The README's blocks that cannot run alone, by their first line, each
#: with the reason.
FRAGMENTS = {
    "./scripts/demo    # set up and start a demo Zope: "
    "http://localhost:8080/@@futures-demo":
        "shell commands, not an example of the API: the scripts they name "
        "are the project's own (./scripts/test runs every test)",
    'futures.submit("report", futures.promise(render_pdf, executor="processes"),':
        "one call, not a program: render_pdf and data are the reader's; "
        "the processes executor is run by tests/test_functional_executors.py",
    "class WeatherViewlet(ViewletBase):":
        "an excerpt of docs/fragments.rst's snippet fragment-viewlet, which "
        "the Plone suite runs (tests_plone/test_plone_fragments.py); "
        "test_the_fragment_excerpt_is_the_manual_s_code keeps it so",
}


def code_blocks(text):
    """``[(first line, language or None, snippet name or None)]`` for every
    literal block of the reStructuredText ``text`` (``.. code::`` blocks
    and ``::`` blocks), as docutils reads it: a block is a snippet when
    the node before it is the comment ``snippet: NAME``."""
    document = docutils.core.publish_doctree(
        text, settings_overrides={"report_level": 4, "halt_level": 4})
    blocks = []
    for block in document.findall(docutils.nodes.literal_block):
        classes = block.get("classes", [])
        language = classes[1] if classes[:1] == ["code"] and len(classes) > 1 else None
        index = block.parent.index(block)
        before = block.parent[index - 1] if index else None
        name = None
        if isinstance(before, docutils.nodes.comment):
            marker = before.astext().strip()
            if marker.startswith("snippet: "):
                name = marker[len("snippet: "):].strip()
        blocks.append((block.astext().splitlines()[0].strip(), language, name))
    return blocks


def unaccounted(text, fragments):
    """The first lines of the blocks of ``text`` that are neither snippets
    nor in ``fragments``."""
    return [first for first, _, name in code_blocks(text)
            if name is None and first not in fragments]


def runner_source(where):
    """The source of what RUN_BY names."""
    path, _, function = where.partition("::")
    if function:
        assert ROOT / path == pathlib.Path(__file__).resolve(), where
        return inspect.getsource(globals()[function])
    return (ROOT / path).read_text(encoding="utf-8")


README = (ROOT / "README.rst").read_text(encoding="utf-8")


def test_every_readme_block_is_a_snippet_or_a_listed_fragment():
    blocks = code_blocks(README)
    assert len(blocks) >= 9, blocks  # the reading finds them
    assert unaccounted(README, FRAGMENTS) == []
    # A fragment that is no longer in the README is dropped from the list.
    assert set(FRAGMENTS) <= {first for first, _, _ in blocks}


def test_the_fragment_excerpt_is_the_manual_s_code():
    excerpt = [block for block in README.split(".. code:: python")
               if block.lstrip().startswith("class WeatherViewlet(ViewletBase):")]
    assert len(excerpt) == 1
    lines = [line.strip() for line in excerpt[0].split("\n\n``")[0].splitlines()
             if line.strip()]
    manual = {line.strip() for line in snippet("docs/fragments.rst",
                                               "fragment-viewlet").splitlines()}
    assert len(lines) == 5 and set(lines) <= manual, lines
    # Positive control: a line the manual does not have is noticed.
    assert "return futures.fragment(weather)" not in manual


def test_every_snippet_of_the_readme_is_run_by_a_test():
    names = [name for _, _, name in code_blocks(README) if name is not None]
    assert sorted(names) == sorted(RUN_BY)
    for first, language, name in code_blocks(README):
        if name is None:
            continue
        # doc_snippets reads the block that docutils reads, in its language.
        code = snippet("README.rst", name, language)
        assert code.splitlines()[0].strip() == first, name
        assert f'"{name}"' in runner_source(RUN_BY[name]), name


def test_an_unmarked_block_is_found():
    # Positive control: a page with a snippet, a fragment and a block that
    # is neither.
    page = ("Title\n=====\n\n.. snippet: one\n\n.. code:: python\n\n    x = 1\n\n"
            ".. code:: xml\n\n    <configure />\n\nRun::\n\n    ./run --fast\n")
    assert code_blocks(page) == [("x = 1", "python", "one"),
                                 ("<configure />", "xml", None),
                                 ("./run --fast", None, None)]
    assert unaccounted(page, {"./run --fast": "a command"}) == ["<configure />"]
    assert unaccounted(page, {}) == ["<configure />", "./run --fast"]


def test_a_snippet_of_another_language(tmp_path, monkeypatch):
    page = tmp_path / "page.rst"
    page.write_text(".. snippet: conf\n\n.. code:: xml\n\n    <configure />\n\n"
                    ".. snippet: code\n\n.. code:: python\n\n    x = 1\n")
    monkeypatch.setattr(doc_snippets, "ROOT", tmp_path)
    assert snippet("page.rst", "conf", "xml") == "<configure />\n"
    assert snippet("page.rst", "code") == "x = 1\n"  # python unless said
    with pytest.raises(ValueError, match="not followed by a python code block "
                                         "but by '.. code:: xml'"):
        snippet("page.rst", "conf")
    with pytest.raises(ValueError, match="not followed by a html code block"):
        snippet("page.rst", "code", "html")


def test_a_substitution_needs_the_address_it_replaces():
    code = 'urlopen("https://api.example.org/weather")\n'
    assert substituted(code, "https://api.example.org/weather",
                       "http://127.0.0.1:8/weather") == \
        'urlopen("http://127.0.0.1:8/weather")\n'
    with pytest.raises(ValueError, match="does not contain 'https://example.org'"):
        substituted(code, "https://example.org", "http://127.0.0.1:8")


# The README's upstreams, on 127.0.0.1.

#: What the weather upstream answers (none of it in the README's template).
WEATHER = {"city": "Lyon", "temperature": 17.5, "summary": "light rain"}
FEED_TITLES = [f"Story {n}" for n in (1, 2, 3)]


class _NamedThreadsServer(http.server.ThreadingHTTPServer):
    """One daemon thread per connection, named as whose it is."""

    daemon_threads = True

    def process_request(self, request, client_address):
        threading.Thread(target=self.process_request_thread,
                         args=(request, client_address),
                         name="test-readme-upstream-connection", daemon=True).start()


class Upstream:
    """The README's upstreams over HTTP, in threads of this process:
    ``/weather`` (WEATHER as JSON), ``/news.xml`` (an RSS feed of
    FEED_TITLES), ``/status/N`` (answers status N, whatever the query).
    ``count(target)`` is how many requests asked for ``target`` (path and
    query)."""

    def __init__(self):
        self._hits = {}
        self._lock = threading.Lock()  # guards _hits: one handler thread each
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                with upstream._lock:
                    upstream._hits[self.path] = upstream._hits.get(self.path, 0) + 1
                path = urllib.parse.urlsplit(self.path).path
                status, kind, body = 200, "application/json", b""
                if path == "/weather":
                    body = json.dumps(WEATHER).encode()
                elif path == "/news.xml":
                    kind = "application/rss+xml"
                    body = ('<?xml version="1.0"?><rss version="2.0"><channel>'
                            + "".join(f"<item><title>{title}</title></item>"
                                      for title in FEED_TITLES)
                            + "</channel></rss>").encode()
                elif path.startswith("/status/"):
                    status = int(path[len("/status/"):])
                else:
                    status = 404
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = _NamedThreadsServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       name="test-readme-upstream", daemon=True)

    def url(self, target):
        return f"http://127.0.0.1:{self.httpd.server_port}{target}"

    def count(self, target):
        with self._lock:
            return self._hits.get(target, 0)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()  # returns once serve_forever has (0.5 s poll)
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def upstream():
    server = Upstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def refused():
    """The URL of an address that refuses connections: a bound socket that
    never listens (held until the module ends, so no one else takes it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


# A real Zope that runs the README's examples.

#: The upstreams the README shows.
README_FEED = "https://example.org/news.xml"

#: The test's own registrations: the feed template as two pages, its feed
#: the local one and the refused address.
FEED_PAGES = """\
<configure xmlns="http://namespaces.zope.org/zope"
           xmlns:browser="http://namespaces.zope.org/browser">
  <browser:page for="*" name="feed" template="feed.pt"
                permission="zope2.View" />
  <browser:page for="*" name="feed-unreachable" template="feed-unreachable.pt"
                permission="zope2.View" />
</configure>
"""


def write_readme_files(directory, upstream, refused):
    """The README's ZCML and templates as files of the instance (the feed
    template's URL replaced); the ZCML files to include, in order."""
    directory.mkdir()
    feed_template = snippet("README.rst", "feed-template", "html")
    files = {
        "weather.zcml": snippet("README.rst", "weather-zcml", "xml"),
        "weather.pt": snippet("README.rst", "weather-template", "html"),
        "feeds.zcml": snippet("README.rst", "feed-promise", "xml"),
        "feed.pt": substituted(feed_template, README_FEED,
                               upstream.url("/news.xml")),
        "feed-unreachable.pt": substituted(feed_template, README_FEED,
                                           refused + "/news.xml"),
        "feed-pages.zcml": FEED_PAGES,
    }
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return [directory / name for name in ("weather.zcml", "feeds.zcml",
                                          "feed-pages.zcml")]


def include_in_site(instance, zcml_files):
    """Include ``zcml_files`` in the instance's site.zcml, after its
    packages, with readme_app as their package: ``.views.WeatherView``
    and ``.feeds.fetch_feed`` are found there, ``weather.pt`` next to the
    file (ZopeInstance includes packages only)."""
    site = instance.home / "etc/site.zcml"
    text = site.read_text()
    assert text.count("</configure>") == 1, text
    includes = "".join(f'  <include package="readme_app" file="{path}" />\n'
                       for path in zcml_files)
    site.write_text(text.replace("</configure>", includes + "</configure>"))


@pytest.fixture(scope="module")
def zope(tmp_path_factory, upstream, refused):
    home = tmp_path_factory.mktemp("zope")
    instance = ZopeInstance(home, threads=2, packages=("readme_app",)).create()
    include_in_site(instance, write_readme_files(home / "readme", upstream, refused))
    # readme_app.views reads the local upstream's URL at import, in the
    # Zope process, which inherits this environment as it starts.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(UPSTREAM_VARIABLE, upstream.url(""))
        instance.start()
    yield instance
    instance.stop()


def collapsed(text):
    return " ".join(text.split())


def metrics(zope):
    status, _, body = zope.request("/@@futures-metrics", headers=zope.admin_headers())
    assert status == 200, body[:300]
    return json.loads(body)


def form_post(zope, path, **form):
    """A ZMI form posted by the Manager (answered with a page or a
    redirect)."""
    body = urllib.parse.urlencode(form, doseq=True).encode()
    status, _, answer = zope.request(path, method="POST", body=body, headers={
        **zope.admin_headers(),
        "Content-Type": "application/x-www-form-urlencoded"})
    assert status in (200, 302), (path, status, answer[:500])


# "Futures in a view"

@pytest.mark.functional
def test_the_weather_view_renders_the_upstream_through_its_template(zope, upstream):
    passes = metrics(zope)["passes"].get("2", 0)
    fetched = upstream.count("/weather")
    status, headers, body = zope.request("/@@weather")
    text = body.decode()
    assert status == 200, text[:500]
    assert headers["Content-Type"].startswith("text/html")
    # The upstream's data, through weather.pt (whose sample text is gone).
    assert collapsed(text) == "<p> Lyon: 17.5 °C, light rain </p>"
    assert upstream.count("/weather") == fetched + 1
    # Pass 1 gave the placeholder and was thrown away: the request took two
    # passes, and the client got only the second.
    assert metrics(zope)["passes"].get("2", 0) == passes + 1
    assert "placeholder" not in text


# "Templates and restricted code"

@pytest.mark.functional
def test_the_feed_template_renders_the_items_of_a_kept_shared_promise(zope, upstream):
    expected = ("<div> <ul> " + " ".join(f"<li>{title}</li>" for title in FEED_TITLES)
                + " </ul> </div>")
    fetched = upstream.count("/news.xml")
    status, text = zope.get("/@@feed")
    assert (status, collapsed(text)) == (200, expected)
    assert upstream.count("/news.xml") == fetched + 1  # the first visitor's
    # shared="true" ttl="300": a later visitor gets the kept feed.
    fetched = upstream.count("/news.xml")
    status, text = zope.get("/@@feed")
    assert (status, collapsed(text)) == (200, expected)
    assert upstream.count("/news.xml") == fetched


@pytest.mark.functional
def test_the_feed_template_fails_when_the_feed_cannot_be_fetched(zope):
    # As the README says: pass 2 fails with the promise's error; neither
    # "Loading…" nor a list reaches the client.
    status, text = zope.get("/@@feed-unreachable")
    assert status == 500, text[:500]
    assert "Loading" not in text and "<li>" not in text
    # The promise's error, raised by resultOrSubmit in the template.
    assert "urllib.error.URLError: <urlopen error" in zope.log()
    assert "Connection refused" in zope.log()


# "A stream"

#: The folder's items: (id, remoteUrl or None, only Managers may view it).
LINKS = [
    ("ok", "/status/200", False),
    ("gone", "/status/404", False),
    ("comma", "/status/200?tags=a,b", False),
    ("down", "refused", False),
    ("plain", None, False),                       # no URL: skipped
    ("mail", "mailto:news@example.org", False),   # not a web link: skipped
    ("private", "/status/203", True),
]


@pytest.fixture(scope="module")
def links(zope, upstream, refused):
    """The folder ``links`` (with a remoteUrl of its own, which its items
    must not acquire) and its items LINKS, each a Folder whose string
    property ``remoteUrl`` stands for Plone's Link; the URLs of the
    items, by id."""
    urls = {}
    form_post(zope, "/manage_addProduct/OFSP/manage_addFolder", id="links")
    form_post(zope, "/links/manage_addProperty", id="remoteUrl", type="string",
              value=upstream.url("/status/200?from=folder"))
    for name, target, private in LINKS:
        form_post(zope, "/links/manage_addProduct/OFSP/manage_addFolder", id=name)
        if target is not None:
            urls[name] = (refused + "/" if target == "refused" else
                          upstream.url(target) if target.startswith("/") else target)
            form_post(zope, f"/links/{name}/manage_addProperty", id="remoteUrl",
                      type="string", value=urls[name])
        if private:
            form_post(zope, f"/links/{name}/manage_permission",
                      permission_to_manage="View", **{"roles:list": "Manager",
                                                       "acquire:int": "0"})
    return urls


def report(zope, headers=None):
    status, response_headers, body = zope.request("/links/@@status-report",
                                                  headers=headers)
    assert status == 200, body[:500]
    assert response_headers["Content-Type"].startswith("text/csv")
    assert response_headers["Content-Disposition"] == 'attachment; filename="status.csv"'
    return list(csv.reader(body.decode().splitlines()))


@pytest.mark.functional
def test_the_status_report_streams_one_row_per_web_link(zope, upstream, links):
    complete = metrics(zope)["streams"].get("complete", 0)
    asked = {target: upstream.count(target) for _, target, _ in LINKS[:3]}
    rows = report(zope)
    assert rows == [["url", "status"], [links["ok"], "200"], [links["gone"], "404"],
                    [links["comma"], "200"], [links["down"], "unreachable"]]
    for target, count in asked.items():
        assert upstream.count(target) == count + 1, target
    # Not acquired: the folder's own URL was never asked for.
    assert upstream.count("/status/200?from=folder") == 0
    # A stream that the server took over from the worker, complete (counted
    # once its last byte is written, maybe just after the client read it).
    wait_for(lambda: metrics(zope)["streams"].get("complete", 0) == complete + 1,
             message="the report counted as a complete stream")


@pytest.mark.functional
def test_the_status_report_lists_a_private_link_for_whom_may_view_it(zope, links):
    rows = report(zope, headers=zope.admin_headers())
    assert rows[-1] == [links["private"], "203"]
    assert len(rows) == 6
    assert [links["private"], "203"] not in report(zope)  # Anonymous
