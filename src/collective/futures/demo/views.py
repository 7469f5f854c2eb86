"""The demo pages.

``@@futures-demo-futures`` fetches the slow upstream through futures: the
Zope worker is free while the upstream thinks. ``@@futures-demo-blocking``
does the same fetch in the view, holding its worker for the whole wait.
``@@futures-demo`` shows both side by side: ``@@futures-demo-race`` has
this Zope fire concurrent requests at one of them and streams the timings.
"""

import json
import os
import time
import urllib.request
import zipfile

from collective import futures
from collective.futures import AsyncWorkerStreamIterator, StreamResult

from . import race, upstream


TIMEOUT = 10.0


def fetch_json(url, timeout=TIMEOUT):
    """The promise: plain data in, plain data out; no ZODB, no request."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def _delay(request):
    try:
        return max(0.0, min(float(request.form.get("delay", 1)), 10.0))
    except ValueError:
        return 1.0


class _Page:
    def __init__(self, context, request):
        self.context = context
        self.request = request

    def upstream_url(self):
        return f"{upstream.start()}/slow?delay={_delay(self.request):g}"

    def render(self, how, data, started):
        self.request.response.setHeader("Content-Type", "application/json")
        self.request.response.setHeader("Cache-Control", "no-store")
        return json.dumps({
            "how": how,
            "pid": os.getpid(),
            "upstream": data,
            "render_ms": round((time.monotonic() - started) * 1000, 1),
        })


class FuturesPage(_Page):
    def __call__(self):
        started = time.monotonic()
        data = futures.resultOrSubmit(
            "demo-upstream", None, fetch_json, self.upstream_url())
        return self.render("futures", data, started)


class BlockingPage(_Page):
    def __call__(self):
        started = time.monotonic()
        data = fetch_json(self.upstream_url())
        return self.render("blocking", data, started)


class _Chunks:
    """A write-only file for zipfile that hands out what was written."""

    def __init__(self):
        self.parts = []

    def write(self, data):
        self.parts.append(bytes(data))
        return len(data)

    def flush(self):
        pass

    def take(self):
        data, self.parts = b"".join(self.parts), []
        return data


def zip_export(urls):
    """The stream's fn: fetch each URL and stream a zip of the answers, one
    member at a time (memory holds one member, not the archive)."""
    def members():
        out = _Chunks()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            for number, url in enumerate(urls, 1):
                with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
                    archive.writestr(f"answer-{number}.json", response.read())
                yield out.take()
        yield out.take()

    return StreamResult(members(), content_type="application/zip",
                        filename="upstream-export.zip")


class ExportPage(_Page):
    def __call__(self):
        try:
            count = max(1, min(int(self.request.form.get("n", 5)), 20))
        except ValueError:
            count = 5
        urls = [f"{upstream.start()}/slow?delay=0.2&n={i}" for i in range(count)]
        return AsyncWorkerStreamIterator(zip_export, self.request, urls)


class FeedPage(_Page):
    """The seed's example: a slow RSS feed, through a shared promise kept
    for a minute, so only the first visitor in a minute waits for it."""

    def __call__(self):
        from collective.futures.plone.feeds import fetch_feed
        url = f"{upstream.start()}/feed.xml?delay={_delay(self.request):g}"
        items = futures.resultOrSubmit(
            "demo-feed", None, futures.promise(fetch_feed, shared=True, ttl=60), url)
        self.request.response.setHeader("Content-Type", "text/html; charset=utf-8")
        rows = "".join(f'<li><a href="{i["link"]}">{i["title"]}</a></li>'
                       for i in items or ())
        return (f"<!DOCTYPE html><html><body><h1>News (a slow feed)</h1>"
                f"<ul>{rows}</ul><p>Fetched at most once a minute, in a side "
                f"thread; reload: it is instant now.</p></body></html>")


class PlainPage(_Page):
    def __call__(self):
        self.request.response.setHeader("Cache-Control", "no-store")
        return "pong"


class RacePage(_Page):
    """``@@futures-demo-race?how=futures|blocking&n=10&delay=1``: this Zope
    fires ``n`` concurrent requests at ``@@futures-demo-{how}`` and probes
    the plain page meanwhile, from side threads, streaming one JSON line per
    finished request (see race.py). A ``how`` that is neither, or an ``n``
    or ``delay`` that is not a number, is a 400 naming the argument;
    numbers out of range are clamped (1..20 requests, 0..3 s). A 503 when
    another race is running, or when 127.0.0.1 cannot reach this server.
    """

    def __call__(self):
        response = self.request.response
        response.setHeader("Cache-Control", "no-store")
        response.setHeader("X-Content-Type-Options", "nosniff")
        try:
            how, n, delay = race.parameters(self.request.form)
        except ValueError as exc:
            return self.refuse(400, str(exc))
        try:
            port, threads = race.own_server(self.request.environ)
        except LookupError as exc:
            return self.refuse(503, str(exc))
        return AsyncWorkerStreamIterator(
            race.run, self.request, port, threads, how, n, delay)

    def refuse(self, status, message):
        self.request.response.setStatus(status)
        self.request.response.setHeader("Content-Type", "text/plain; charset=utf-8")
        return message + "\n"


class DemoPage(_Page):
    def __call__(self):
        self.request.response.setHeader("Content-Type", "text/html; charset=utf-8")
        with open(os.path.join(os.path.dirname(__file__), "demo.html"),
                  encoding="utf-8") as page:
            return page.read()
