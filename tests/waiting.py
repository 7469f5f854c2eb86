"""Bounded waiting for the tests and their harness (``wait_for``)."""

import time

import pytest


def wait_for(predicate, timeout=5.0, interval=0.005, message=None):
    """Poll ``predicate()`` until it returns something truthy and return
    that value; fail the test if it has not within ``timeout`` seconds.

    For waiting on another thread or process, instead of ad-hoc
    ``while time.monotonic() < deadline`` loops: the wait is bounded, and
    a timeout fails with a message saying what was awaited (``message``,
    or the predicate's name) and the last value seen. The predicate is
    called at least once, and once more at the deadline. Import it with
    ``from conftest import wait_for``.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    value = predicate()  # one last look: the deadline may have passed mid-sleep
    if value:
        return value
    what = message or getattr(predicate, "__name__", repr(predicate))
    pytest.fail(f"wait_for: {what} not true after {timeout} s (last value {value!r})")
