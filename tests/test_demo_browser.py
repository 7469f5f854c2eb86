"""The demo convinces in a real browser: headless Chromium loads
``@@futures-demo?autorun=1`` from a real demo instance (waitress,
``threads = 2``), the page runs both sides, and the test reads what the
page shows once it says it is done.

Chromium is driven over the DevTools protocol on a pipe
(``--remote-debugging-pipe``: it reads commands on its fd 3 and writes on
its fd 4, each message JSON ended by a NUL byte) by the small client below,
so the test waits for the page's own marker (``data-demo-done``, set when
the streamed races have ended), with a deadline, rather than guessing a
time budget.

Without ``chromium`` (or ``chromium-browser``) on PATH the test is skipped,
unless ``CI=true`` or ``REQUIRE_BROWSER=1``: then it fails.
``DEMO_SCREENSHOT=path`` writes a screenshot of the finished page there
(``docs/_static/demo.png`` is made so); a normal run writes nothing.
"""

import base64
import fcntl
import json
import os
import pathlib
import select
import shutil
import subprocess
import sys
import time

import pytest

from zopeinstance import ZopeInstance


pytestmark = pytest.mark.functional

N, DELAY = 10, 1
WINDOW = (1280, 1000)

EXEC_WITH_PIPE = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
    "os.execv(sys.argv[3], sys.argv[3:])")

#: What the page shows, read in one evaluation when it is done.
READ_PAGE = """JSON.stringify((() => {
  const data = id => ({...document.getElementById(id).dataset,
                       text: document.getElementById(id).textContent});
  const count = selector => document.querySelectorAll(selector).length;
  return {
    done: document.body.dataset.demoDone || null,
    error: document.body.dataset.demoError || null,
    futures: data("futures-total"), blocking: data("blocking-total"),
    futuresPlain: data("futures-plain-worst"),
    blockingPlain: data("blocking-plain-worst"),
    futuresBars: count("#futures-chart .bar.request"),
    blockingBars: count("#blocking-chart .bar.request"),
    ticks: [...document.querySelectorAll("#blocking-chart .tick")].map(t => t.textContent),
    viewport: [innerWidth, innerHeight],
  };
})())"""


def find_chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def chromium():
    binary = find_chromium()
    if binary is None:
        required = (os.environ.get("CI") == "true"
                    or os.environ.get("REQUIRE_BROWSER") == "1")
        reason = ("no chromium or chromium-browser on PATH (Debian: apt-get "
                  "install chromium)")
        if required:
            pytest.fail(f"{reason}; CI=true or REQUIRE_BROWSER=1 requires the "
                        f"browser test", pytrace=False)
        pytest.skip(f"{reason}; CI=true or REQUIRE_BROWSER=1 turns this skip "
                    f"into a failure")
    return binary


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    instance = ZopeInstance(tmp_path_factory.mktemp("demo"), threads=2,
                            packages=("collective.futures.demo",)).create()
    instance.start()
    yield instance
    instance.stop()


class DevTools:
    """A minimal DevTools protocol client over Chromium's pipe, used from
    the test's thread only; every read has a deadline."""

    def __init__(self, to_browser, from_browser):
        self.to_browser = to_browser      # our end of Chromium's fd 3
        self.from_browser = from_browser  # our end of Chromium's fd 4
        self.buffer = b""
        self.last_id = 0

    def call(self, method, params=None, session=None, timeout=30):
        """Send one command; return its result (events are skipped)."""
        self.last_id += 1
        message = {"id": self.last_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:  # a command is far smaller than a pipe's buffer
            data = data[os.write(self.to_browser, data):]
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline, method)
            if reply.get("id") == self.last_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _read(self, deadline, method):
        while b"\0" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"chromium did not answer {method} in time")
            # Why wait: Chromium's answer; bounded by the call's deadline.
            ready, _, _ = select.select([self.from_browser], [], [], remaining)
            if ready:
                data = os.read(self.from_browser, 1 << 16)
                if not data:
                    raise RuntimeError("chromium closed its DevTools pipe")
                self.buffer += data
        message, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(message)

    def evaluate(self, session, expression):
        result = self.call("Runtime.evaluate", {
            "expression": expression, "returnByValue": True}, session)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")


def _pipe():
    """A pipe whose descriptors are 10 or more, so that putting its ends on
    3 and 4 in the child cannot overwrite one with the other."""
    ends = os.pipe()
    try:
        return tuple(fcntl.fcntl(end, fcntl.F_DUPFD_CLOEXEC, 10) for end in ends)
    finally:
        for end in ends:
            os.close(end)


class Chromium:
    """Headless Chromium in a subprocess, with one page attached."""

    def __init__(self, binary, home):
        self.binary = binary
        self.home = pathlib.Path(home)

    def __enter__(self):
        to_read, to_write = _pipe()      # us -> Chromium's fd 3
        from_read, from_write = _pipe()  # Chromium's fd 4 -> us
        self.log = open(self.home / "chromium.log", "wb")
        args = [
            "--headless", "--remote-debugging-pipe",
            # The sandbox needs user namespaces, which containers and root
            # (CI) often lack; the page is this test's own.
            "--no-sandbox",
            "--disable-gpu", "--disable-dev-shm-usage", "--disable-extensions",
            "--no-first-run", "--no-default-browser-check", "--mute-audio",
            "--hide-scrollbars", f"--window-size={WINDOW[0]},{WINDOW[1]}",
            f"--user-data-dir={self.home / 'profile'}", "about:blank"]
        try:
            # A Python one-liner puts the pipe's ends on the descriptors 3
            # and 4 that Chromium expects, then becomes Chromium (no
            # preexec_fn: the test process may have threads).
            self.process = subprocess.Popen(
                [sys.executable, "-c", EXEC_WITH_PIPE, str(to_read),
                 str(from_write), self.binary, *args],
                pass_fds=(to_read, from_write), stdin=subprocess.DEVNULL,
                stdout=self.log, stderr=subprocess.STDOUT)
        except BaseException:
            for end in (to_write, from_read):
                os.close(end)
            self.log.close()
            raise
        finally:
            os.close(to_read)
            os.close(from_write)
        self.devtools = DevTools(to_write, from_read)
        try:
            targets = self.devtools.call("Target.getTargets")["targetInfos"]
            pages = [t["targetId"] for t in targets if t["type"] == "page"]
            target = pages[0] if pages else self.devtools.call(
                "Target.createTarget", {"url": "about:blank"})["targetId"]
            self.session = self.devtools.call(
                "Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            self.devtools.call("Emulation.setDeviceMetricsOverride", {
                "width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1,
                "mobile": False}, self.session)
        except Exception as exc:
            self.__exit__(None, None, None)
            raise RuntimeError(
                f"chromium did not start: {exc}\n{self.output()}") from exc
        return self

    def __exit__(self, *exc):
        try:
            self.devtools.call("Browser.close", timeout=10)
        except (OSError, RuntimeError, TimeoutError):
            pass  # it is killed below if it does not exit
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        os.close(self.devtools.to_browser)
        os.close(self.devtools.from_browser)
        self.log.close()

    def output(self):
        return (self.home / "chromium.log").read_text(errors="replace")[-3000:]

    def open(self, url):
        self.devtools.call("Page.navigate", {"url": url}, self.session)

    def evaluate(self, expression):
        return self.devtools.evaluate(self.session, expression)

    def poll(self, expression, until, timeout):
        """Evaluate ``expression`` every 0.2 s until ``until(value)``:
        every value seen, the last one last (it fails ``until`` when the
        deadline passed)."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            seen.append(self.evaluate(expression))
            if until(seen[-1]) or time.monotonic() > deadline:
                return seen
            time.sleep(0.2)

    def screenshot(self):
        """A PNG of the window, cut below the page's content."""
        height = min(WINDOW[1], self.evaluate(
            "Math.ceil(document.body.getBoundingClientRect().bottom) + 16"))
        result = self.devtools.call("Page.captureScreenshot", {
            "format": "png", "clip": {"x": 0, "y": 0, "width": WINDOW[0],
                                      "height": height, "scale": 1}},
            self.session)
        return base64.b64decode(result["data"])


def test_the_demo_shows_futures_side_by_side_and_blocking_queued(
        chromium, demo, tmp_path):  # chromium first: a skip starts no Zope
    with Chromium(chromium, tmp_path) as browser:
        browser.open(f"{demo.url}/@@futures-demo?autorun=1&n={N}&delay={DELAY}")
        # Futures about 1 s, blocking about 5 s, and the page's start.
        seen = browser.poll(
            "[document.body?.dataset.demoDone === '1',"
            " document.querySelectorAll('#blocking-chart .bar.request').length]",
            until=lambda value: value[0], timeout=60)
        shown = json.loads(browser.evaluate(READ_PAGE))
        assert seen[-1][0], (shown, browser.output(), demo.log()[-3000:])
        if os.environ.get("DEMO_SCREENSHOT"):
            path = pathlib.Path(os.environ["DEMO_SCREENSHOT"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(browser.screenshot())

    assert shown["error"] is None, shown
    assert shown["viewport"] == list(WINDOW), shown
    for side in ("futures", "blocking"):
        assert shown[side]["requests"] == shown[side]["ok"] == str(N), shown
        assert shown[f"{side}Bars"] == N, shown
    futures_ms = int(shown["futures"]["ms"])
    blocking_ms = int(shown["blocking"]["ms"])
    futures_plain_ms = int(shown["futuresPlain"]["ms"])
    blocking_plain_ms = int(shown["blockingPlain"]["ms"])
    # Futures: all side by side, about DELAY; the plain page stays fast.
    assert DELAY * 1000 <= futures_ms < 3000, shown
    assert futures_plain_ms < 1000, shown
    # Blocking: two at a time, about N / 2 * DELAY; the plain page waits in
    # the same queue (each side is the other's control of the bounds).
    assert blocking_ms > 3500, shown
    assert blocking_plain_ms > 1000, shown
    # Bars are drawn as the answers stream in, not all at the end.
    assert any(0 < bars < N for _, bars in seen), seen
    # The time axis: whole seconds from 0 past the slowest answer.
    assert shown["ticks"][0] == "0 s", shown
    assert int(shown["ticks"][-1].split()[0]) * 1000 >= blocking_ms, shown
