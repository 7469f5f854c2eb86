"""The futures API, called by views and templates while a request is
published (on a Zope worker thread).

Same names and meaning as collective.futures 0.9. A *promise* is a function
submitted under a key; its *future* is the result the next pass reads with
``result(key)``.
"""

from zope.globalrequest import getRequest

from .exceptions import (
    FutureAlreadyResolvedError,
    FutureNotResolvedError,
    FutureNotSubmittedError,
    NoRequestError,
)
from .promises import Promise
from .publisher import futures_for


_marker = object()


def _state(func):
    request = getRequest()
    if request is None:
        raise NoRequestError(
            f"collective.futures.{func}() called outside a request: futures "
            f"belong to the request being published (no global request is "
            f"set in this thread)")
    return futures_for(request)


def _check_key(func, key):
    if not isinstance(key, str):
        raise TypeError(
            f"collective.futures.{func}(): key must be a str, not "
            f"{type(key).__name__} ({key!r:.60})")
    if not key:
        raise ValueError(f"collective.futures.{func}(): key must not be empty")


def _check_fn(func, fn):
    if not callable(fn):
        raise TypeError(
            f"collective.futures.{func}(): fn must be callable, not "
            f"{type(fn).__name__} ({fn!r:.60})")


def result(key, default=_marker):
    """Return the result of the promise submitted under ``key``.

    If the promise raised, that exception is raised here (a promise past its
    timeout raises :class:`FutureTimeoutError`). Without a result: return
    ``default`` when given, else raise :class:`FutureNotResolvedError` if the
    promise was submitted in this pass, or :class:`FutureNotSubmittedError`.
    """
    _check_key("result", key)
    state = _state("result")
    outcome = state.resolved.get(key)
    if outcome is not None:
        return outcome.unwrap()
    if default is not _marker:
        return default
    if key in state.pending:
        raise FutureNotResolvedError(
            f"future {key!r} was submitted in this pass; its result arrives "
            f"in the next pass")
    raise FutureNotSubmittedError(f"future {key!r} has not been submitted")


def submit(key, fn, /, *args, **kwargs):
    """Submit ``fn(*args, **kwargs)`` as the promise for ``key``; return True.

    It runs outside the Zope worker after this pass, which is then discarded;
    the next pass reads the outcome with ``result(key)``. ``fn`` gets no ZODB
    connection, no security context and no request: give it plain data.
    Submitting a key again in the same pass replaces the promise; submitting
    a key that already has a result raises
    :class:`FutureAlreadyResolvedError`.
    """
    _check_key("submit", key)
    _check_fn("submit", fn)
    state = _state("submit")
    if key in state.resolved:
        raise FutureAlreadyResolvedError(
            f"future {key!r} already has a result; clear({key!r}) before "
            f"submitting it again")
    state.pending[key] = Promise(key, fn, args, kwargs)
    return True


def resultOrSubmit(key, placeholder, fn, /, *args, **kwargs):
    """Return the result for ``key``, or submit ``fn(*args, **kwargs)`` for it
    and return ``placeholder``.

    The placeholder is what this (discarded) pass renders; it never reaches
    the client. A promise that raised makes this raise, like ``result``.
    Calling it again for a key already submitted in this pass returns the
    placeholder (0.9 raised FutureNotResolvedError).
    """
    _check_key("resultOrSubmit", key)
    _check_fn("resultOrSubmit", fn)
    state = _state("resultOrSubmit")
    outcome = state.resolved.get(key)
    if outcome is not None:
        return outcome.unwrap()
    if key not in state.pending:
        state.pending[key] = Promise(key, fn, args, kwargs)
    return placeholder


def cancel(key):
    """Withdraw the promise submitted for ``key`` in this pass.

    Returns True if there was one. A pass that withdraws all its promises is
    published as it is, with no further pass.
    """
    _check_key("cancel", key)
    return _state("cancel").pending.pop(key, None) is not None


def clear(key):
    """Forget the result for ``key`` so it can be submitted again.

    Returns True if there was a result.
    """
    _check_key("clear", key)
    return _state("clear").resolved.pop(key, None) is not None


def reset(key):
    """``clear(key)`` and ``cancel(key)``; True if either found something."""
    cleared = clear(key)
    cancelled = cancel(key)
    return cleared or cancelled


#: snake_case alias of :func:`resultOrSubmit` (the canonical spelling).
result_or_submit = resultOrSubmit
