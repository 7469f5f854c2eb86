import faulthandler
import sys

import pytest

# Imported by the tests as ``from conftest import wait_for`` (the Plone
# suite, whose conftest is its own, and harness modules import it from
# ``waiting``).
from waiting import wait_for  # noqa: F401


# A hang anywhere dumps every thread's stack instead of stalling CI.
faulthandler.enable(file=sys.stderr, all_threads=True)


class FakeRequest:
    """Just what the API needs of a Zope request: an environ, plus the
    ``_orig_env`` that ZPublisher's HTTPRequest keeps for retries."""

    def __init__(self):
        self._orig_env = {"SERVER_SOFTWARE": "test"}
        self.environ = dict(self._orig_env)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A private redis-server (tests/redisserver.py) for the session;
    tests keep apart by key prefix. Without the binary: skipped on a
    laptop, a failure in CI."""
    from redisserver import private_redis
    server = private_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def request_():
    """A fake request set as the global request for the test."""
    from zope.globalrequest import clearRequest, setRequest

    request = FakeRequest()
    setRequest(request)
    yield request
    clearRequest()


@pytest.fixture
def make_zope(tmp_path):
    """Make Zope instances (real waitress, own directory each), stopped at
    the end of the test. ``make_zope(start=False, ...)`` leaves it to the
    test to start it."""
    from zopeinstance import ZopeInstance

    made = []

    def make(start=True, **kw):
        instance = ZopeInstance(tmp_path / f"zope{len(made)}", **kw).create()
        made.append(instance)
        return instance.start() if start else instance

    yield make
    for instance in made:
        instance.stop()


@pytest.fixture(scope="module")
def zope(tmp_path_factory):
    """One Zope instance (threads = 2, real waitress) shared by a test
    module; a module that needs other settings defines its own."""
    from zopeinstance import ZopeInstance

    instance = ZopeInstance(tmp_path_factory.mktemp("zope"), threads=2).create()
    instance.start()
    yield instance
    instance.stop()
