"""The deployment chapter (docs/deployment.rst), for real: a ZEO server, two
Zope instances (threads = 2 each) sharing it, and haproxy, then nginx, in
front, each configured by the file in examples/deployment/ that the chapter
includes. The test changes only addresses, ports and directories in those
files (``substituted``), so what is tested is what the chapter shows.

The files, the ZEO server and the proxies come from the harness
(tests/deployment.py), which the Plone suite shares: there the same proxies
stand in front of two Plone sites whose every page has a slow viewlet.
"""

import concurrent.futures
import json
import re
import signal
import time

import pytest

from conftest import wait_for
from deployment import (
    HAPROXY_LIMIT, NGINX_LIMIT, ZOPE_ADDRESSES, binary, directive,
    seconds, server_section, shipped, shipped_instance_settings,
    start_haproxy, start_nginx, substituted, zeo, zeo_conf, zope_conf)  # noqa: F401 (zeo: a fixture)
from slow_upstream import SlowUpstream
from zopeinstance import ZopeInstance


#: The slow page: one asyncio promise, a GET to the slow upstream (1 s).
SLOW_REQUESTS = 20
UPSTREAM_DELAY = 1.0


# The shipped files agree with each other and with what the chapter says
# (no servers needed).

def test_the_zope_conf_snippet_is_valid_and_uses_the_zeo_server(tmp_path):
    from collective.futures.settings import Settings
    from ZEO.runzeo import ZEOOptions

    root = zope_conf(tmp_path / "instance")
    (database,) = root.databases
    assert database.config.mount_points == ["/"]
    storage = database.config.storage.config
    (server,) = storage.server
    options = ZEOOptions()
    (tmp_path / "zeo").mkdir()
    (tmp_path / "zeo.conf").write_text(zeo_conf(tmp_path / "zeo"))
    options.realize(["-C", str(tmp_path / "zeo.conf")])
    assert server.address == options.address == ("127.0.0.1", 8100)
    (served,) = options.storages
    assert storage.storage == served.name == "1"
    # The package's section is valid (unknown keys and bad values raise).
    Settings.from_mapping(root.product_config["collective.futures"])


def sizing_problems(settings, connection_limit, haproxy, nginx):
    """What in the proxies' files (``haproxy``, ``nginx``: their text) does
    not fit the instances' collective.futures ``settings`` and waitress's
    ``connection_limit``: a list of sentences, empty if all fits."""
    problems = []
    # A request that uses futures takes at most (max_passes - 1) rounds of
    # at most ``timeout`` each: the proxies must wait longer for it.
    longest = (settings.max_passes - 1) * settings.timeout
    for name, value in [
            ("haproxy timeout server", directive(haproxy, r"^\s*timeout server (\S+)$")),
            ("haproxy timeout client", directive(haproxy, r"^\s*timeout client (\S+)$")),
            ("nginx proxy_read_timeout",
             directive(nginx, r"^\s*proxy_read_timeout (\S+);"))]:
        if seconds(value) <= longest:
            problems.append(f"{name} {value} is not above {longest:g} s")
    # The per-server limit: above max_suspended, so that the package's 503
    # comes before the proxy queues (or refuses) plain pages, and within
    # waitress's connection_limit with the proxy's idle connections.
    maxconn = int(directive(haproxy, r"^\s*default-server .*\bmaxconn (\d+)"))
    idle = int(directive(haproxy, r"^\s*default-server .*\bpool-max-conn (\d+)"))
    limits = [("haproxy maxconn", maxconn, idle)] + [
        ("nginx max_conns", int(limit), int(directive(nginx, r"^\s*keepalive (\d+);")))
        for limit in re.findall(r"^\s*server \S+ .*\bmax_conns=(\d+)", nginx, re.MULTILINE)]
    for name, limit, idle in limits:
        if limit <= settings.max_suspended:
            problems.append(f"{name} {limit} is not above max_suspended")
        if limit + idle > connection_limit:
            problems.append(f"{name} {limit} + {idle} idle is above connection_limit")
    # haproxy accepts (globally) the clients of both instances' limits.
    if int(directive(haproxy, r"^\s*maxconn (\d+)$")) < 2 * maxconn:
        problems.append("haproxy's global maxconn is below twice maxconn")
    return problems


def test_proxy_limits_and_timeouts_fit_the_instances(tmp_path):
    from collective.futures.settings import Settings

    settings = Settings.from_mapping(
        zope_conf(tmp_path).product_config["collective.futures"])
    connection_limit = int(server_section()["connection_limit"])
    haproxy, nginx = shipped("haproxy.cfg"), shipped("nginx.conf")
    assert sizing_problems(settings, connection_limit, haproxy, nginx) == []
    # Positive controls: the check finds what does not fit.
    assert sizing_problems(settings, connection_limit,
                           haproxy.replace("timeout server 75s", "timeout server 60s"),
                           nginx.replace(NGINX_LIMIT, "max_conns=2")) == [
        "haproxy timeout server 60s is not above 60 s",
        "nginx max_conns 2 is not above max_suspended",
        "nginx max_conns 2 is not above max_suspended"]
    assert sizing_problems(settings, 1100, haproxy, nginx) == [
        "haproxy maxconn 1100 + 100 idle is above connection_limit",
        "nginx max_conns 1100 + 100 idle is above connection_limit",
        "nginx max_conns 1100 + 100 idle is above connection_limit"]
    # The strings the functional tests replace are there, once per use.
    for text in (haproxy, nginx):
        for address in ZOPE_ADDRESSES:
            assert text.count(address) == 1, address
    assert haproxy.count(HAPROXY_LIMIT) == 1
    assert nginx.count(NGINX_LIMIT) == 2


# The servers: ZEO, two Zope instances, the slow upstream; then a proxy
# per test.

def add_folder(zope, name):
    """A folder ``name`` at the root, added through ``zope`` (the ZMI's
    add form answers with a redirect to the folder listing)."""
    status, body = zope.get(f"/manage_addProduct/OFSP/manage_addFolder?id={name}",
                            headers=zope.admin_headers())
    assert status in (200, 302), body[:500]
    assert zope.get(f"/{name}/@@ok")[0] == 200


def shipped_instance(home, zeo):
    """A Zope instance (not started) on the ZEO server, configured from the
    shipped zope.conf (collective.futures' section) and zope.ini
    ([server:main], but for its address)."""
    return ZopeInstance(home / "instance", zeo_address=zeo.address,
                        **shipped_instance_settings(home / "conf")).create()


@pytest.fixture(scope="module")
def zopes(tmp_path_factory, zeo):
    """Two instances made by ``shipped_instance``, serving a site "Plone"
    (a folder here), the path the proxies' configurations rewrite to."""
    made = []
    try:
        for number in (1, 2):
            instance = shipped_instance(tmp_path_factory.mktemp(f"zope{number}"), zeo)
            made.append(instance)
            # One after the other: the first creates the database's root.
            instance.start()
        add_folder(made[0], "Plone")
        # ZEO sends the second instance its invalidation asynchronously.
        wait_for(lambda: made[1].get("/Plone/@@ok")[0] == 200, timeout=10,
                 message="the second instance sees the site")
        yield made
    finally:
        for instance in made:
            instance.stop()


@pytest.fixture(scope="module")
def upstream():
    service = SlowUpstream(delay=UPSTREAM_DELAY).start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def haproxy_program():
    # Module-scoped, and so found (or skipped) before the instances start.
    return binary("haproxy")


@pytest.fixture(scope="module")
def nginx_program():
    return binary("nginx")


@pytest.fixture
def haproxy(haproxy_program, tmp_path, zopes):
    """``haproxy(config, instances=zopes)``: deployment.start_haproxy,
    stopped at the end of the test."""
    started = []

    def start(config, instances=zopes):
        started.append(start_haproxy(haproxy_program, config, instances,
                                     tmp_path, len(started)))
        return started[-1]

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture
def nginx(nginx_program, tmp_path, zopes):
    """``nginx(site, instances=zopes)``: deployment.start_nginx, stopped at
    the end of the test."""
    started = []

    def start(site, instances=zopes):
        started.append(start_nginx(nginx_program, site, instances,
                                   tmp_path, len(started)))
        return started[-1]

    yield start
    for proxy in started:
        proxy.stop()


# Slow futures pages and a plain page, through a proxy.

def slow_path(upstream, delay=UPSTREAM_DELAY):
    return f"/@@async-fanout?n=1&port={upstream.port}&delay={delay:g}"


def upstream_calls():
    """Calls the slow upstream received so far (all tests together)."""
    import slow_upstream
    return slow_upstream.HITS.get("/", 0)


def concurrently(proxy, path, n):
    """``n`` concurrent GETs of ``path`` through ``proxy``: [(status, body, s)]."""
    with concurrent.futures.ThreadPoolExecutor(
            n, thread_name_prefix="deployment-client") as pool:
        return list(pool.map(proxy.timed_get, [path] * n, timeout=60))


def served(zope):
    """Slow pages this instance answered (its access log, which quotes
    the path: %40%40async-fanout)."""
    return zope.access_log().count("async-fanout?")


def load_with_probes(proxy, upstream, n=SLOW_REQUESTS, probe="/@@plain"):
    """``n`` concurrent slow futures pages through ``proxy`` and, once some
    are in flight (their promises reached the upstream), the plain page
    every 50 ms until they are done: (slow results [(status, body, s)],
    total s, probes [(status, s)])."""
    before = upstream_calls()
    with concurrent.futures.ThreadPoolExecutor(
            n, thread_name_prefix="deployment-client") as pool:
        start = time.monotonic()
        slow = [pool.submit(proxy.timed_get, slow_path(upstream)) for _ in range(n)]
        # In flight: past the proxy, suspended in Zope (at least the four
        # that the limit of 2 per instance lets through).
        wait_for(lambda: upstream_calls() - before >= 4, timeout=10,
                 message="slow pages in flight")
        probes = []
        while not all(f.done() for f in slow) and len(probes) < 20:
            status, _, took = proxy.timed_get(probe)
            probes.append((status, took))
            time.sleep(0.05)
        results = [f.result(timeout=60) for f in slow]
        return results, time.monotonic() - start, probes


def assert_not_blocked(proxy, upstream, zopes):
    counts = [served(zope) for zope in zopes]
    results, total, probes = load_with_probes(proxy, upstream)
    assert [(status, json.loads(body)) for status, body, _ in results] == \
        [(200, {"ok": 1, "n": 1})] * SLOW_REQUESTS
    # All at once: about the upstream's delay, not SLOW_REQUESTS / 4 of it.
    assert total < 3, (total, probes)
    assert probes and all(status == 200 for status, _ in probes), probes
    assert max(took for _, took in probes) < 1, probes
    # Both instances answered slow pages.
    assert all(served(zope) > count for zope, count in zip(zopes, counts)), \
        (counts, [served(zope) for zope in zopes])


@pytest.mark.functional
def test_data_written_through_one_instance_is_seen_through_the_other(zopes):
    first, second = zopes
    name = f"written-{time.monotonic_ns()}"
    # Positive control: not there before.
    assert second.get(f"/{name}/@@ok")[0] == 404
    add_folder(first, name)
    wait_for(lambda: second.get(f"/{name}/@@ok")[0] == 200, timeout=10,
             message="the second instance sees the first one's write")


@pytest.mark.functional
def test_haproxy_slow_futures_pages_do_not_block_plain_pages(haproxy, upstream, zopes):
    assert_not_blocked(haproxy(shipped("haproxy.cfg")), upstream, zopes)


@pytest.mark.functional
def test_haproxy_with_the_limit_of_stock_zope_blocks_plain_pages(haproxy, upstream, zopes):
    # The setup, and the positive control of the test above: a
    # per-server maxconn of 2 (the threads) counts suspended requests as
    # busy workers; the plain page waits in haproxy's queue behind them.
    proxy = haproxy(substituted(shipped("haproxy.cfg"), [(HAPROXY_LIMIT, "maxconn 2")]))
    results, total, probes = load_with_probes(proxy, upstream)
    assert all(status == 200 for status, _, _ in results)
    assert max(took for _, took in probes) > 2, probes
    assert total > 3


#: The chapter's example of a rule that never matches: the shipped file's
#: rule written for the public path, placed after the rewrite, where the
#: path is /VirtualHostBase/.../VirtualHostRoot/@@futures-metrics.
MISPLACED_RULE = ("    http-request deny deny_status 404 "
                  "if { path_beg /@@futures-metrics }\n")


@pytest.mark.functional
def test_haproxy_rewrites_for_the_virtual_host_monster(haproxy, zopes):
    proxy = haproxy(shipped("haproxy.cfg"))
    status, body = proxy.get("/@@echo?visitor=1")
    assert status == 200, body
    echoed = json.loads(body)
    # Zope builds its URLs from the public host and path.
    assert echoed["url"] == f"{proxy.url}/@@echo"
    assert echoed["form"] == {"visitor": "1"}
    # The rule on the public path, before the rewrite, matches.
    assert proxy.get("/@@futures-metrics")[0] == 404
    assert proxy.get("/folder/futures-metrics?format=prometheus")[0] == 404
    # Past the proxy the view is there (for Managers).
    assert zopes[0].get("/Plone/@@futures-metrics")[0] == 401


@pytest.mark.functional
def test_haproxy_checks_the_health_of_each_instance(haproxy, zopes):
    # The check goes to each instance as written (no rewrite): the site's
    # @@ok, which answers 200.
    def checks(zope):
        return zope.access_log().count('"GET /Plone/%40%40ok HTTP/1.0" 200 ')

    before = [checks(zope) for zope in zopes]
    haproxy(shipped("haproxy.cfg"))
    for zope, count in zip(zopes, before):
        wait_for(lambda zope=zope, count=count: checks(zope) > count, timeout=10,
                 message="a health check answered 200")


@pytest.mark.functional
def test_haproxy_a_path_rule_after_the_rewrite_never_matches(haproxy, zopes):
    # Positive control of the test above: the same kind of rule, in the
    # backend after the rewrite, lets the request through to Zope.
    config = shipped("haproxy.cfg")
    rule = directive(config, r"^([ \t]*http-request deny .*\n)")
    rewrite = directive(config, r"^([ \t]*http-request set-path .*\n)")
    proxy = haproxy(substituted(config, [(rule, ""), (rewrite, rewrite + MISPLACED_RULE)]))
    assert proxy.get("/@@futures-metrics")[0] == 401


@pytest.mark.functional
def test_nginx_slow_futures_pages_do_not_block_plain_pages(nginx, upstream, zopes):
    assert_not_blocked(nginx(shipped("nginx.conf")), upstream, zopes)


@pytest.mark.functional
def test_nginx_with_the_limit_of_stock_zope_fails_plain_pages(nginx, upstream, zopes):
    # Positive control: max_conns=2 (the threads). Open-source nginx has no
    # queue: the plain page gets a 502 while suspended requests hold the
    # connections, and so do most of the slow pages.
    proxy = nginx(substituted(shipped("nginx.conf"), [(NGINX_LIMIT, "max_conns=2")]))
    results, total, probes = load_with_probes(proxy, upstream)
    assert any(status == 502 for status, _ in probes), probes
    assert any(status == 502 for status, _, _ in results)


@pytest.mark.functional
def test_nginx_rewrites_for_the_virtual_host_monster(nginx, zopes):
    proxy = nginx(shipped("nginx.conf"))
    status, body = proxy.get("/@@echo?visitor=1")
    assert status == 200, body
    echoed = json.loads(body)
    assert echoed["url"] == f"{proxy.url}/@@echo"
    assert echoed["form"] == {"visitor": "1"}
    assert proxy.get("/@@futures-metrics")[0] == 404
    assert proxy.get("/folder/futures-metrics?format=prometheus")[0] == 404


#: How long a request stays suspended on the instance being restarted,
#: which keeps its drain going meanwhile.
HELD = 6.0

#: Each proxy's file, and its line that retries a 503 on the other instance.
RETRY_503 = {
    "haproxy": ("haproxy.cfg", r"^\s*(retry-on .*\b503\b.*)$"),
    "nginx": ("nginx.conf", r"^\s*(proxy_next_upstream .*\bhttp_503\b.*)$"),
}


@pytest.mark.functional
@pytest.mark.parametrize("name", sorted(RETRY_503))
def test_a_503_is_retried_on_the_other_instance(name, request, upstream, zeo, zopes,
                                                tmp_path):
    # A rolling restart: the instance stopped with SIGTERM drains, and
    # answers a request that wants to suspend 503 meanwhile; the proxy
    # sends that request to the other instance.
    start_proxy = request.getfixturevalue(name)
    restarted = shipped_instance(tmp_path / "zope3", zeo).start()
    try:
        instances = [zopes[0], restarted]
        filename, pattern = RETRY_503[name]
        config = shipped(filename)
        retry = directive(config, pattern)
        without_retry = start_proxy(substituted(config, [
            (retry, re.sub(r" (http_)?503\b", "", retry))]), instances)
        proxy = start_proxy(config, instances)
        with concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="deployment-held") as pool:
            before = upstream_calls()
            held = pool.submit(restarted.timed_get, slow_path(upstream, HELD))
            wait_for(lambda: upstream_calls() > before, timeout=10,
                     message="a request suspended on the restarted instance")
            restarted.process.send_signal(signal.SIGTERM)
            wait_for(lambda: "SIGTERM: draining 1 suspended" in restarted.log(),
                     timeout=10, message="the instance draining")
            # Positive control: without the retry, the draining instance's
            # 503 reaches the visitors it was chosen for.
            refused = concurrently(without_retry, slow_path(upstream), 6)
            retried = concurrently(proxy, slow_path(upstream), 6)
            assert restarted.process.poll() is None, "the drain ended too early"
            assert [status for status, _, _ in refused].count(503) >= 2, refused
            assert [status for status, _, _ in retried] == [200] * 6, retried
            # The drain let the suspended request finish.
            status, body, _ = held.result(timeout=HELD + 30)
            assert (status, json.loads(body)) == (200, {"ok": 1, "n": 1})
        # Then the instance stops, as a restart wants.
        restarted.process.wait(30)
    finally:
        restarted.stop()
