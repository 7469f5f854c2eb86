"""zope/publisher.py's request log line, with a fake request: what the
client chose (the path, keys made from the request) cannot forge a line."""

import logging

from zope.interface import directlyProvides
from ZPublisher.interfaces import IPubSuccess

from collective.futures.core.promise import Outcome
from collective.futures.core.state import RequestFutures
from collective.futures.interfaces import STATE_ATTRIBUTE
from collective.futures.zope import publisher


class FakeResponse:
    def getStatus(self):
        return 200


class FakeRequest:
    def __init__(self, path, state):
        self.environ = {}
        setattr(self, STATE_ATTRIBUTE, state)
        self.values = {"REQUEST_METHOD": "GET", "PATH_INFO": path}
        self.response = FakeResponse()

    def get(self, name, default=None):
        return self.values.get(name, default)


class Event:
    def __init__(self, request):
        self.request = request
        directlyProvides(self, IPubSuccess)


def test_the_request_log_line_is_one_line_whatever_the_client_sent(caplog):
    state = RequestFutures()
    state.take_pending()  # one round ran
    state.record({"feed\nINFO forged key": Outcome(value=1, executor="threads",
                                                  seconds=0.5)})
    request = FakeRequest("/@@view\nINFO [collective.futures.requests] GET "
                          "/secret: 200", state)
    with caplog.at_level(logging.INFO, logger="collective.futures.requests"):
        publisher._request_done(Event(request))
    [record] = [r for r in caplog.records
                if r.name == "collective.futures.requests"]
    line = record.getMessage()
    assert "\n" not in line
    assert line.startswith("GET /@@view\\nINFO [collective.futures.requests]")
    assert "feed\\nINFO forged key [threads] 0.500s completed" in line


def test_a_suspension_leaves_no_cycle_for_the_garbage_collector():
    # The frame that raised SuspendRequest held it in a local: exception ->
    # traceback -> frame -> exception, a cycle holding pass 1's whole
    # request (about 140 objects) that only the collector frees; at
    # thousands of suspended requests that was most of its work.
    import gc
    import weakref

    from collective.futures.interfaces import SuspendRequest

    def suspended_request(suspend):
        request = FakeRequest("/page", RequestFutures())
        alive = weakref.ref(request)
        try:
            suspend(request, request.__dict__[STATE_ATTRIBUTE])
        except SuspendRequest:
            pass
        del request
        return alive

    def holding_suspend(request, state):  # the positive control: as before
        suspension = SuspendRequest(state)
        raise suspension

    gc.collect()
    gc.disable()
    try:
        assert suspended_request(publisher._suspend)() is None  # freed at once
        kept = suspended_request(holding_suspend)
        assert kept() is not None  # in a cycle: waits for the collector
    finally:
        gc.enable()
    gc.collect()
    assert kept() is None
