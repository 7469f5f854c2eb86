"""A slow upstream HTTP service on 127.0.0.1, run inside the demo Zope
process so the demo needs no other service.

Runs on: its own daemon threads (``collective.futures-demo-upstream`` and one
per connection), never on a Zope worker.

``GET /slow?delay=1.5`` answers after ``delay`` seconds with a small JSON
document, like an external API would; ``GET /feed.xml?delay=2`` with an RSS
feed.
"""

import http.server
import json
import logging
import os
import threading
import time
import urllib.parse


logger = logging.getLogger("collective.futures.demo")

_server = None
_lock = threading.Lock()


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        try:
            delay = min(float(query.get("delay", ["1"])[0]), 30.0)
        except ValueError:
            delay = 1.0
        time.sleep(max(delay, 0.0))
        if url.path == "/feed.xml":
            return self._feed(delay)
        body = json.dumps({
            "upstream": "slow demo service",
            "delay": delay,
            "answered_at": time.strftime("%H:%M:%S"),
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _feed(self, delay):
        items = "".join(
            f"<item><title>Slow news {n}</title><link>https://example.org/{n}</link>"
            f"<pubDate>{time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}"
            f"</pubDate></item>" for n in range(1, 6))
        body = (f'<?xml version="1.0"?><rss version="2.0"><channel><title>Slow feed'
                f' ({delay:g} s)</title>{items}</channel></rss>').encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        logger.debug("upstream: " + format, *args)


def start(port=None):
    """Start the upstream once per process; returns its base URL."""
    global _server
    with _lock:
        if _server is None:
            if port is None:
                port = int(os.environ.get("FUTURES_DEMO_UPSTREAM_PORT", "0"))
            _server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Handler)
            _server.daemon_threads = True
            threading.Thread(
                target=_server.serve_forever, kwargs={"poll_interval": 0.5},
                name="collective.futures-demo-upstream", daemon=True).start()
            logger.info("demo upstream listening on http://127.0.0.1:%d",
                        _server.server_address[1])
        return f"http://127.0.0.1:{_server.server_address[1]}"


def process_starting(event):
    """IProcessStarting subscriber of the demo."""
    start()
