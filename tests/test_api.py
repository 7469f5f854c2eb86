"""The futures API against a fake request: 0.9 semantics and bad input."""

import threading

import pytest

import procfuncs

from collective import futures
from collective.futures.api import make_promise
from collective.futures.core.promise import Outcome
from collective.futures.interfaces import STATE_ATTRIBUTE, STATE_KEY

from conftest import FakeRequest


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


# shared promises: identified by what they compute, never by the key

def feed(url):
    """A module-level function: a shared promise's is named by module and
    qualified name."""
    return [f"story of {url}"]


def viewlet(url, key="news", executor=None):
    """docs/plone.rst's viewlet: a constant key, the feed's URL as argument."""
    return futures.resultOrSubmit(
        key, None, futures.promise(feed, executor=executor, shared=True, ttl=300),
        url)


@pytest.fixture
def runtime(monkeypatch):
    """A runtime of the test's own as the process's (the API reads
    get_runtime()), its executors settled by hand."""
    from collective.futures import runtime as runtime_module
    from collective.futures.core.runtime import Runtime
    from collective.futures.settings import Settings
    from fakes import FakeClock, ManualExecutor, manual_deadlines

    clock = FakeClock()
    made = Runtime(Settings(), clock=clock, deadlines=manual_deadlines(clock),
                   # "asyncio" by name only (what the identity holds): it
                   # runs promises as the threads one does.
                   executors={"threads": ManualExecutor(),
                              "asyncio": ManualExecutor()})
    monkeypatch.setattr(runtime_module, "_runtime", made)
    yield made
    made.shutdown()


class Visitor:
    """One client request across its passes (a fake request set as the
    global request while a pass runs); its rounds go through the runtime
    as the publisher's do (Runtime.submit: shared promises join or start)."""

    def __init__(self, runtime):
        self.runtime = runtime
        self.request = FakeRequest()
        self.running = {}

    def publish(self, view, *args, **kwargs):
        from zope.globalrequest import clearRequest, setRequest

        setRequest(self.request)
        try:
            return view(*args, **kwargs)
        finally:
            clearRequest()

    def start_round(self):
        """Submit this pass's promises; how many there were."""
        state = state_of(self.request)
        self.running = {key: self.runtime.submit(promise)
                        for key, promise in state.take_pending().items()}
        return len(self.running)

    def end_round(self):
        state_of(self.request).record({
            key: Outcome(value=future.result(0))
            for key, future in self.running.items()})


def run_all(runtime, name="threads"):
    """Run what waits on the executor ``name``; how many executions ran."""
    executor = runtime.executor_for(name)
    waiting = [index for index, (future, _, _) in enumerate(executor.calls)
               if not future.done()]
    for index in waiting:
        executor.run(index)
    return len(waiting)


def test_two_urls_under_one_key_get_their_own_results(runtime):
    # The bug of issue 12: "news" kept a's items and served them for b.
    a = Visitor(runtime)
    assert a.publish(viewlet, "http://a/feed") is None
    assert a.start_round() == 1
    run_all(runtime)
    a.end_round()
    assert a.publish(viewlet, "http://a/feed") == ["story of http://a/feed"]
    b = Visitor(runtime)
    assert b.publish(viewlet, "http://b/feed") is None  # nothing kept for b
    assert b.start_round() == 1
    assert run_all(runtime) == 1  # b's feed was fetched
    b.end_round()
    assert b.publish(viewlet, "http://b/feed") == ["story of http://b/feed"]
    assert runtime.shared.executions == 2


def test_a_kept_result_serves_the_same_computation_whatever_the_key(runtime):
    first = Visitor(runtime)
    first.publish(viewlet, "http://a/feed")
    first.start_round()
    run_all(runtime)
    first.end_round()
    # Later requests for the same computation: one pass, no execution.
    for key in ("news", "another-key"):
        later = Visitor(runtime)
        assert later.publish(viewlet, "http://a/feed", key=key) == [
            "story of http://a/feed"]
        assert later.start_round() == 0
        # ...and it is now this request's outcome for its key.
        assert later.publish(futures.result, key) == ["story of http://a/feed"]
    assert runtime.shared.executions == 1
    assert runtime.shared.cache_hits == 2


def test_result_alone_sees_only_this_request_s_outcomes(runtime):
    first = Visitor(runtime)
    first.publish(viewlet, "http://a/feed")
    first.start_round()
    run_all(runtime)
    first.end_round()
    (kept,) = runtime.shared._cache  # the identity the result is kept under
    later = Visitor(runtime)
    # Neither the key nor the identity names a kept result for result().
    for key in ("news", kept):
        with pytest.raises(futures.FutureNotSubmittedError):
            later.publish(futures.result, key)
    assert later.publish(futures.result, "news", "dflt") == "dflt"
    # Positive control: the request that computed it reads it.
    assert first.publish(futures.result, "news") == ["story of http://a/feed"]


def test_a_shared_promise_submitted_again_is_served_by_its_round(runtime):
    # submit() + result(): no result before the round (result() knows no
    # computation), but the round serves the kept result: no execution.
    def submitting(url):
        try:
            return futures.result("news")
        except futures.FutureNotSubmittedError:
            futures.submit("news", futures.promise(feed, shared=True, ttl=300), url)

    for number in range(2):
        visitor = Visitor(runtime)
        assert visitor.publish(submitting, "http://a/feed") is None
        assert visitor.start_round() == 1
        run_all(runtime)
        visitor.end_round()
        assert visitor.publish(submitting, "http://a/feed") == [
            "story of http://a/feed"]
    assert runtime.shared.executions == 1


def test_concurrent_requests_share_one_execution_per_computation(runtime):
    visitors = {url: [Visitor(runtime) for _ in range(3)]
                for url in ("http://a/feed", "http://b/feed")}
    for url, group in visitors.items():
        for visitor in group:
            assert visitor.publish(viewlet, url) is None
            visitor.start_round()
    # Six requests in flight, two computations: two executions.
    assert run_all(runtime) == 2
    assert (runtime.shared.executions, runtime.shared.joined) == (2, 4)
    for url, group in visitors.items():
        for visitor in group:
            visitor.end_round()
            assert visitor.publish(viewlet, url) == [f"story of {url}"]


def test_the_executor_is_part_of_the_identity(runtime):
    first = Visitor(runtime)
    first.publish(viewlet, "http://a/feed")
    first.start_round()
    run_all(runtime)
    first.end_round()
    other = Visitor(runtime)
    assert other.publish(viewlet, "http://a/feed", executor="asyncio") is None
    assert other.start_round() == 1
    assert run_all(runtime, "asyncio") == 1
    # Positive control: on the first executor it is kept.
    assert Visitor(runtime).publish(viewlet, "http://a/feed") == [
        "story of http://a/feed"]


def test_make_promise_identifies_a_shared_promise_by_what_it_computes():
    options = futures.promise(feed, shared=True, ttl=300)
    one = make_promise("resultOrSubmit", "news", options, ("http://a",), {})
    assert one.shared_key == make_promise(
        "submit", "other-key", options, ("http://a",), {}).shared_key
    assert one.shared_key != make_promise(
        "submit", "news", options, ("http://b",), {}).shared_key
    assert one.shared_key != make_promise(
        "submit", "news", futures.promise(feed, executor="asyncio", shared=True),
        ("http://a",), {}).shared_key
    assert "news" not in one.shared_key
    # Not shared: no identity.
    assert make_promise("submit", "news", feed, ("http://a",), {}).shared_key is None
    # A named promise's options carry its own.
    named = make_promise("submit", "named:k", options.with_shared_key("digest"),
                         ("http://a",), {})
    assert named.shared_key == "digest"


def test_a_shared_promise_needs_a_named_function_and_plain_arguments(request_):
    with pytest.raises(TypeError, match=(
            r"collective.futures.resultOrSubmit\(\): shared=True needs fn to be "
            r"a function importable by name, not a lambda")):
        futures.resultOrSubmit("k", None, futures.promise(lambda url: url, shared=True),
                               "http://a")
    with pytest.raises(TypeError, match=(
            r"collective.futures.submit\(\): a shared promise's arguments must "
            r"be plain data .* kwargs\['since'\] is \(or holds\) an object of "
            r"type object")):
        futures.submit("k", futures.promise(feed, shared=True), "http://a",
                       since=object())
    assert getattr(request_, STATE_ATTRIBUTE, None) is None  # nothing submitted
    # Positive controls: not shared, both are accepted.
    assert futures.resultOrSubmit("k", None, lambda url: url, "http://a") is None
    assert futures.submit("j", feed, "http://a", since=object()) is True
    assert futures.submit("s", futures.promise(feed, shared=True), "http://a") is True
