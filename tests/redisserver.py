"""A private redis-server for the tests: the real server (Debian's
``redis-server``; .ci/run installs it where it is missing), on a free
port of 127.0.0.1, its files in a directory of the test's, stopped at the
end. Never a fake.

Runs on: the test's thread; the server is a subprocess.
"""

import os
import shutil
import signal
import socket
import subprocess
import time


class RedisNotInstalled(RuntimeError):
    pass


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """``RedisServer(directory, appendonly=False, appendfsync="always")
    .start()``; ``url``,
    ``client()``, ``stop()``, ``kill()``, ``start()`` again (same port,
    same files: with ``appendonly`` what it had survives)."""

    def __init__(self, directory, appendonly=False, port=None, appendfsync="always",
                 config=None, extra=()):
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise RedisNotInstalled(
                "redis-server is not installed (Debian: apt-get install "
                "redis-server; .ci/run does it)")
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        #: A redis.conf to start with (its port, address, directory and
        #: log file replaced); None: the options above.
        self.config = config
        #: More arguments (``--replicaof HOST PORT``, ``--sentinel``).
        self.extra = list(extra)
        self.port = port or free_port()
        #: requirepass, if set before start()
        self.password = None
        self.process = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout=20):
        command = [self.binary] + ([str(self.config)] if self.config else []) + [
            "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.directory), "--protected-mode", "no",
            "--logfile", "redis.log", "--daemonize", "no"]
        if not self.config:
            command += ["--save", "", "--appendonly", "yes" if self.appendonly else "no",
                        "--appendfsync", self.appendfsync]
        command += self.extra
        if self.password:
            command += ["--requirepass", self.password]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: "
                                   f"{self.log()[-2000:]}")
            try:
                if self.client().ping():
                    return self
            except Exception:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"redis-server did not answer within {timeout} s")

    def client(self):
        import redis
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password,
                           socket_timeout=5, socket_connect_timeout=5)

    def log(self):
        try:
            with open(os.path.join(self.directory, "redis.log")) as log:
                return log.read()
        except OSError:
            return ""

    def stop(self, timeout=20):
        """SIGTERM (Redis writes its AOF and exits), waited for."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(20)


def private_redis(directory, **options):
    """A started RedisServer for a test (``options``: RedisServer's).
    Without the binary: the test is skipped on a laptop, fails in CI."""
    import pytest
    try:
        server = RedisServer(directory, **options)
    except RedisNotInstalled as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    return server.start()
