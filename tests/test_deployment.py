"""The deployment chapter (docs/deployment.rst), for real: a ZEO server, two
Zope instances (threads = 2 each) sharing it, and haproxy, then nginx, in
front, each configured by the file in examples/deployment/ that the chapter
includes. The test changes only addresses, ports and directories in those
files (``substituted``), so what is tested is what the chapter shows.

haproxy and nginx are Debian's binaries; a test that needs one skips when
it is missing, unless CI=true or REQUIRE_PROXIES=1 (then it fails).
Everything runs on 127.0.0.1: ZEO and Zope on ephemeral ports, haproxy on
a socket this process binds to an ephemeral port and hands over
(``bind fd@N``), nginx on a port found free just before it starts.
"""

import concurrent.futures
import configparser
import http.client
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import wait_for
from slow_upstream import SlowUpstream
from zopeinstance import ZopeInstance, subprocess_env


ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "deployment"

#: The addresses the shipped files use, which the test replaces.
ZEO_ADDRESS = "127.0.0.1:8100"
ZOPE_ADDRESSES = ("127.0.0.1:8081", "127.0.0.1:8082")
HAPROXY_ADDRESS = "127.0.0.1:8080"
NGINX_ADDRESS = "127.0.0.1:8090"
#: The per-server limit of the shipped files (the positive controls put
#: stock Zope's in its place: the number of worker threads).
HAPROXY_LIMIT = "maxconn 1100"
NGINX_LIMIT = "max_conns=1100"

#: The slow page: one asyncio promise, a GET to the slow upstream (1 s).
SLOW_REQUESTS = 20
UPSTREAM_DELAY = 1.0


def shipped(name):
    return (EXAMPLES / name).read_text()


def substituted(text, replacements):
    """``text`` with each (old, new) of ``replacements`` replaced. Each old
    string must occur in ``text``: a shipped file that no longer has it
    fails here rather than being tested with its own addresses."""
    for old, new in replacements:
        assert old in text, f"{old!r} is no longer in the shipped file"
        text = text.replace(old, new)
    return text


def binary(name):
    """The path of the program ``name`` (Debian puts haproxy and nginx in
    /usr/sbin, which a user's PATH may lack); skip the test without it,
    or fail under CI=true or REQUIRE_PROXIES=1."""
    path = shutil.which(name, path=os.pathsep.join(
        [os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"]))
    if path is None:
        reason = (f"{name} is not installed (Debian: apt-get install {name}); "
                  f".ci/run installs it")
        if os.environ.get("CI") == "true" or os.environ.get("REQUIRE_PROXIES") == "1":
            pytest.fail(reason + " (required: CI=true or REQUIRE_PROXIES=1)")
        pytest.skip(reason)
    return path


def stop_process(process, timeout=10):
    """SIGTERM, then SIGKILL if ``process`` is still there after ``timeout``."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


def read(path):
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


# The shipped files, read as Zope, ZEO and waitress read them.

def zope_conf(home):
    """Zope's reading of the shipped zope.conf snippet, in an instance
    ``home``: the configuration root (ZConfig, Zope's schema)."""
    from Zope2.Startup.options import ZopeWSGIOptions
    (home / "var").mkdir(parents=True, exist_ok=True)
    path = home / "zope.conf"
    path.write_text(f"%define INSTANCE {home}\ninstancehome $INSTANCE\n"
                    + shipped("zope.conf"))
    return ZopeWSGIOptions(configfile=str(path))().configroot


def zeo_conf(var, address=ZEO_ADDRESS):
    """The shipped zeo.conf with its directory ``var`` and ``address``."""
    return substituted(shipped("zeo.conf"), [
        ("%define VAR /var/lib/zeo", f"%define VAR {var}"),
        (ZEO_ADDRESS, address)])


def server_section():
    """The [server:main] section of the shipped zope.ini, as a dict."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(shipped("zope.ini"))
    return dict(parser["server:main"])


def seconds(value):
    """A proxy's duration (``75s``, ``5m``, ``500ms``) in seconds."""
    number, unit = re.fullmatch(r"(\d+)(ms|s|m|h)?", value).groups()
    return int(number) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[unit]


def directive(text, pattern):
    """The one value the regex ``pattern`` captures in ``text``."""
    found = re.findall(pattern, text, re.MULTILINE)
    assert len(found) == 1, (pattern, found)
    return found[0]


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

#: runzeo, with a line on stdout that says where it listens (its log
#: names the configured address, port 0 here, not the one it got).
RUNZEO = [sys.executable, "-c", """\
import zope.event
from ZEO.StorageServer import Serving

def announce(event):
    if isinstance(event, Serving):
        host, port = event.address[:2]
        print(f"ZEO serving on {host}:{port}", flush=True)

zope.event.subscribers.append(announce)
from ZEO.runzeo import main
main()
"""]


class ZeoServer:
    """The ZEO server (``runzeo -C``, the shipped zeo.conf) in a subprocess,
    its database in ``var``, on an ephemeral port of 127.0.0.1."""

    def __init__(self, var):
        self.var = pathlib.Path(var)
        self.process = None
        self.address = None

    @property
    def output_path(self):
        return self.var / "runzeo.out"

    def log(self):
        return read(self.output_path) + read(self.var / "zeo.log")

    def start(self, timeout=30):
        config = self.var / "zeo.conf"
        config.write_text(zeo_conf(self.var, "127.0.0.1:0"))
        with open(self.output_path, "ab") as output:
            self.process = subprocess.Popen(
                RUNZEO + ["-C", str(config)], cwd=self.var, env=subprocess_env(),
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)

        def serving():
            if self.process.poll() is not None:
                pytest.fail(f"runzeo exited with {self.process.returncode}:\n{self.log()}")
            return re.search(r"ZEO serving on ([\d.]+):(\d+)", read(self.output_path))

        found = wait_for(serving, timeout, interval=0.05, message="runzeo listening")
        self.address = (found.group(1), int(found.group(2)))
        return self

    def stop(self):
        if self.process is not None:
            stop_process(self.process)


@pytest.fixture(scope="module")
def zeo(tmp_path_factory):
    server = ZeoServer(tmp_path_factory.mktemp("zeo"))
    try:
        yield server.start()
    finally:
        server.stop()


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
    server = server_section()
    extra = "".join(f"{key} = {value}\n" for key, value in server.items()
                    if key not in ("use", "listen", "threads"))
    (home / "conf").mkdir(parents=True)
    product_config = zope_conf(home / "conf").product_config["collective.futures"]
    return ZopeInstance(home / "instance", threads=int(server["threads"]),
                        product_config=product_config, server_extra=extra,
                        zeo_address=zeo.address).create()


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


class Proxy:
    """A proxy process (haproxy, nginx) on 127.0.0.1:``port``, its output
    in ``log_path``; a client for it (a fresh connection per request, as
    from different visitors)."""

    def __init__(self, name, process, port, log_path):
        self.name = name
        self.process = process
        self.port = port
        self.log_path = log_path

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def get(self, path, timeout=30):
        """(status, body text)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read().decode("utf-8", "replace")
        finally:
            connection.close()

    def timed_get(self, path):
        """(status, body, seconds)."""
        start = time.monotonic()
        status, body = self.get(path)
        return status, body, time.monotonic() - start

    def wait_ready(self, timeout=15):
        """Until the proxy answers the site's @@ok through an instance."""
        def ready():
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.process.returncode}:\n"
                            f"{read(self.log_path)}")
            try:
                return self.get("/@@ok", timeout=5)[0] == 200
            except OSError:
                return False

        wait_for(ready, timeout, interval=0.05, message=f"{self.name} serving")
        return self

    def stop(self):
        stop_process(self.process)


def instance_addresses(zopes):
    """(shipped address, address of the instance) for each instance."""
    assert len(zopes) == len(ZOPE_ADDRESSES)
    return [(shipped, f"{zope.address[0]}:{zope.address[1]}")
            for shipped, zope in zip(ZOPE_ADDRESSES, zopes)]


@pytest.fixture(scope="module")
def haproxy_program():
    # Module-scoped, and so found (or skipped) before the instances start.
    return binary("haproxy")


@pytest.fixture(scope="module")
def nginx_program():
    return binary("nginx")


@pytest.fixture
def haproxy(haproxy_program, tmp_path, zopes):
    """``haproxy(config, instances=zopes)``: Debian's haproxy (foreground)
    with ``config``, a shipped-style haproxy.cfg, in front of
    ``instances``, on a socket bound here to an ephemeral port and
    inherited (``bind fd@N``). Stopped at the end of the test."""
    started = []

    def start(config, instances=zopes):
        number = len(started)
        listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
        with listener:
            port = listener.getsockname()[1]
            path = tmp_path / f"haproxy{number}.cfg"
            path.write_text(substituted(config, [
                (HAPROXY_ADDRESS, f"fd@{listener.fileno()}"),
                *instance_addresses(instances)]))
            log_path = tmp_path / f"haproxy{number}.log"
            with open(log_path, "ab") as log:
                process = subprocess.Popen(
                    [haproxy_program, "-db", "-f", str(path)], cwd=tmp_path,
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    pass_fds=[listener.fileno()])
        proxy = Proxy("haproxy", process, port, log_path)
        started.append(proxy)
        return proxy.wait_ready()

    yield start
    for proxy in started:
        proxy.stop()


#: What nginx needs around the shipped file (which belongs to the "http"
#: context): the foreground, no privileges needed, files in a temp prefix.
NGINX_MAIN = """\
daemon off;
master_process off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{
    worker_connections 4096;
}}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {site};
}}
"""


def free_port():
    """A port of 127.0.0.1 free now (nginx cannot inherit a socket)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def nginx(nginx_program, tmp_path, zopes):
    """``nginx(site, instances=zopes)``: Debian's nginx (foreground, one
    process) with ``site``, a shipped-style nginx.conf, in front of
    ``instances``, on a free port. Stopped at the end of the test."""
    started = []

    def start(site, instances=zopes):
        prefix = tmp_path / f"nginx{len(started)}"
        prefix.mkdir()
        port = free_port()
        (prefix / "site.conf").write_text(substituted(site, [
            (NGINX_ADDRESS, f"127.0.0.1:{port}"), *instance_addresses(instances)]))
        (prefix / "nginx.conf").write_text(NGINX_MAIN.format(
            prefix=prefix, site=prefix / "site.conf"))
        log_path = prefix / "error.log"
        with open(prefix / "output.log", "ab") as output:
            process = subprocess.Popen(
                [nginx_program, "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
                 "-e", str(log_path)], cwd=prefix,
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
        proxy = Proxy("nginx", process, port, log_path)
        started.append(proxy)
        return proxy.wait_ready()

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
