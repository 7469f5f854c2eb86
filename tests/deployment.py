"""The deployment harness: the shipped files of examples/deployment/ (read
as Zope, ZEO and waitress read them, and with their addresses replaced),
a ZEO server, and haproxy and nginx in front of running instances.

Used by tests/test_deployment.py (plain Zope instances) and by the Plone
suite (Plone sites on ZEO behind the same proxies). Everything runs on
127.0.0.1: ZEO on an ephemeral port, haproxy on a socket bound here to an
ephemeral port and handed over (``bind fd@N``), nginx on a port found
free just before it starts. haproxy and nginx are Debian's binaries
(``binary``: skip without them, fail under CI=true or REQUIRE_PROXIES=1).
"""

import configparser
import http.client
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

from waiting import wait_for
from zopeinstance import subprocess_env


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


def shipped_instance_settings(directory):
    """The ZopeInstance keyword arguments (threads, product_config,
    server_extra) of an instance configured as the shipped files say: the
    zope.conf snippet's collective.futures section, read by Zope in
    ``directory``, and zope.ini's [server:main] but for its address."""
    server = server_section()
    extra = "".join(f"{key} = {value}\n" for key, value in server.items()
                    if key not in ("use", "listen", "threads"))
    directory.mkdir(parents=True, exist_ok=True)
    product_config = zope_conf(directory).product_config["collective.futures"]
    return dict(threads=int(server["threads"]), product_config=product_config,
                server_extra=extra)


def seconds(value):
    """A proxy's duration (``75s``, ``5m``, ``500ms``) in seconds."""
    number, unit = re.fullmatch(r"(\d+)(ms|s|m|h)?", value).groups()
    return int(number) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[unit]


def directive(text, pattern):
    """The one value the regex ``pattern`` captures in ``text``."""
    found = re.findall(pattern, text, re.MULTILINE)
    assert len(found) == 1, (pattern, found)
    return found[0]


# ZEO

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
    """A ZEO server (the shipped zeo.conf) for a test module, on an
    ephemeral port; a fixture for the modules that import it."""
    server = ZeoServer(tmp_path_factory.mktemp("zeo"))
    try:
        yield server.start()
    finally:
        server.stop()


# The proxies

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


def start_haproxy(program, config, instances, directory, number=0):
    """Debian's haproxy (foreground) with ``config``, a shipped-style
    haproxy.cfg, in front of ``instances`` (running ZopeInstances, as many
    as the shipped file has servers), on a socket bound here to an
    ephemeral port and inherited (``bind fd@N``); its files in
    ``directory``, named with ``number``. Returns the Proxy once it serves
    the site's @@ok."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    with listener:
        port = listener.getsockname()[1]
        path = directory / f"haproxy{number}.cfg"
        path.write_text(substituted(config, [
            (HAPROXY_ADDRESS, f"fd@{listener.fileno()}"),
            *instance_addresses(instances)]))
        log_path = directory / f"haproxy{number}.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [program, "-db", "-f", str(path)], cwd=directory,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                pass_fds=[listener.fileno()])
    return Proxy("haproxy", process, port, log_path).wait_ready()


def start_nginx(program, site, instances, directory, number=0):
    """Debian's nginx (foreground, one process) with ``site``, a
    shipped-style nginx.conf, in front of ``instances``, on a free port;
    its files in ``directory``/nginx``number``. Returns the Proxy once it
    serves the site's @@ok."""
    prefix = directory / f"nginx{number}"
    prefix.mkdir()
    port = free_port()
    (prefix / "site.conf").write_text(substituted(site, [
        (NGINX_ADDRESS, f"127.0.0.1:{port}"), *instance_addresses(instances)]))
    (prefix / "nginx.conf").write_text(NGINX_MAIN.format(
        prefix=prefix, site=prefix / "site.conf"))
    log_path = prefix / "error.log"
    with open(prefix / "output.log", "ab") as output:
        process = subprocess.Popen(
            [program, "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
             "-e", str(log_path)], cwd=prefix,
            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
    return Proxy("nginx", process, port, log_path).wait_ready()
