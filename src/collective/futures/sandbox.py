"""The sandbox a promise runs in, and what may enter it: the one place of
the runtime that knows Zope.

Runs on: ``run`` and ``run_async`` on the executors' threads (a
``collective.futures-worker-N`` thread, the asyncio loop, a stream's
writer); ``refusal`` on the Zope worker, when a promise is submitted.

A promise runs with no security manager (checks are made as Anonymous
``nobody``) and a global request that refuses to be used, so it can
neither act as the user who asked nor reach the request. It gets plain
data, never what belongs to the request's ZODB connection: persistent
objects, acquisition wrappers, the request, a view.
"""

import asyncio
import inspect
import logging
import threading

from AccessControl.SecurityManagement import noSecurityManager
from persistent import Persistent
from zope.globalrequest import clearRequest, setRequest

from .core.plain import first_refused


logger = logging.getLogger("collective.futures")


class NoRequest:
    """What ``zope.globalrequest.getRequest()`` returns in a promise: any use
    fails with a clear error instead of acting on (or as) a request."""

    def __getattr__(self, name):
        raise RuntimeError(
            f"a promise has no request (it tried request.{name}): promises run "
            f"outside the request, without its user, session or ZODB "
            f"connection; pass what they need as plain arguments")

    def __repr__(self):
        return "<no request: this is a promise>"


NO_REQUEST = NoRequest()

_depth = threading.local()


class promise_context:
    """Around each promise on a side thread: no security manager and a
    global request that refuses to be used. Both reset afterwards, so one
    promise never sees what another left on the same thread. Re-entrant."""

    def __enter__(self):
        depth = getattr(_depth, "value", 0)
        _depth.value = depth + 1
        if depth == 0:
            noSecurityManager()
            setRequest(NO_REQUEST)

    def __exit__(self, *exc):
        _depth.value -= 1
        if _depth.value == 0:
            clearRequest()
            noSecurityManager()


def run(promise):
    """Run a promise on a thread of this process. The traceback of a
    failing promise is logged here, once, where it ran; the next pass gets
    the exception."""
    try:
        with promise_context():
            return promise()
    except Exception:
        logger.exception(
            "promise %r (%s) raised; result() raises it in the next pass (a "
            "fragment gets its fallback)",
            promise.key, promise.name)
        raise


async def run_async(promise):
    """Run a promise on the asyncio loop (see :func:`run`)."""
    try:
        # The loop thread's global request and security manager are shared
        # by every coroutine, so set for the synchronous part only.
        with promise_context():
            result = promise()
        if inspect.isawaitable(result):
            result = await result
        return result
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception(
            "promise %r (%s) raised; result() raises it in the next pass (a "
            "fragment gets its fallback)",
            promise.key, promise.name)
        raise


def _belongs_to_request(value):
    """Why ``value`` must not enter the sandbox, or None."""
    if isinstance(value, Persistent):
        return "a persistent object (it belongs to the request's ZODB connection)"
    if hasattr(value, "aq_base") or hasattr(value, "aq_parent"):
        return "an acquisition-wrapped object (it belongs to the request)"
    if hasattr(value, "RESPONSE") and hasattr(value, "environ"):
        return "the request"
    return None


def refusal(fn, args, kwargs):
    """Why ``fn(*args, **kwargs)`` must not run in the sandbox, or None:
    ``fn`` is bound to, or an argument is (or contains, as an item, a key
    or a value), a persistent object, an acquisition wrapper, the request
    or a view. Containers nested too deep are refused rather than left
    unchecked."""
    owner = getattr(fn, "__self__", None)
    if owner is not None and not isinstance(owner, type):
        reason = _belongs_to_request(owner)
        if reason is None and hasattr(owner, "request") and hasattr(owner, "context"):
            reason = "a view (it holds the request and its context)"
        if reason is not None:
            return (f"fn is a method of {reason}; promises run without it: "
                    f"use a function and plain arguments")
    reason = first_refused(args + tuple(kwargs.values()), _belongs_to_request)
    if reason is None:
        return None
    if reason.startswith("arguments nest"):
        return f"{reason}; pass flatter plain data"
    return f"an argument is {reason}; pass plain data (ids, URLs, strings) instead"
