"""The demo instance's pages (the README's first command) work."""

import concurrent.futures
import io
import json
import time
import zipfile

import pytest

from zopeinstance import ZopeInstance


pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    instance = ZopeInstance(tmp_path_factory.mktemp("demo"), threads=2,
                            packages=("collective.futures.demo",)).create()
    instance.start()
    yield instance
    instance.stop()


def test_the_demo_page(demo):
    status, body = demo.get("/@@futures-demo")
    assert status == 200
    assert "collective.futures demo" in body
    assert "@@futures-demo-futures" in body and "@@futures-demo-blocking" in body


def test_futures_and_blocking_pages_give_the_same_data(demo):
    for how in ("futures", "blocking"):
        status, body = demo.get(f"/@@futures-demo-{how}?delay=0.1")
        data = json.loads(body)
        assert status == 200 and data["how"] == how
        assert data["upstream"]["delay"] == 0.1


def test_ten_futures_requests_run_side_by_side(demo):
    def get(_):
        return demo.get("/@@futures-demo-futures?delay=1")[0]

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        start = time.monotonic()
        statuses = list(pool.map(get, range(10)))
        took = time.monotonic() - start
    assert statuses == [200] * 10
    assert took < 3, took  # blocking: 5 s on two threads


def test_the_zip_export_streams_a_valid_archive(demo):
    status, headers, body = demo.request("/@@futures-demo-export?n=3")
    assert status == 200
    assert headers["Content-Type"] == "application/zip"
    assert 'filename="upstream-export.zip"' in headers["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        names = archive.namelist()
        assert names == ["answer-1.json", "answer-2.json", "answer-3.json"]
        assert json.loads(archive.read("answer-2.json"))["delay"] == 0.2


def test_the_slow_feed_is_fetched_once_and_kept(demo):
    start = time.monotonic()
    status, body = demo.get("/@@futures-demo-feed?delay=1")
    assert status == 200 and body.count("<li>") == 5
    assert "Slow news 1" in body
    assert time.monotonic() - start >= 1.0
    start = time.monotonic()
    assert demo.get("/@@futures-demo-feed?delay=1") == (status, body)
    assert time.monotonic() - start < 0.5  # kept: no wait, no second pass
