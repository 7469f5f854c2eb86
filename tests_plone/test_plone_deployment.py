"""The deployment chapter on Plone: two Plone 6 instances (waitress,
threads = 2 each, configured by examples/deployment/) sharing one site on
a ZEO server, behind haproxy and nginx with the shipped files.

The slow part is a viewlet (docs/plone.rst's, whose upstream answers
after UPSTREAM_DELAY seconds; its promise is not shared, so every visit
waits for it): with the shipped per-server limit, twenty visitors of its
page take about one upstream delay all together and a plain Plone page
stays fast meanwhile; with the limit of stock Zope (the worker threads),
the control, the plain page waits behind the suspended visitors.
"""

import concurrent.futures
import time

import pytest

from deployment import (
    HAPROXY_LIMIT, NGINX_LIMIT, binary, shipped, shipped_instance_settings,
    start_haproxy, start_nginx, substituted, zeo)  # noqa: F401 (zeo: a fixture)
from ploneinstance import PloneInstance
from slow_upstream import HITS, SlowUpstream
from waiting import wait_for


pytestmark = pytest.mark.functional

#: How long the viewlet's upstream takes, and how many visit its page at once.
UPSTREAM_DELAY = 3.0
VISITORS = 20
#: Through the proxies the site is the root (the shipped files rewrite to
#: /Plone for the VirtualHostMonster): the viewlet's page, and a plain one.
SLOW_PAGE = "/@@plone-proxied"
PLAIN_PAGE = "/"
#: What the viewlet renders from the upstream's feed.
ITEMS = "<ul><li>Story 1</li><li>Story 2</li><li>Story 3</li></ul>"


@pytest.fixture(scope="module")
def programs():
    # Found (or skipped) before the sites are made.
    return {"haproxy": binary("haproxy"), "nginx": binary("nginx")}


@pytest.fixture(scope="module")
def upstream():
    service = SlowUpstream(delay=UPSTREAM_DELAY).start()
    try:
        yield service
    finally:
        service.stop()


def feed_calls():
    return HITS.get("/feed.xml", 0)


@pytest.fixture(scope="module")
def plones(tmp_path_factory, programs, zeo, upstream):
    """The two instances: the first makes the site, the second serves it
    from the same database."""
    made = []
    try:
        for number in (1, 2):
            home = tmp_path_factory.mktemp(f"plone{number}")
            instance = PloneInstance(
                home / "instance", make_site=number == 1, zeo_address=zeo.address,
                feed_url=f"{upstream.url}feed.xml?delay={UPSTREAM_DELAY:g}",
                **shipped_instance_settings(home / "conf"))
            made.append(instance)
            instance.create().start()
        # ZEO tells the second instance about the site asynchronously.
        wait_for(lambda: made[1].request("/Plone/@@ok")[0] == 200, timeout=20,
                 message="the second instance sees the site")
        # Each instance renders both pages once before the load: the first
        # render compiles the templates (and CPython 3.11's compile() is
        # not safe in two threads at once, see WarmNews). Themed (Host
        # localhost) and not (Host 127.0.0.1, as through the proxies),
        # which renders through other code paths.
        for instance in made:
            for path in ("/Plone" + SLOW_PAGE, "/Plone" + PLAIN_PAGE):
                for headers in (instance.host_headers(), {}):
                    status, _, body = instance.request(
                        path, headers=headers, timeout=60)
                    assert status == 200, (path, headers, body[:300])
        yield made
    finally:
        for instance in made:
            instance.stop()


@pytest.fixture
def proxy(programs, tmp_path, plones):
    """``proxy(name, replacements=())``: haproxy or nginx with its shipped
    file (``replacements`` applied), in front of both instances; stopped
    at the end of the test."""
    started = []
    files = {"haproxy": ("haproxy.cfg", start_haproxy),
             "nginx": ("nginx.conf", start_nginx)}

    def start(name, replacements=()):
        filename, starter = files[name]
        config = substituted(shipped(filename), replacements)
        started.append(starter(programs[name], config, plones, tmp_path, len(started)))
        return started[-1]

    yield start
    for started_proxy in started:
        started_proxy.stop()


def served(instance):
    """Visits of the viewlet's page that this instance answered."""
    return instance.access_log().count("plone-proxied")


def visit_with_probes(proxy):
    """VISITORS concurrent visits of the viewlet's page through ``proxy``
    and, once some wait for the upstream, the plain page every 50 ms until
    they are done: (visits [(status, body, s)], total s, probes
    [(status, s)])."""
    before = feed_calls()
    with concurrent.futures.ThreadPoolExecutor(
            VISITORS, thread_name_prefix="plone-visitor") as pool:
        start = time.monotonic()
        visits = [pool.submit(proxy.timed_get, SLOW_PAGE) for _ in range(VISITORS)]
        wait_for(lambda: feed_calls() - before >= 4, timeout=30,
                 message="visitors waiting for the upstream")
        probes = []
        while not all(visit.done() for visit in visits) and len(probes) < 20:
            status, _, took = proxy.timed_get(PLAIN_PAGE)
            probes.append((status, took))
            time.sleep(0.05)
        results = [visit.result(timeout=120) for visit in visits]
        return results, time.monotonic() - start, probes


def assert_not_blocked(proxy, plones):
    counts = [served(instance) for instance in plones]
    visits, total, probes = visit_with_probes(proxy)
    for status, body, _ in visits:
        assert status == 200 and ITEMS in body, (status, body[-2000:])
        assert "main-content-of-the-page" in body
    # All together about one upstream delay (one after the other, four at
    # a time, it would be five).
    assert total < 2 * UPSTREAM_DELAY, (total, probes)
    assert probes and all(status == 200 for status, _ in probes), probes
    # The plain page never waits for the upstream.
    assert max(took for _, took in probes) < UPSTREAM_DELAY / 2, probes
    # Both instances answered visitors.
    assert all(served(instance) > count for instance, count in zip(plones, counts)), \
        (counts, [served(instance) for instance in plones])


def test_haproxy_viewlet_pages_do_not_block_plain_pages(proxy, plones):
    assert_not_blocked(proxy("haproxy"), plones)


def test_haproxy_with_the_limit_of_stock_zope_blocks_plain_pages(proxy, plones):
    # The control: maxconn 2 per server (the threads) counts suspended
    # visitors as busy workers; the plain page queues in haproxy behind
    # them, and the visitors go four at a time.
    visits, total, probes = visit_with_probes(
        proxy("haproxy", [(HAPROXY_LIMIT, "maxconn 2")]))
    assert all(status == 200 for status, _, _ in visits)
    assert max(took for _, took in probes) > UPSTREAM_DELAY / 2, probes
    assert total > 2 * UPSTREAM_DELAY


def test_nginx_viewlet_pages_do_not_block_plain_pages(proxy, plones):
    assert_not_blocked(proxy("nginx"), plones)


def test_nginx_with_the_limit_of_stock_zope_fails_plain_pages(proxy, plones):
    # The control: max_conns=2; open-source nginx has no queue, so the
    # plain page gets a 502 while suspended visitors hold the connections.
    visits, total, probes = visit_with_probes(
        proxy("nginx", [(NGINX_LIMIT, "max_conns=2")]))
    assert any(status == 502 for status, _ in probes), probes
