"""The futures API, called by views and templates while a request is
published (on a Zope worker thread).

Same names and meaning as collective.futures 0.9. A *promise* is a function
submitted under a key; its *future* is the result the next pass reads with
``result(key)``.
"""

import functools
import inspect

from zope.globalrequest import getRequest

from .core.fragments import Fragment, Markup, new_token
from .core.promise import Promise, PromiseOptions, promise
from .core.shared import identity
from .core.state import RequestFutures
from .exceptions import (
    FutureAlreadyResolvedError,
    FutureNotResolvedError,
    FutureNotSubmittedError,
    NoRequestError,
)
from .executors.processes import PickledCall
from .interfaces import STATE_ATTRIBUTE, STATE_KEY
from .runtime import get_runtime
from . import fragments as _fragments
from . import sandbox


_marker = object()


def futures_for(request):
    """The :class:`IRequestFutures` of ``request``, created on first use.

    Kept where restricted code cannot reach it: on the request under a
    name that starts with an underscore, and in the environ the request
    was made from (``_orig_env``), which ``request.retry()`` (ConflictError,
    replay) uses for the next attempt. Not in ``request.environ``, which
    through-the-web code can read and change.
    """
    state = getattr(request, STATE_ATTRIBUTE, None)
    if state is None:
        original = getattr(request, "_orig_env", None)
        if original is not None:
            state = original.get(STATE_KEY)
        if state is None:
            state = RequestFutures()
            if original is not None:
                original[STATE_KEY] = state
        setattr(request, STATE_ATTRIBUTE, state)
    return state


def make_promise(func, key, fn, args, kwargs):
    """Validate a call into a :class:`Promise` (``fn`` may carry options
    from :func:`promise`); errors name ``func`` and the argument.

    A shared promise gets its identity here (``shared_key``): what it
    computes (function, arguments, executor), never ``key``, unless
    ``fn``'s options carry one (a named promise's)."""
    if not callable(fn):
        raise TypeError(
            f"collective.futures.{func}(): fn must be callable, not "
            f"{type(fn).__name__} ({fn!r:.60})")
    options = fn if isinstance(fn, PromiseOptions) else PromiseOptions(fn)
    target = options.fn
    coroutine = inspect.iscoroutinefunction(target)
    executor = options.executor or ("asyncio" if coroutine else "threads")
    names = get_runtime().settings.executor_names
    if executor not in names:
        raise ValueError(
            f"collective.futures.{func}(): unknown executor {executor!r}; "
            f"configured: {', '.join(names)}")
    if coroutine and executor in ("threads", "processes"):
        raise TypeError(
            f"collective.futures.{func}(): {target.__qualname__} is an async "
            f"function: run it on the asyncio executor")
    reason = sandbox.refusal(target, args, kwargs)
    if reason is not None:
        raise TypeError(f"collective.futures.{func}(): {reason}")
    shared_key = options.shared_key
    if options.shared and shared_key is None:
        try:
            shared_key = identity(target, args, kwargs, executor)
        except TypeError as exc:
            raise TypeError(f"collective.futures.{func}(): {exc}") from None
    pickled = None
    if executor == "processes":
        try:  # pickled once, here: the bytes go to the worker process
            pickled = PickledCall(target, args, kwargs, name=key)
        except TypeError as exc:
            raise TypeError(f"collective.futures.{func}(): {exc}") from None
    return Promise(key, target, args, kwargs, executor, options.shared,
                   options.ttl, shared_key, pickled, options.on_error)


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


def _not_a_fragment(func, state, key):
    if key in state.fragments:
        raise ValueError(
            f"collective.futures.{func}(): {key!r} was submitted as a "
            f"fragment in this pass; a key is a fragment or a promise")


def _resolved(state, key, promise_):
    """The outcome for ``key``: this request's, or for a shared
    ``promise_`` a result kept for what it computes (its identity, never
    ``key``), which then counts as this request's outcome for ``key``."""
    outcome = state.resolved.get(key)
    if outcome is None and promise_.shared:
        outcome = get_runtime().shared.cached(promise_.shared_key)
        if outcome is not None:
            state.resolved[key] = outcome
    return outcome


def result(key, default=_marker):
    """Return the result of the promise submitted under ``key``.

    If the promise raised, that exception is raised here (a promise past its
    timeout raises :class:`FutureTimeoutError`). Only this request's outcomes
    count: a key does not name a kept shared result (``resultOrSubmit``,
    which knows the computation, finds those). Without a result: return
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
    promise_ = make_promise("submit", key, fn, args, kwargs)
    state = _state("submit")
    _not_a_fragment("submit", state, key)
    if key in state.resolved:
        raise FutureAlreadyResolvedError(
            f"future {key!r} already has a result; clear({key!r}) before "
            f"submitting it again")
    state.pending[key] = promise_
    return True


def resultOrSubmit(key, placeholder, fn, /, *args, **kwargs):
    """Return the result for ``key``, or submit ``fn(*args, **kwargs)`` for it
    and return ``placeholder``.

    The placeholder is what this (discarded) pass renders; it never reaches
    the client. A promise that raised makes this raise, like ``result``.
    Calling it again for a key already submitted in this pass returns the
    placeholder (0.9 raised FutureNotResolvedError). A shared promise whose
    computation (function, arguments, executor) has a kept result returns
    it at once.
    """
    _check_key("resultOrSubmit", key)
    promise_ = make_promise("resultOrSubmit", key, fn, args, kwargs)
    state = _state("resultOrSubmit")
    _not_a_fragment("resultOrSubmit", state, key)
    outcome = _resolved(state, key, promise_)
    if outcome is not None:
        return outcome.unwrap()
    if key not in state.pending:
        state.pending[key] = promise_
    return placeholder


def fragment(key, render, fn, /, *args, **kwargs):
    """Submit ``fn(*args, **kwargs)`` for ``key`` as a *fragment*: a part
    of the page that ``render(result)`` turns into HTML. Returns the HTML
    to put in its place: a placeholder (an empty element, :class:`Markup`)
    until the result is in.

    When every promise of a pass is a fragment, that pass is the only one:
    the page is finished (theme and transforms included) and committed with
    its placeholders, the worker is freed, and each hole is filled with
    ``render(result)`` once that result arrives. ``render`` runs outside the
    worker, like ``fn``: no ZODB, no request, no user. What it returns is
    text and is escaped, unless it is :class:`Markup` (or has ``__html__``).
    A failure or timeout renders ``fn``'s ``on_error`` value (see
    :func:`promise`) if it has one, else the site's ``fragment_fallback``;
    a renderer that raises gives ``fragment_fallback`` too.

    A pass that also submits ordinary promises is rendered again, as
    always; there the fragment's result is rendered in its place.
    """
    _check_key("fragment", key)
    if not callable(render):
        raise TypeError(
            f"collective.futures.fragment(): render must be callable, not "
            f"{type(render).__name__} ({render!r:.60})")
    reason = _renderer_refusal(render)
    if reason is not None:
        raise TypeError(f"collective.futures.fragment(): render: {reason}")
    promise_ = make_promise("fragment", key, fn, args, kwargs)
    state = _state("fragment")
    if key in state.pending and key not in state.fragments:
        raise ValueError(
            f"collective.futures.fragment(): {key!r} was submitted as a "
            f"promise in this pass; a key is a fragment or a promise")
    outcome = _resolved(state, key, promise_)
    if outcome is not None:
        # Rendered again (a page that mixes fragments and promises): the
        # result is here, the hole is filled now, still outside the worker.
        return Markup(_fragments.render_now(
            Fragment(key, render, ""), outcome))
    known = state.fragments.get(key)
    if known is not None and key in state.pending:
        state.pending[key] = promise_
        state.fragments[key] = Fragment(key, render, known.token)
        return known.placeholder
    fragment_ = Fragment(key, render, new_token())
    state.fragments[key] = fragment_
    state.pending[key] = promise_
    return fragment_.placeholder


def _renderer_refusal(render):
    """Why ``render`` must not run outside the worker, or None: it is a
    method of (or closes over, or is a partial of) what belongs to the
    request, a view included."""
    reason = sandbox.refusal(render, (), {})
    if reason is not None:
        return reason.replace("fn is", "it is", 1)
    captured = []
    target = render
    while isinstance(target, functools.partial):
        captured += list(target.args) + list(target.keywords.values())
        target = target.func
    for cell in getattr(target, "__closure__", None) or ():
        try:
            captured.append(cell.cell_contents)
        except ValueError:  # an empty cell
            continue
    for value in captured:
        if hasattr(value, "request") and hasattr(value, "context"):
            return ("it closes over a view (it holds the request and its "
                    "context): use a module-level function of plain data")
    reason = sandbox.refusal(target, tuple(captured), {})
    if reason is not None:
        return reason.replace("an argument is", "it closes over", 1)
    return None


def progressive(enabled=True):
    """Ask for (or, with False, refuse) progressive delivery of this page:
    sent at once with its holes, each fragment following in the same
    response as it resolves. Overrides the site's
    ``fragments_progressive``; applies when every promise of the pass is a
    fragment and the response is an HTML page."""
    if not isinstance(enabled, bool):
        raise TypeError(
            f"collective.futures.progressive(): enabled must be True or "
            f"False, not {type(enabled).__name__}")
    _state("progressive").progressive = enabled
    return enabled


def cancel(key):
    """Withdraw the promise submitted for ``key`` in this pass.

    Returns True if there was one. A pass that withdraws all its promises is
    published as it is, with no further pass (a withdrawn fragment's
    placeholder stays empty).
    """
    _check_key("cancel", key)
    state = _state("cancel")
    state.fragments.pop(key, None)
    return state.pending.pop(key, None) is not None


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


def submitMultiprocess(key, fn, /, *args, **kwargs):
    """``submit`` on the ``processes`` executor (the 0.9 name). ``fn`` and
    its arguments must be picklable; that is checked here."""
    return submit(key, promise(fn, executor="processes"), *args, **kwargs)


def resultOrSubmitMultiprocess(key, placeholder, fn, /, *args, **kwargs):
    """``resultOrSubmit`` on the ``processes`` executor (the 0.9 name)."""
    return resultOrSubmit(key, placeholder, promise(fn, executor="processes"),
                          *args, **kwargs)


#: snake_case alias of :func:`resultOrSubmit` (the canonical spelling).
result_or_submit = resultOrSubmit
