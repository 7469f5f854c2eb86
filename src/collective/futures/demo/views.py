"""The demo pages.

``@@futures-demo-futures`` fetches the slow upstream through futures: the
Zope worker is free while the upstream thinks. ``@@futures-demo-blocking``
does the same fetch in the view, holding its worker for the whole wait.
``@@futures-demo`` shows both side by side and fires concurrent requests.
"""

import json
import os
import time
import urllib.request

from collective import futures

from . import upstream


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


class PlainPage(_Page):
    def __call__(self):
        self.request.response.setHeader("Cache-Control", "no-store")
        return "pong"


class DemoPage(_Page):
    def __call__(self):
        self.request.response.setHeader("Content-Type", "text/html; charset=utf-8")
        with open(os.path.join(os.path.dirname(__file__), "demo.html"),
                  encoding="utf-8") as page:
            return page.read()
