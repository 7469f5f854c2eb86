"""sandbox.py: where a promise runs (no security manager, a request
that refuses to be used) and what may enter it (refusal)."""

import asyncio
import logging
import threading

import AccessControl.users  # noqa: F401 (sets SpecialUsers.nobody)
import pytest
from AccessControl import SpecialUsers
from AccessControl.SecurityManagement import (
    getSecurityManager, newSecurityManager)
from zope.globalrequest import getRequest, setRequest

from collective.futures.core.promise import Promise
from collective.futures import sandbox
from collective.futures.sandbox import (
    NO_REQUEST, promise_context, refusal)


def test_the_sandbox_refusal_looks_at_keys_and_refuses_deep_nesting():
    from persistent import Persistent

    assert "persistent object" in refusal(len, ({Persistent(): 1},), {})
    assert "persistent object" in refusal(
        len, (), {"a": [(1, {"b": Persistent()})]})
    deep = "leaf"
    for _ in range(9):
        deep = [deep]
    assert "nest deeper" in refusal(len, (deep,), {})
    assert refusal(len, ([1, "a", {"k": (None, 2.5)}],), {"flag": True}) is None


# the sandbox a promise runs in

def fails():
    raise LookupError("upstream down")


def inside():
    """What a promise sees: its request and its user."""
    return getRequest(), getSecurityManager().getUser()


def test_a_promise_runs_without_request_or_user():
    request, user = sandbox.run(Promise("k", inside))
    assert request is NO_REQUEST and user is SpecialUsers.nobody
    assert getRequest() is None  # reset afterwards


def test_no_request_refuses_to_be_used():
    with pytest.raises(RuntimeError, match=r"a promise has no request \(it "
                                           r"tried request.form\)"):
        NO_REQUEST.form
    assert "no request" in repr(NO_REQUEST)


def test_the_context_resets_what_a_promise_left_and_is_re_entrant():
    def leave_a_mess():
        setRequest("a request left behind")
        with promise_context():  # nested: the outer one still holds
            pass
        return getRequest()

    assert sandbox.run(Promise("k", leave_a_mess)) == "a request left behind"
    assert getRequest() is None


def test_the_context_drops_the_security_manager_of_the_thread():
    seen = []

    def worker():
        newSecurityManager(None, type("User", (), {
            "getUserName": lambda self: "admin",
            "getId": lambda self: "admin",
            "allowed": lambda *a: True})())
        seen.append(getSecurityManager().getUser().getUserName())
        seen.append(sandbox.run(Promise("k", inside))[1])
        seen.append(getSecurityManager().getUser())

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(5)
    # The promise runs as nobody, and leaves nobody behind.
    assert seen == ["admin", SpecialUsers.nobody, SpecialUsers.nobody]


def test_a_failing_promise_is_logged_once_and_raised(caplog):
    with caplog.at_level(logging.ERROR, "collective.futures"):
        with pytest.raises(LookupError, match="upstream down"):
            sandbox.run(Promise("key", fails))
    [record] = caplog.records
    assert "promise 'key' (fails) raised" in record.getMessage()
    assert record.exc_info[0] is LookupError
    assert getRequest() is None


def test_run_async_awaits_and_logs():
    async def coro(x):
        return getRequest(), x

    async def afail():
        raise LookupError("async upstream down")

    # The synchronous part runs in the context; the awaiting does not hold it.
    assert asyncio.run(sandbox.run_async(Promise("k", coro, (2,)))) == (None, 2)
    assert asyncio.run(sandbox.run_async(Promise("k", inside)))[0] is NO_REQUEST
    with pytest.raises(LookupError):
        asyncio.run(sandbox.run_async(Promise("k", afail)))


def test_run_async_does_not_log_a_cancellation(caplog):
    async def main():
        async def forever():
            await asyncio.sleep(30)

        task = asyncio.ensure_future(sandbox.run_async(Promise("k", forever)))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert "raised" not in caplog.text


# what may enter it

class View:
    def __init__(self):
        self.request, self.context = object(), object()

    def method(self):
        pass


class Wrapped:
    aq_parent = None

    def method(self):
        pass


class Request:
    RESPONSE, environ = object(), {}

    def method(self):
        pass


class Plain:
    @classmethod
    def cls_method(cls):
        pass

    def method(self):
        pass


@pytest.mark.parametrize("fn, reason", [
    (View().method, "fn is a method of a view"),
    (Wrapped().method, "fn is a method of an acquisition-wrapped object"),
    (Request().method, "fn is a method of the request"),
])
def test_a_method_of_what_belongs_to_the_request_is_refused(fn, reason):
    assert refusal(fn, (), {}).startswith(reason)


def test_functions_and_methods_of_plain_objects_pass():
    assert refusal(len, (), {}) is None
    assert refusal(Plain.cls_method, (), {}) is None
    assert refusal(Plain().method, ("plain", 1), {"k": [None]}) is None


@pytest.mark.parametrize("arg, reason", [
    (Request(), "an argument is the request"),
    ({"k": Wrapped()}, "an argument is an acquisition-wrapped object"),
])
def test_arguments_that_belong_to_the_request_are_refused(arg, reason):
    assert refusal(len, (arg,), {}).startswith(reason)
    assert refusal(len, (), {"kw": arg}).startswith(reason)
