"""zope/named.py: named promises for templates and restricted code (the
parts that need no Zope instance; @@futures is exercised over HTTP by
test_templates_security.py)."""

import pytest
from zExceptions import Unauthorized
from zope.interface.verify import verifyObject

from collective.futures.interfaces import INamedPromise
from collective.futures.zope.named import KEY_PREFIX, NamedPromise, _plain


def fetch(url, limit=10):
    return url, limit


def test_a_named_promise_provides_its_interface():
    named = NamedPromise("feed", fetch, "zope2.View", executor="threads",
                         shared=True, ttl=60)
    assert verifyObject(INamedPromise, named)
    assert (named.name, named.fn, named.permission, named.executor,
            named.shared, named.ttl) == ("feed", fetch, "zope2.View",
                                          "threads", True, 60)


def test_options_carry_executor_and_sharing():
    options = NamedPromise("feed", fetch, "zope2.View", shared=True,
                           ttl=60).options()
    assert (options.fn, options.shared, options.ttl) == (fetch, True, 60.0)
    # Not shared: the ttl is not passed on (promise() would refuse it).
    options = NamedPromise("feed", fetch, "zope2.View", ttl=60).options()
    assert (options.shared, options.ttl) == (False, 0.0)


def test_the_shared_key_names_the_promise_and_its_arguments_only():
    named = NamedPromise("feed", fetch, "zope2.View", shared=True)
    key = named.shared_key(("http://a",), {"limit": 5})
    assert len(key) == 64 and "feed" not in key  # a sha256 digest
    assert not key.startswith(KEY_PREFIX)  # restricted code cannot name it
    assert key == named.shared_key(("http://a",), {"limit": 5})
    assert key != named.shared_key(("http://b",), {"limit": 5})
    assert key != named.shared_key(("http://a",), {"limit": 6})
    # Keyword order and dict order do not matter.
    assert named.shared_key((), {"a": 1, "b": 2}) == named.shared_key(
        (), {"b": 2, "a": 1})
    assert named.shared_key(({"a": 1, "b": 2},), {}) == named.shared_key(
        ({"b": 2, "a": 1},), {})
    # Types do (repr() told these apart too, but not dict orders).
    assert len({named.shared_key((value,), {})
                for value in (1, 1.0, True, "1", b"1", [1], (1,))}) == 7
    other = NamedPromise("other", fetch, "zope2.View", shared=True)
    assert other.shared_key(("http://a",), {"limit": 5}) != key
    # The executor is part of it, as for the Python API.
    on_asyncio = NamedPromise("feed", fetch, "zope2.View", executor="asyncio",
                              shared=True)
    assert on_asyncio.shared_key(("http://a",), {"limit": 5}) != key


def test_a_named_promise_never_shares_with_its_function_called_directly():
    # Same function, arguments and executor: the named promise is
    # identified by its name, trusted code's call by the function.
    from collective.futures.core.shared import identity

    named = NamedPromise("feed", fetch, "zope2.View", executor="threads",
                         shared=True)
    assert named.shared_key(("http://a",), {}) != identity(
        fetch, ("http://a",), {}, "threads")


def test_plain_data_passes():
    _plain("feed", ("url", 1, 2.5, True, None, b"x", [1, (2, {"k": "v"})]),
           {"limit": 3})


class MyStr(str):
    pass


@pytest.mark.parametrize("value, named", [
    (MyStr("x"), "MyStr"), ({1, 2}, "set"), (object(), "object"),
    ([{"k": len}], "builtin_function_or_method"),
])
def test_anything_else_is_refused_naming_its_type(value, named):
    with pytest.raises(Unauthorized, match=f"plain data .* not {named}"):
        _plain("feed", (value,), {})
    with pytest.raises(Unauthorized, match=f"not {named}"):
        _plain("feed", (), {"kw": value})


def test_deep_nesting_is_refused():
    deep = "leaf"
    for _ in range(9):
        deep = [deep]
    with pytest.raises(Unauthorized, match="nest deeper than 8"):
        _plain("feed", (deep,), {})
