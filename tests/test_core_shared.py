"""core/shared.py: what identifies a shared execution (the function, its
arguments and executor, never the caller's key), one execution for every
concurrent request of an identity (single flight, with a placeholder
registered under the lock and the submit outside it), and results kept for
a time-to-live (LRU-bounded)."""

import concurrent.futures
import functools
import json
import threading

import pytest

from collective.futures.core.plain import encode
from collective.futures.core.promise import Promise
from collective.futures.core.shared import (
    SharedFutures, digest, function_name, identity)

from fakes import FakeClock, bounded


def test_single_flight_and_time_to_live():
    clock = [0.0]
    shared = SharedFutures(max_entries=2, clock=lambda: clock[0])
    started = []
    release = threading.Event()
    import concurrent.futures as cf
    pool = cf.ThreadPoolExecutor(2)
    try:
        def submit():
            started.append(1)
            return pool.submit(lambda: release.wait(5) and "value")

        promise = Promise("k", str, shared=True, ttl=10, shared_key="id-k")
        futures_ = [shared.run(promise, submit) for _ in range(100)]
        assert len(set(map(id, futures_))) == 1 and len(started) == 1
        release.set()
        assert futures_[0].result(5) == "value"
        assert shared.cached("id-k").value == "value"
        assert shared.cached("k") is None  # kept by identity, not by key
        assert (shared.executions, shared.joined) == (1, 99)
        clock[0] = 11.0
        assert shared.cached("id-k") is None  # expired
    finally:
        pool.shutdown()


def test_errors_are_not_kept_and_the_cache_is_bounded():
    import concurrent.futures as cf
    shared = SharedFutures(max_entries=2)

    def done(value=None, error=None):
        future = cf.Future()
        future.set_exception(error) if error else future.set_result(value)
        return lambda: future

    shared.run(shared_promise("bad", ttl=10), done(error=ValueError()))
    assert shared.cached("bad") is None
    for name in "abc":
        shared.run(shared_promise(name, ttl=10), done(name))
    assert shared.cached("a") is None  # evicted: least recently used
    assert shared.cached("c").value == "c"


def test_a_shared_execution_older_than_the_timeout_is_not_joined():
    import concurrent.futures as cf
    clock = [0.0]
    shared = SharedFutures(clock=lambda: clock[0], stale_after=5)
    hung = cf.Future()
    promise = shared_promise()
    first = shared.run(promise, lambda: hung)
    clock[0] = 4.0
    assert shared.run(promise, lambda: cf.Future()) is first  # joined
    clock[0] = 6.0
    fresh = cf.Future()
    second = shared.run(promise, lambda: fresh)  # hung: started anew
    assert second is not first
    assert shared.executions == 2
    fresh.set_result("fresh")
    assert second.result(0) == "fresh" and not first.done()


def shared_promise(shared_key="k", ttl=0.0, key="key"):
    """A shared promise whose identity is ``shared_key`` (what the API
    computes with ``identity()``); its key is the caller's handle only."""
    return Promise(key, str, shared=True, ttl=ttl, shared_key=shared_key)


# single flight with a placeholder


def test_submit_runs_outside_the_lock_and_joiners_get_its_error():
    shared = SharedFutures()
    promise = shared_promise()
    joined = []

    def submit():
        # Runs outside the lock: concurrent requests join the placeholder
        # meanwhile (with the lock held here, this would deadlock).
        joined.extend(shared.run(promise, pytest.fail) for _ in range(3))
        raise RuntimeError("the executor's queue is full")

    first = bounded(lambda: shared.run(promise, submit))
    assert all(f is first for f in joined)
    for future in [first] + joined:
        with pytest.raises(RuntimeError, match="queue is full"):
            future.result(0)
    # Refused by its executor: it never ran, so it is not counted as an
    # execution (the joiners are).
    assert (shared.executions, shared.joined) == (0, 3)
    # The failed execution is over: the next request starts anew.
    again = concurrent.futures.Future()
    assert shared.run(promise, lambda: again) is not first
    assert shared.executions == 1


def test_a_base_exception_from_submit_fails_the_placeholder_and_propagates():
    shared = SharedFutures()
    promise = shared_promise()
    joined = []

    def submit():
        joined.append(shared.run(promise, pytest.fail))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        shared.run(promise, submit)
    # Nobody waits on it until it goes stale: the joiner has the error.
    assert isinstance(joined[0].exception(0), KeyboardInterrupt)
    assert shared.run(promise, concurrent.futures.Future) is not joined[0]


def test_the_placeholder_copies_the_result():
    shared = SharedFutures()
    execution = concurrent.futures.Future()
    placeholder = shared.run(shared_promise(), lambda: execution)
    assert placeholder is not execution and not placeholder.done()
    execution.set_result("value")
    assert placeholder.result(0) == "value"


def test_the_placeholder_copies_the_exception():
    shared = SharedFutures()
    execution = concurrent.futures.Future()
    placeholder = shared.run(shared_promise(), lambda: execution)
    error = LookupError("upstream")
    execution.set_exception(error)
    assert placeholder.exception(0) is error


def test_the_placeholder_copies_a_cancellation():
    shared = SharedFutures()
    execution = concurrent.futures.Future()
    placeholder = shared.run(shared_promise(ttl=10), lambda: execution)
    assert execution.cancel()
    assert placeholder.cancelled()
    assert shared.cached("k") is None  # nothing kept
    # Over: a new request starts a new execution.
    assert shared.run(shared_promise(), concurrent.futures.Future) is not placeholder


def test_a_placeholder_cancelled_by_a_joiner_ignores_the_late_result():
    shared = SharedFutures()
    execution = concurrent.futures.Future()
    placeholder = shared.run(shared_promise(ttl=10), lambda: execution)
    assert placeholder.cancel()
    execution.set_result("late")  # _copy leaves a settled placeholder alone
    assert placeholder.cancelled() and shared.cached("k") is None


def test_the_identity_not_the_key_identifies_the_execution():
    shared = SharedFutures()
    first = shared.run(shared_promise("same", key="a"), concurrent.futures.Future)
    # Another key, the same computation: joined.
    assert shared.run(shared_promise("same", key="b"), pytest.fail) is first
    # The same key, another computation: a new execution (the bug of the
    # constant key "news" with the feed's URL as argument).
    other = shared.run(shared_promise("other", key="a"), concurrent.futures.Future)
    assert other is not first
    assert (shared.executions, shared.joined) == (2, 1)


def test_a_shared_promise_without_an_identity_is_refused():
    shared = SharedFutures()
    # The caller's key is never taken for the identity.
    with pytest.raises(ValueError, match="shared promise 'news' has no identity"):
        shared.run(Promise("news", str, shared=True), pytest.fail)
    assert shared.executions == 0
    # Positive control: the same promise with its identity runs.
    execution = concurrent.futures.Future()
    promise = Promise("news", str, shared=True, shared_key="id")
    assert not shared.run(promise, lambda: execution).done()
    assert shared.executions == 1


def test_concurrent_requests_share_one_execution_across_threads():
    shared = SharedFutures()
    submits = []
    barrier = threading.Barrier(8, timeout=5)
    execution = concurrent.futures.Future()

    def submit():
        submits.append(1)
        return execution

    def request():
        barrier.wait()
        return shared.run(shared_promise(), submit)

    threads_results = []
    workers = [threading.Thread(target=lambda: threads_results.append(request()))
               for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(5)
    assert len(threads_results) == 8 and len(submits) == 1
    assert len({id(f) for f in threads_results}) == 1


# the time-to-live cache

def finished(value=None, error=None):
    future = concurrent.futures.Future()
    future.set_exception(error) if error else future.set_result(value)
    return lambda: future


def test_a_kept_result_expires_at_its_ttl():
    clock = FakeClock(100.0)
    shared = SharedFutures(clock=clock)
    shared.run(shared_promise(ttl=10), finished("v"))
    clock.advance(9.99)
    assert shared.cached("k").value == "v"
    assert shared.cache_hits == 1
    clock.advance(0.01)
    assert shared.cached("k") is None  # expired at exactly its ttl
    assert shared.cached("k") is None and shared.cache_hits == 1


def test_without_a_ttl_nothing_is_kept():
    shared = SharedFutures()
    shared.run(shared_promise(ttl=0), finished("v"))
    assert shared.cached("k") is None


def test_the_cache_keeps_the_most_recently_used():
    clock = FakeClock()
    shared = SharedFutures(max_entries=2, clock=clock)
    for key in "ab":
        shared.run(shared_promise(key, ttl=60), finished(key))
    assert shared.cached("a").value == "a"  # a is now the most recently used
    shared.run(shared_promise("c", ttl=60), finished("c"))
    assert shared.cached("b") is None  # the least recently used went
    assert shared.cached("a").value == "a" and shared.cached("c").value == "c"


def test_a_new_result_for_a_kept_key_replaces_it():
    clock = FakeClock()
    shared = SharedFutures(max_entries=2, clock=clock)
    shared.run(shared_promise(ttl=5), finished("old"))
    clock.advance(6)
    shared.run(shared_promise(ttl=5), finished("new"))
    assert shared.cached("k").value == "new"


def test_a_result_kept_since_the_request_looked_at_the_cache_is_used():
    # A request looks at the cache in pass 1, before the first execution
    # ends; by the time its round starts that execution has ended and its
    # result is kept: it must not run the function a second time.
    import concurrent.futures as cf
    shared = SharedFutures()
    promise = shared_promise("feed", ttl=300)
    ran = []

    def submit():
        ran.append(1)
        future = cf.Future()
        future.set_result("items")
        return future

    assert shared.cached("feed") is None  # pass 1 of both requests
    assert shared.run(promise, submit).result(0) == "items"
    assert shared.run(promise, submit).result(0) == "items"
    assert ran == [1] and shared.executions == 1
    # Positive control: without a ttl nothing is kept, so it runs again.
    again = shared_promise("other")
    shared.run(again, submit).result(0)
    shared.run(again, submit).result(0)
    assert ran == [1, 1, 1]


# the identity: what is computed

def fetch(url, limit=10):
    return url, limit


def other(url, limit=10):
    return url, limit


class Feeds:
    @classmethod
    def fetch(cls, url):
        return url

    @staticmethod
    def parse(data):
        return data

    def method(self, url):
        return url


class Fetcher:
    def __call__(self, url):
        return url


def logged(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper


#: A copy of fetch made by a decorator under another name: it calls
#: itself ``fetch`` (functools.wraps), but ``fetch`` is another object.
logged_fetch = logged(fetch)


@logged
def decorated(url):
    return url


def test_the_identity_is_the_function_the_arguments_and_the_executor():
    base = identity(fetch, ("http://a",), {"limit": 5}, "threads")
    assert base == identity(fetch, ("http://a",), {"limit": 5}, "threads")
    assert len(base) == 64 and int(base, 16) >= 0  # a sha256 hex digest
    assert base != identity(other, ("http://a",), {"limit": 5}, "threads")
    assert base != identity(fetch, ("http://b",), {"limit": 5}, "threads")
    assert base != identity(fetch, ("http://a",), {"limit": 6}, "threads")
    assert base != identity(fetch, ("http://a",), {"limit": 5}, "asyncio")
    # The same call spelled otherwise is another identity (never a wrong
    # result, at worst one more execution).
    assert base != identity(fetch, ("http://a", 5), {}, "threads")


def test_the_identity_is_stable_across_threads():
    made = {}

    def compute():
        made["other thread"] = identity(fetch, ("http://a", [1, {"b": 2}]), {},
                                        "threads")

    thread = threading.Thread(target=compute, name="test-identity-thread")
    thread.start()
    thread.join(5)
    assert made["other thread"] == identity(
        fetch, ("http://a", [1, {"b": 2}]), {}, "threads")


@pytest.mark.parametrize("values", [
    (1, 1.0, "1", True, b"1"),
    (0, 0.0, "", False, None, b"", [], (), {}),
    ([1, 2], (1, 2), [[1], 2], [1, [2]], {1: 2}),
    (0.0, -0.0),
    ("ab", ["a", "b"], ["ab"], ("a", "b")),
    ({"a": 1}, {"a": 1.0}, {"a": True}, {1: "a"}, {"1": "a"}),
])
def test_the_encoding_tells_types_and_structure_apart(values):
    identities = {identity(fetch, (value,), {}, "threads") for value in values}
    assert len(identities) == len(values)


def test_dict_order_does_not_count_at_any_depth():
    one = {"a": 1, "b": [{"x": 1, "y": 2}], 3: None}
    two = {3: None, "b": [{"y": 2, "x": 1}], "a": 1}
    assert list(one) != list(two)
    assert encode(one) == encode(two)
    assert identity(fetch, (one,), {"k": 1, "l": 2}, "threads") == identity(
        fetch, (two,), {"l": 2, "k": 1}, "threads")
    # Positive control: another value under the same keys is another identity.
    three = {"a": 1, "b": [{"x": 1, "y": 3}], 3: None}
    assert encode(one) != encode(three)


def test_no_concatenation_of_parts_passes_for_another():
    assert encode(["ab", "c"]) != encode(["a", "bc"])
    assert encode([b"a", b""]) != encode([b"", b"a"])
    assert encode({"a": "bc"}) != encode({"ab": "c"})
    assert encode(10 ** 5000) != encode(10 ** 5000 + 1)  # no str() limit
    assert encode("\ud800") != encode("\ufffd")  # a lone surrogate is kept


def test_a_partial_is_its_function_with_its_arguments_first():
    whole = identity(fetch, ("http://a",), {"limit": 5}, "threads")
    assert identity(functools.partial(fetch, "http://a"), (), {"limit": 5},
                    "threads") == whole
    assert identity(functools.partial(fetch, limit=5), ("http://a",), {},
                    "threads") == whole
    assert identity(functools.partial(fetch, "http://b"), (), {"limit": 5},
                    "threads") != whole


def test_a_named_digest_is_not_a_function_identity():
    # @@futures' named promises and functions of the same name never meet.
    name = function_name(fetch)
    assert digest("named", name, ("http://a",), {}, "threads") != digest(
        "function", name, ("http://a",), {}, "threads")
    assert digest("function", name, ("http://a",), {}, "threads") == identity(
        fetch, ("http://a",), {}, "threads")


def test_functions_that_have_a_name_are_identified_by_it():
    assert function_name(fetch) == "test_core_shared:fetch"
    assert function_name(Feeds.fetch) == "test_core_shared:Feeds.fetch"
    assert function_name(Feeds.parse) == "test_core_shared:Feeds.parse"
    assert function_name(json.dumps) == "json:dumps"
    assert function_name(len) == "builtins:len"
    assert function_name(str) == "builtins:str"
    # Decorated where it is defined: the name refers to the wrapper itself.
    assert function_name(decorated) == "test_core_shared:decorated"


@pytest.mark.parametrize("fn, message", [
    (lambda url: url, r"not a lambda \(<lambda> in test_core_shared\): two of "
                      r"them may share a name.*define it at module level"),
    (Feeds().method, r"not a method of an object \(Feeds\.method, bound to an "
                     r"object of type Feeds\)"),
    ("abc".upper, r"not a method of an object \(str\.upper"),
    (Fetcher(), r"not a callable object \(of type Fetcher\)"),
    (logged_fetch, r"test_core_shared\.fetch is not fn \(a copy made by a "
                   r"decorator under another name, or code reloaded"),
    (dict.fromkeys, r"dict\.fromkeys names no module"),
])
def test_what_a_name_does_not_identify_is_refused(fn, message):
    with pytest.raises(TypeError, match=message):
        identity(fn, ("http://a",), {}, "threads")
    with pytest.raises(TypeError, match="shared=True needs fn"):
        function_name(fn)


def test_a_local_function_defined_twice_would_share_a_name():
    # Why local functions are refused: both are make.<locals>.get.
    def make(value):
        def get():
            return value
        return get

    one, two = make(1), make(2)
    assert one.__qualname__ == two.__qualname__ and one() != two()
    for fn in (one, two):
        with pytest.raises(TypeError, match=r"local function \(.*make\.<locals>\.get"):
            identity(fn, (), {}, "threads")


@pytest.mark.parametrize("args, kwargs, label, kind", [
    ((object(),), {}, r"args\[0\]", "object"),
    (("http://a", [1, {2, 3}]), {}, r"args\[1\]", "set"),
    (("http://a",), {"when": frozenset()}, r"kwargs\['when'\]", "frozenset"),
    (({"k": [1, Fetcher()]},), {}, r"args\[0\]", "Fetcher"),
    (({Feeds: 1},), {}, r"args\[0\]", "type"),
])
def test_arguments_that_are_not_plain_data_are_refused_by_name(args, kwargs,
                                                                label, kind):
    with pytest.raises(TypeError, match=(
            r"a shared promise's arguments must be plain data .*: its result "
            rf"is kept for everyone who asks for the same computation; {label} "
            rf"is \(or holds\) an object of type {kind}$")):
        identity(fetch, args, kwargs, "threads")


def test_a_partial_s_arguments_must_be_plain_too():
    with pytest.raises(TypeError, match=r"partial args\[0\] is \(or holds\) an "
                                        r"object of type object"):
        identity(functools.partial(fetch, object()), (), {}, "threads")
    with pytest.raises(TypeError, match=r"partial kwargs\['limit'\]"):
        identity(functools.partial(fetch, limit=object()), ("u",), {}, "threads")


def test_subclasses_of_plain_types_are_refused():
    class Text(str):
        pass

    with pytest.raises(TypeError, match=r"args\[0\] is \(or holds\) an object "
                                        r"of type Text"):
        identity(fetch, (Text("http://a"),), {}, "threads")


def nested(levels):
    value = "leaf"
    for _ in range(levels):
        value = [value]
    return value


def test_arguments_nested_too_deep_are_refused():
    # Positive control: eight levels pass.
    assert identity(fetch, (nested(8),), {}, "threads") != identity(
        fetch, (nested(7),), {}, "threads")
    with pytest.raises(TypeError, match=r"a shared promise's args\[0\]: arguments "
                                        r"nest deeper than 8 containers"):
        identity(fetch, (nested(9),), {}, "threads")
    cycle = []
    cycle.append(cycle)
    with pytest.raises(TypeError, match="nest deeper"):
        identity(fetch, (cycle,), {}, "threads")


def test_plain_arguments_of_every_kind_pass():
    # Positive control of the refusals above.
    value = {"s": "é", "b": b"\x00", "i": -(10 ** 30), "f": float("inf"),
             "t": True, "n": None, "l": [1, (2.5, "x")], 7: {"k": ()}}
    assert len(identity(fetch, (value,), {"limit": 3}, "processes")) == 64


def test_encode_refuses_what_is_not_plain():
    with pytest.raises(TypeError, match="not plain data: set"):
        encode([{1}])
