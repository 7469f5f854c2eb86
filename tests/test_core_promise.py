"""core/promise.py: the value types (Promise, PromiseOptions, Outcome)
and promise(), which validates options."""

import dataclasses

import pytest

from collective import futures
from collective.futures.core.promise import Outcome, Promise, PromiseOptions
from collective.futures.exceptions import (
    ExecutorFullError, FutureCancelledError, FutureTimeoutError)


def fn(*args):
    return args


def test_promise_options_are_validated():
    with pytest.raises(TypeError, match="fn must be callable"):
        futures.promise(1)
    with pytest.raises(TypeError, match="executor must be a name"):
        futures.promise(fn, executor=3)
    with pytest.raises(ValueError, match="ttl needs shared=True"):
        futures.promise(fn, ttl=5)
    with pytest.raises(ValueError, match="ttl must be seconds"):
        futures.promise(fn, shared=True, ttl=-1)


def test_promise_keeps_its_options_apart_from_fn():
    options = futures.promise(fn, executor="processes", shared=True, ttl=2)
    assert isinstance(options, PromiseOptions)
    assert (options.fn, options.executor, options.shared, options.ttl) == (
        fn, "processes", True, 2.0)
    assert options(1, 2) == (1, 2)  # still callable as fn
    # Wrapping options again takes the function, not the options.
    assert futures.promise(options).fn is fn
    assert futures.promise(fn).ttl == 0.0
    keyed = options.with_shared_key("sk")
    assert keyed.shared_key == "sk" and options.shared_key is None


@pytest.mark.parametrize("ttl", [True, "5", float("-inf")])
def test_promise_ttl_must_be_seconds(ttl):
    with pytest.raises(ValueError, match="ttl must be seconds"):
        futures.promise(fn, shared=True, ttl=ttl)


def test_promise_shared_must_be_a_boolean():
    with pytest.raises(TypeError, match="shared must be True or False"):
        futures.promise(fn, shared=1)


def test_a_promise_calls_fn_with_its_arguments():
    promise = Promise("k", fn, (1, 2), {})
    assert promise() == (1, 2)
    assert Promise("k", lambda **kw: kw, (), {"a": 1})() == {"a": 1}
    assert promise.name == "fn"
    with pytest.raises(dataclasses.FrozenInstanceError):
        promise.key = "other"


def test_a_promise_name_without_qualname_is_never_its_repr():
    # repr() would be a new metrics label per object, and can carry
    # arguments: a callable object is named after its class, a partial
    # after its function, whatever their repr says.
    class Callable:
        def __call__(self):
            return 1

        def __repr__(self):
            return "<callable password=hunter2>"

    import functools
    name = Promise("k", Callable()).name
    assert name.endswith(".<locals>.Callable") and "hunter2" not in name
    partial = functools.partial(fn, password="hunter2")
    assert Promise("k", partial).name == "fn"
    assert Promise("k", functools.partial(partial, 1)).name == "fn"
    assert "hunter2" in repr(partial)  # the control: repr would leak it


@pytest.mark.parametrize("error, kind", [
    (None, "completed"),
    (FutureTimeoutError("t"), "timed_out"),
    (FutureCancelledError("c"), "cancelled"),
    (ExecutorFullError("f"), "rejected"),
    (KeyError("k"), "failed"),
])
def test_outcome_kinds(error, kind):
    assert Outcome(value=1, error=error).kind == kind


def test_outcome_unwrap():
    assert Outcome(value=3).unwrap() == 3
    error = KeyError("k")
    with pytest.raises(KeyError) as info:
        Outcome(error=error).unwrap()
    assert info.value is error


def test_a_fallback_is_what_a_failed_outcome_unwraps_to():
    # on_error: one failing upstream degrades its part of the page; the
    # outcome still says what happened (metrics, the request log).
    from collective.futures.core.promise import NO_FALLBACK

    failed = Outcome(error=KeyError("k"), fallback=[])
    assert failed.unwrap() == [] and failed.kind == "failed"
    timed_out = Outcome(error=FutureTimeoutError("t"), fallback=None)
    assert timed_out.unwrap() is None and timed_out.kind == "timed_out"
    # A success ignores it; no fallback (the default) raises, as before.
    assert Outcome(value=3, fallback=[]).unwrap() == 3
    assert Outcome(error=KeyError("k")).fallback is NO_FALLBACK
    with pytest.raises(KeyError):
        Outcome(error=KeyError("k")).unwrap()


def test_promise_carries_on_error():
    from collective.futures.core.promise import NO_FALLBACK, promise

    assert promise(len, on_error="n/a").on_error == "n/a"
    assert promise(len, on_error=None).on_error is None  # None is a value
    assert promise(len).on_error is NO_FALLBACK
