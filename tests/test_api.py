"""The futures API against a fake request: 0.9 semantics and bad input."""

import threading

import pytest

import procfuncs

from collective import futures
from collective.futures.api import make_promise
from collective.futures.core.promise import Outcome
from collective.futures.interfaces import STATE_ATTRIBUTE, STATE_KEY


def fn(*args, **kwargs):
    return args, kwargs


def state_of(request):
    return getattr(request, STATE_ATTRIBUTE)


def test_submit_records_a_promise_with_its_arguments(request_):
    assert futures.submit("k", fn, 1, key="kw", fn="also kw") is True
    promise = state_of(request_).pending["k"]
    assert promise() == ((1,), {"key": "kw", "fn": "also kw"})


def test_state_is_kept_where_a_retry_finds_it(request_):
    futures.submit("k", fn)
    assert request_._orig_env[STATE_KEY] is state_of(request_)
    # ...and not where restricted code can read it.
    assert STATE_KEY not in request_.environ


def test_result_not_submitted(request_):
    with pytest.raises(futures.FutureNotSubmittedError, match="'k'"):
        futures.result("k")


def test_result_submitted_but_not_resolved(request_):
    futures.submit("k", fn)
    with pytest.raises(futures.FutureNotResolvedError, match="'k'"):
        futures.result("k")


def test_result_default(request_):
    assert futures.result("k", default=None) is None
    futures.submit("k", fn)
    assert futures.result("k", "dflt") == "dflt"


def test_result_returns_value_and_raises_error(request_):
    futures.submit("k", fn)
    state = state_of(request_)
    state.record({"ok": Outcome(value=42), "bad": Outcome(error=KeyError("x"))})
    assert futures.result("ok") == 42
    with pytest.raises(KeyError):
        futures.result("bad")


def test_result_or_submit(request_):
    assert futures.resultOrSubmit("k", "ph", fn, 1) == "ph"
    assert "k" in state_of(request_).pending
    # Asked again in the same pass: still the placeholder, not re-submitted.
    first = state_of(request_).pending["k"]
    assert futures.resultOrSubmit("k", "ph2", fn, 2) == "ph2"
    assert state_of(request_).pending["k"] is first
    state_of(request_).record({"k": Outcome(value="v")})
    assert futures.resultOrSubmit("k", "ph", fn) == "v"
    assert futures.result_or_submit is futures.resultOrSubmit


def test_submit_resolved_key_fails(request_):
    futures.submit("k", fn)
    state_of(request_).record({"k": Outcome(value=1)})
    with pytest.raises(futures.FutureAlreadyResolvedError, match=r"clear\('k'\)"):
        futures.submit("k", fn)


def test_cancel_clear_reset(request_):
    assert futures.cancel("k") is False
    futures.submit("k", fn)
    assert futures.cancel("k") is True
    assert futures.cancel("k") is False
    state_of(request_).record({"k": Outcome(value=1)})
    assert futures.clear("k") is True
    assert futures.clear("k") is False
    futures.submit("k", fn)
    assert futures.reset("k") is True
    assert futures.reset("k") is False


def test_begin_pass_forgets_pending_but_keeps_results(request_):
    futures.submit("a", fn)
    state = state_of(request_)
    state.record({"b": Outcome(value=2)})
    state.begin_pass()
    assert state.pending == {}
    assert futures.result("b") == 2


@pytest.mark.parametrize("call", [
    lambda: futures.submit(1, fn),
    lambda: futures.submit(b"k", fn),
    lambda: futures.result(None),
    lambda: futures.resultOrSubmit(("k",), "ph", fn),
    lambda: futures.cancel(1.5),
])
def test_key_must_be_a_string(request_, call):
    with pytest.raises(TypeError, match="key must be a str"):
        call()


def test_empty_key(request_):
    with pytest.raises(ValueError, match="key must not be empty"):
        futures.submit("", fn)


@pytest.mark.parametrize("call", [
    lambda: futures.submit("k", "not callable"),
    lambda: futures.resultOrSubmit("k", "ph", None),
])
def test_fn_must_be_callable(request_, call):
    with pytest.raises(TypeError, match="fn must be callable"):
        call()


@pytest.mark.parametrize("name", ["submit", "result", "resultOrSubmit",
                                  "cancel", "clear", "reset"])
def test_outside_a_request(name):
    call = {
        "submit": lambda: futures.submit("k", fn),
        "result": lambda: futures.result("k"),
        "resultOrSubmit": lambda: futures.resultOrSubmit("k", None, fn),
        "cancel": lambda: futures.cancel("k"),
        "clear": lambda: futures.clear("k"),
        "reset": lambda: futures.reset("k"),
    }[name]
    with pytest.raises(futures.NoRequestError, match="outside a request"):
        call()


def test_exception_family():
    for name in ["FutureNotSubmittedError", "FutureNotResolvedError",
                 "FutureAlreadyResolvedError", "FutureTimeoutError",
                 "FutureCancelledError", "TooManyPassesError",
                 "NoRequestError", "ReplayImpossibleError",
                 "ConfigurationError"]:
        assert issubclass(getattr(futures, name), futures.FuturesException)
    import concurrent.futures
    assert issubclass(futures.FutureTimeoutError, concurrent.futures.TimeoutError)
    assert issubclass(futures.FutureCancelledError,
                      concurrent.futures.CancelledError)


# make_promise: the routing and the checks

async def afn():
    return 1


def test_make_promise_routes_and_checks():
    assert make_promise("submit", "k", fn, (), {}).executor == "threads"
    assert make_promise("submit", "k", afn, (), {}).executor == "asyncio"
    options = futures.promise(procfuncs.square, executor="processes",
                              shared=True, ttl=3)
    promise = make_promise("submit", "k", options, (2,), {})
    assert (promise.fn, promise.executor, promise.shared, promise.ttl) == (
        procfuncs.square, "processes", True, 3.0)
    with pytest.raises(ValueError, match="unknown executor 'gpu'"):
        make_promise("submit", "k", futures.promise(fn, executor="gpu"), (), {})
    with pytest.raises(TypeError, match="async function: run it on the asyncio"):
        make_promise("submit", "k", futures.promise(afn, executor="threads"), (), {})
    with pytest.raises(TypeError, match=r"collective.futures.submit\(\): the "
                                         r"'processes' executor needs fn"):
        make_promise("submit", "k", futures.promise(lambda: 1, executor="processes"),
                     (), {})


def test_submit_multiprocess_checks_picklability_at_the_call(request_):
    assert futures.submitMultiprocess("k", procfuncs.square, 3) is True
    with pytest.raises(TypeError, match="picklable"):
        futures.submitMultiprocess("j", procfuncs.square, threading.Lock())
    assert futures.resultOrSubmitMultiprocess("m", "ph", procfuncs.square, 2) == "ph"
