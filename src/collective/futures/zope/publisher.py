"""ZPublisher glue: where a pass starts, and how it ends when it submitted
promises.

Runs on: the Zope worker thread publishing the request.

A pass that submitted promises ends at ``IPubBeforeCommit`` (the view has
rendered, nothing is committed yet) in one of two ways:

* **suspend** (served by collective.futures' waitress channel): the
  transaction is aborted and ``SuspendRequest`` (a BaseException, so
  ZPublisher renders no error page for it) travels up through
  ``publish_module`` and the WSGI middleware to the channel, before
  ``start_response`` was ever called. The worker thread returns to
  waitress's pool; the channel runs the promises and re-queues the request.
* **wait and replay** (any other server, test browsers): the worker waits
  for the promises (they run concurrently in the side pool), then raises
  ``ReplayRequest``, a ``TransientError``, so ``publish_module``
  publishes the request again exactly as it does after a ConflictError.

Before either, the runtime's admission bounds may turn the request away
with a 503 (backpressure), past the site's error views (Plone's would
answer any exception 500) and error log: served by the package's channel,
the server writes it (``RefuseRequest``); elsewhere the pass's response
becomes the 503 and its transaction is doomed (``_answer_unavailable``).
The same ``zope.event`` hook sees the last pass's
``IPubSuccess``/``IPubFailure`` and writes the request's log line.
A pass whose response is an ``AsyncWorkerStreamIterator`` binds it there.

A pass whose promises are all fragments' (``futures.fragment``) does not
end there: its promises are held, the pass goes on through the transform
chain and commits, and at ``IPubSuccess`` its page's holes are filled
(``fragments.py``), which writes the request's log line once they are.
"""

import logging
import threading
import time

import transaction
import zope.event
from transaction.interfaces import TransientError
from zope.event import notify
from ZPublisher.interfaces import IPubBeforeCommit, IPubFailure, IPubSuccess
from ZPublisher.pubevents import PubBeforeAbort

from ..core.body import unavailable
from ..core.printable import printable
from ..exceptions import ReplayImpossibleError, TooManyPassesError
from ..interfaces import (
    STATE_ATTRIBUTE, STATE_KEY, SUSPEND_KEY, RefuseRequest, SuspendRequest)
from ..runtime import get_runtime
from ..fragments import fill_page
from ..stream import AsyncWorkerStreamIterator
from .replay import make_body_replayable


logger = logging.getLogger("collective.futures")
#: One line per request that used futures (its own logger, to route it).
request_log = logging.getLogger("collective.futures.requests")


class ReplayRequest(TransientError):
    """Control flow, not an error (wait mode): the promises of this pass
    have run while the worker waited; ``publish_module`` retries the
    request, as after a ConflictError, to render the next pass."""


_install_lock = threading.Lock()


def _install_end_pass():
    # Why zope.event and not a ZCML subscriber: zope.component calls
    # IPubBeforeCommit subscribers in registration order, and Plone's
    # plone.transformchain (Diazo, plone.protect) registers first. A pass
    # that submitted promises is thrown away; ending it before them spares
    # the theme transform. zope.event.subscribers is the documented hook
    # list, and zope.component's dispatch is one entry. Locked: two first
    # requests must not insert it twice.
    with _install_lock:
        if _end_pass not in zope.event.subscribers:
            zope.event.subscribers.insert(0, _end_pass)


def pass_started(event):
    """IPubStart subscriber: a pass (or a retry of one) begins."""
    if _end_pass not in zope.event.subscribers:
        _install_end_pass()
    request = event.request
    if not request.environ.get(SUSPEND_KEY):
        make_body_replayable(request)
    # What restricted code can read of the environ must not carry the
    # state (it could read every result, or replace the state): from here
    # on it lives on the request. request.environ is a copy of _orig_env
    # (unless the request was made with clean=1, as some test tools do).
    original = getattr(request, "_orig_env", None) or {}
    state = original.get(STATE_KEY)
    if request.environ is not original:
        request.environ.pop(STATE_KEY, None)
    if state is not None:
        setattr(request, STATE_ATTRIBUTE, state)
        state.begin_pass()


def _end_pass(event):
    if not IPubBeforeCommit.providedBy(event):
        if IPubSuccess.providedBy(event):
            state = getattr(event.request, STATE_ATTRIBUTE, None)
            if state is not None and state.held:
                # A page whose promises were all fragments, committed and
                # themed: its holes are filled now (fragments.py), and it
                # writes the request's log line when they are.
                fill_page(event.request, state)
                return
        if IPubSuccess.providedBy(event) or (
                IPubFailure.providedBy(event) and not event.retry):
            _request_done(event)
        return
    request = event.request
    state = getattr(request, STATE_ATTRIBUTE, None)
    if state is not None and state.only_fragments():
        # Every promise of this pass is a fragment's: this pass is the only
        # one. It goes on through the transforms and commits; its holes are
        # filled at IPubSuccess.
        state.hold_fragments()
    if state is None or not state.pending:
        body = getattr(request.response, "body", None)
        if isinstance(body, AsyncWorkerStreamIterator):
            body.bind(request.response)
        return
    runtime = get_runtime()
    settings = runtime.settings
    if state.passes >= settings.max_passes:
        raise TooManyPassesError(
            f"pass {state.passes} submitted promises "
            f"({', '.join(sorted(state.pending))}) but max_passes is "
            f"{settings.max_passes}")
    suspending = settings.suspend and bool(request.environ.get(SUSPEND_KEY))
    refusal, may_wait = runtime.admission(state.pending, suspending)
    if refusal is not None:
        if settings.overload == "wait" and may_wait:
            suspending = False  # run this request's promises in its worker
        else:
            runtime.metrics.request_rejected()
            logger.warning("503 for %s %s: %s",
                           printable(request.get("REQUEST_METHOD")),
                           printable(request.get("PATH_INFO")), refusal)
            if request.environ.get(SUSPEND_KEY):
                _refuse(request, refusal)
            _answer_unavailable(request, refusal, settings.retry_after)
            return
    if suspending:
        _log_mode_once("suspend", request)
        _suspend(request, state)
    else:
        _log_mode_once("wait", request)
        _wait_and_replay(request, state, runtime)


#: plone.transformchain's off switch (plone.transformchain.interfaces):
#: no theme, CSRF rewrite or caching rule for the package's 503.
_NO_TRANSFORMS = "plone.transformchain.disable"


def _answer_unavailable(request, reason, retry_after):
    """Wait mode's 503 (any server but the package's own): the pass's
    response becomes the package's one 503 (core.body.unavailable) and its
    transaction is doomed, so ZPublisher aborts it and sends the response
    as a success. Not an exception: Plone's error views render every
    exception they see, HTTPServiceUnavailable included, as a 500."""
    prepared = unavailable(reason, retry_after)
    response = request.response
    # What pass 1 set (headers, cookies) belongs to a page nobody gets,
    # written by a transaction that is not committed: the 503 the server
    # writes in suspend mode carries none of it, neither does this one.
    response.headers = {}
    response.accumulated_headers = []
    response.cookies = {}
    response.setStatus(503, lock=True)
    for name, value in prepared.headers:
        if name.lower() != "content-length":  # setBody counts it
            response.setHeader(name, value)
    response.setBody(prepared.message + "\n", lock=True)
    request.environ[_NO_TRANSFORMS] = True
    transaction.doom()


def _request_done(event):
    """The last pass of a request that used futures is over: one log line,
    and the metrics."""
    request = event.request
    state = getattr(request, STATE_ATTRIBUTE, None)
    if state is None or not state.rounds:
        return
    if IPubSuccess.providedBy(event):
        outcome = str(request.response.getStatus())
    else:
        outcome = event.exc_info[0].__name__
    get_runtime().metrics.request_done(state.passes, outcome)
    mixed = ""
    if state.mixed:
        # Fragments that could not fill holes: the page had ordinary
        # promises too, so it was rendered again (the operator's cue).
        mixed = (f"; fragments rendered in a later pass, as the page mixes "
                 f"them with promises: {', '.join(sorted(state.mixed))}")
    # The path and the keys come from the client: escaped, one line.
    request_log.info(
        "%s %s: %s after %d passes in %.3fs; promises: %s%s",
        printable(request.get("REQUEST_METHOD")),
        printable(request.get("PATH_INFO")), outcome,
        state.passes, time.monotonic() - state.started,
        printable(state.summary(), limit=4000), printable(mixed, limit=2000))


def _suspend(request, state):
    suspension = SuspendRequest(state)
    exc_info = (SuspendRequest, suspension, None)
    # Tell subscribers that this attempt's transaction is aborted and that
    # the request will be published again, as ZPublisher does before it
    # retries one (it never sees a BaseException, so it tells no one).
    # Not IPubFailure: a suspension is no failure, and error logs
    # (Products.SiteErrorLog, Plone's Site Setup > Errors) record every
    # IPubFailure whose exception is not a TransientError.
    notify(PubBeforeAbort(request, exc_info, True))
    transaction.abort()
    try:
        raise suspension
    finally:
        # Else this frame (in the traceback) holds the exception holding
        # the traceback: a cycle, with pass 1's whole request in it, that
        # only the garbage collector frees (issue 11: thousands of them).
        del suspension, exc_info


def _refuse(request, reason):
    """Served by the package's server: abort, and let the server answer
    the 503 (RefuseRequest), past the site's error views, which would
    render the Zope exception with their own status (Plone: a 500)."""
    # No IPubBeforeAbort (retry=False): its one subscriber in Plone,
    # plone.transformchain, would theme an error page nobody sends.
    refusal = RefuseRequest(reason)
    transaction.abort()
    try:
        raise refusal
    finally:
        del refusal  # no cycle through this frame (see _suspend)


def _no_delay():
    """Replaces HTTPRequest.delay_retry for a replay: that random sleep is
    meant to spread conflicting writers apart, and a replay is no conflict."""


def _wait_and_replay(request, state, runtime):
    if not request.supports_retry():
        raise ReplayImpossibleError(
            f"cannot publish pass {state.passes + 1}: this server cannot "
            f"suspend requests and Zope's retry budget for this request is "
            f"used up (request.retry_max_count="
            f"{getattr(request, 'retry_max_count', '?')}); set "
            f"max-conflict-retries >= max_passes - 1 in zope.conf")
    round_ = runtime.start_round(state.take_pending())
    if round_.refusal is not None:
        # A full executor refused a promise (another request took the room
        # the admission saw): a 503, as the admission's would have been.
        runtime.metrics.request_rejected()
        logger.warning("503 for %s %s: %s", printable(request.get("REQUEST_METHOD")),
                       printable(request.get("PATH_INFO")), round_.refusal)
        _answer_unavailable(request, round_.refusal, runtime.settings.retry_after)
        return
    # Why wait here: nothing else can publish the next pass under this
    # server. The promises run concurrently in the side pool meanwhile; the
    # round's own deadline settles it in `timeout`, the grace covers a
    # stalled deadline thread.
    if not round_.wait(runtime.settings.timeout + 5.0):
        round_.expire()
    state.record(round_.outcomes)
    request.delay_retry = _no_delay
    raise ReplayRequest(f"pass {state.passes} renders the results")


_logged_modes = set()
_logged_lock = threading.Lock()


def _log_mode_once(mode, request):
    with _logged_lock:
        if mode in _logged_modes:
            return
        _logged_modes.add(mode)
    server = request.environ.get("SERVER_SOFTWARE", "an unknown server")
    if mode == "suspend":
        logger.info(
            "futures are served in suspend mode: the worker thread is freed "
            "while promises run (%s)", server)
    else:
        logger.info(
            "futures are served in wait mode: promises run concurrently while "
            "the worker thread waits (%s cannot suspend requests, or "
            "suspend is off)", server)
