"""A real Zope instance, served by real waitress (``runwsgi``), in a
subprocess on an ephemeral port: the functional tests' server.

The instance is laid out like one made by ``mkwsgiinstance``: etc/zope.conf,
etc/zope.ini with Zope's stock pipeline (httpexceptions, translogger, zope),
etc/site.zcml, var/Data.fs (FileStorage), or a ZEO client storage
(``zeo_address``) where several instances share one database.
"""

import base64
import hashlib
import http.client
import json
import functools
import os
import pathlib
import re
import signal
import subprocess
import sys
import time


HERE = pathlib.Path(__file__).resolve().parent
#: The instance's Manager (user, password).
ADMIN = ("admin", "secret")

#: Zope's ``runwsgi`` and gunicorn, run by this interpreter (a venv's or
#: zc.buildout's bin/test, whose scripts live elsewhere).
RUNWSGI = [sys.executable, "-c", "from Zope2.Startup.serve import main; main()"]
GUNICORN = [sys.executable, "-m", "gunicorn"]


def subprocess_env():
    """This process's environment, with the test app and this interpreter's
    sys.path importable (zc.buildout scripts set sys.path in the script)."""
    env = dict(os.environ)
    paths = [str(HERE)] + [p for p in sys.path if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    return env

ZOPE_CONF = """\
%define INSTANCE {home}
instancehome $INSTANCE
debug-mode off
<zodb_db main>
{storage}
  mount-point /
</zodb_db>
{product_config}
"""

FILE_STORAGE = """\
  <filestorage>
    path $INSTANCE/var/Data.fs
  </filestorage>"""

#: A ZEO client storage (the server's storage named "1"), its cache files
#: and blob cache in the instance's var/.
ZEO_CLIENT_STORAGE = """\
  <zeoclient>
    server {host}:{port}
    storage 1
    name zeostorage
    var $INSTANCE/var
    blob-dir $INSTANCE/var/blobcache
  </zeoclient>"""

ZOPE_INI = """\
[app:zope]
use = egg:Zope#main
zope_conf = %(here)s/zope.conf

[server:main]
use = egg:waitress#main
listen = 127.0.0.1:0
threads = {threads}
{server_extra}

[filter:translogger]
use = egg:Paste#translogger
setup_console_handler = False

{filters}
[pipeline:main]
pipeline =
    egg:Zope#httpexceptions
    translogger
{pipeline_extra}    zope

[loggers]
keys = root, waitress, wsgi

[handlers]
keys = console, accesslog

[formatters]
keys = generic, message

[formatter_generic]
format = %(asctime)s %(levelname)s [%(name)s][%(threadName)s] %(message)s

[formatter_message]
format = %(message)s

[logger_root]
level = INFO
handlers = console

[logger_waitress]
level = INFO
handlers =
qualname = waitress

[logger_wsgi]
level = INFO
handlers = accesslog
qualname = wsgi
propagate = 0

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[handler_accesslog]
class = FileHandler
args = (r'{home}/var/access.log', 'a')
level = INFO
formatter = message
"""

SITE_ZCML = """\
<configure xmlns="http://namespaces.zope.org/zope">
  <include package="Zope2.App" />
{includes}
</configure>
"""


def _more_file_descriptors():
    # Thousands of concurrent connections need more than the common soft
    # limit of 1024 descriptors; raise it to the hard limit (capped).
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _file_descriptors(limit):
    import resource
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


class ZopeInstance:
    """Create, start and stop one Zope instance under ``home``."""

    def __init__(self, home, threads=2, product_config=None, futures=True,
                 server_extra="", command=None, filters=(),
                 packages=("futures_testapp",), nofile=None, zeo_address=None,
                 environment=None):
        self.home = pathlib.Path(home)
        #: (host, port) of a ZEO server to use as the main database, or
        #: None for the instance's own FileStorage.
        self.zeo_address = zeo_address
        #: RLIMIT_NOFILE (soft and hard) of the process, or None for many.
        self.nofile = nofile
        #: Environment variables the process gets besides this one's.
        self.environment = dict(environment or {})
        self.threads = threads
        self.product_config = product_config or {}
        self.futures = futures
        self.server_extra = server_extra
        self.command = command
        self.filters = dict(filters)  # name -> "use" of a [filter:name]
        self.packages = packages      # ZCML included after collective.futures
        self.process = None
        self.port = None

    # layout

    def create(self):
        for sub in ("etc", "var", "var/cache"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        product_config = ""
        if self.product_config:
            lines = "".join(f"  {k} {v}\n" for k, v in self.product_config.items())
            product_config = (
                f"<product-config collective.futures>\n{lines}</product-config>")
        if self.zeo_address is None:
            storage = FILE_STORAGE
        else:
            host, port = self.zeo_address
            storage = ZEO_CLIENT_STORAGE.format(host=host, port=port)
        (self.home / "etc/zope.conf").write_text(ZOPE_CONF.format(
            home=self.home, storage=storage, product_config=product_config))
        (self.home / "etc/zope.ini").write_text(ZOPE_INI.format(
            home=self.home, threads=self.threads, server_extra=self.server_extra,
            filters="".join(f"[filter:{name}]\nuse = {use}\n\n"
                            for name, use in self.filters.items()),
            pipeline_extra="".join(f"    {name}\n" for name in self.filters)))
        includes = [f'  <include package="{p}" />' for p in self.packages]
        if self.futures:
            includes.insert(0, '  <include package="collective.futures" />')
        (self.home / "etc/site.zcml").write_text(
            SITE_ZCML.format(includes="\n".join(includes)))
        # The initial Manager, created by Zope at its first start.
        digest = base64.b64encode(hashlib.sha1(ADMIN[1].encode()).digest()).decode()
        (self.home / "inituser").write_text(f"{ADMIN[0]}:{{SHA}}{digest}\n")
        return self

    # process

    @property
    def stderr_path(self):
        return self.home / "var/stderr.log"

    def start(self, timeout=90):
        env = {**subprocess_env(), **self.environment}
        command = self.command or RUNWSGI + [str(self.home / "etc/zope.ini")]
        # A restart appends to the log: its own "Serving on" comes after.
        offset = len(self.log())
        self.stderr_file = open(self.stderr_path, "ab")
        self.process = subprocess.Popen(
            command, cwd=self.home, env=env, stdin=subprocess.DEVNULL,
            stdout=self.stderr_file, stderr=subprocess.STDOUT,
            preexec_fn=(_more_file_descriptors if self.nofile is None
                        else functools.partial(_file_descriptors, self.nofile)))
        deadline = time.monotonic() + timeout
        # waitress says "Serving on", gunicorn "Listening at:".
        pattern = re.compile(
            r"(?:Serving on|Listening at:) http://127\.0\.0\.1:(\d+)")
        while time.monotonic() < deadline:
            match = pattern.search(self.log()[offset:])
            if match:
                self.port = int(match.group(1))
                return self
            if self.process.poll() is not None:
                self.stderr_file.close()
                raise RuntimeError(
                    f"Zope exited with {self.process.returncode}:\n{self.log()}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Zope did not start within {timeout}s:\n{self.log()}")

    def log(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def access_log(self):
        path = self.home / "var/access.log"
        return path.read_text() if path.exists() else ""

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Stop the process; returns its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.stderr_file.close()
        return self.process.returncode

    # client

    @property
    def pid(self):
        return self.process.pid

    def _status(self, field):
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise RuntimeError(f"no {field}")

    def rss(self):
        """The server process's resident set size, in bytes (Linux)."""
        return self._status("VmRSS") * 1024

    def cpu_seconds(self):
        """CPU time the process used so far (utime + stime, all threads)."""
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def thread_count(self):
        """Threads of the server process (Linux)."""
        return self._status("Threads")

    @property
    def address(self):
        return ("127.0.0.1", self.port)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def request(self, path, method="GET", body=None, headers=None, timeout=30):
        """One request on a fresh connection: (status, headers, body bytes)."""
        connection = http.client.HTTPConnection(*self.address, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def counters(self):
        """The test app's counters (futures_testapp.views.COUNTERS)."""
        return json.loads(self.get("/@@counters")[1])

    def timed_get(self, path):
        """(status, body, seconds)."""
        start = time.monotonic()
        status, body = self.get(path)
        return status, body, time.monotonic() - start

    def load_with_probes(self, path, n, probe="/@@plain"):
        """``n`` concurrent GETs of ``path`` while ``probe`` is requested
        every 50 ms: (results [(status, body, s)], total s, probe times)."""
        import concurrent.futures
        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            start = time.monotonic()
            slow = [pool.submit(self.timed_get, path) for _ in range(n)]
            time.sleep(0.2)
            probes = []
            while not all(f.done() for f in slow) and len(probes) < 20:
                status, body, took = self.timed_get(probe)
                assert status == 200, (status, body[:200])
                probes.append(took)
                time.sleep(0.05)
            results = [f.result(timeout=60) for f in slow]
            return results, time.monotonic() - start, probes

    def admin_headers(self):
        token = base64.b64encode(":".join(ADMIN).encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def get(self, path, **kw):
        status, headers, body = self.request(path, **kw)
        return status, body.decode("utf-8", "replace")
