"""Views for operators: the metrics as JSON or Prometheus text, the
Futures tab of the ZMI Control Panel, and its dead letters' actions.

Runs on: a Zope worker thread. Managers only; a scraper may instead send
``Authorization: Bearer <metrics_token>`` when that token is configured.
"""

import hashlib
import hmac
import json
import secrets
import time

from AccessControl import getSecurityManager
from zExceptions import BadRequest, Forbidden, Unauthorized

from ..exposition import encode
from ..runtime import get_runtime, get_tasks, metrics_snapshot

#: Settings the Control Panel does not show.
SECRET_SETTINGS = ("metrics_token", "task_secret")


MANAGE = "View management screens"


def _authorized(context, request):
    token = get_runtime().settings.metrics_token
    # ZPublisher moves the Authorization header out of the environ into
    # request._auth before anything else can read it.
    header = getattr(request, "_auth", None) or request.getHeader("Authorization") or ""
    if token and header.startswith("Bearer ") and hmac.compare_digest(
            header[len("Bearer "):].strip().encode(), token.encode()):
        return True
    # Process-wide figures: a Manager of the whole site, not of a folder.
    root = context.getPhysicalRoot() if hasattr(context, "getPhysicalRoot") else context
    return bool(getSecurityManager().checkPermission(MANAGE, root))


class Metrics:
    """``@@futures-metrics``: JSON, or ``?format=prometheus`` for scraping
    (written by prometheus_client: OpenMetrics if the scraper's ``Accept``
    asks for it, else the text format)."""

    def __init__(self, context, request):
        self.context = context
        self.request = request

    def __call__(self):
        if not _authorized(self.context, self.request):
            raise Unauthorized("@@futures-metrics is for Managers or a scraper "
                               "with the metrics token")
        data = metrics_snapshot()
        response = self.request.response
        response.setHeader("Cache-Control", "no-store")
        if self.request.form.get("format") == "prometheus":
            body, content_type = encode(data, self.request.getHeader("Accept"))
            response.setHeader("Content-Type", content_type)
            return body
        response.setHeader("Content-Type", "application/json")
        return json.dumps(data, indent=1)


def chart(history, interval, series=("suspended", "running", "queued"),
          width=720, height=160):
    """An inline SVG line chart of the recent history (a point every
    ``interval`` seconds)."""
    colours = {"suspended": "#1f77b4", "running": "#2ca02c", "queued": "#d62728"}
    if len(history) < 2:
        return ('<p class="text-muted">The chart fills in as samples come '
                f'(one every {interval:g} s).</p>')
    top = max(1, max(point[name] for point in history for name in series))
    t0, t1 = history[0]["time"], history[-1]["time"]
    span = max(t1 - t0, 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height + 30}" role="img" aria-label="recent history">',
             f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fafafa" '
             f'stroke="#ccc"/>',
             f'<text x="4" y="12" font-size="11">{top}</text>',
             f'<text x="4" y="{height - 4}" font-size="11">0</text>']
    for name in series:
        points = " ".join(
            f"{(p['time'] - t0) / span * (width - 40) + 30:.1f},"
            f"{height - p[name] / top * (height - 16) - 2:.1f}" for p in history)
        parts.append(f'<polyline fill="none" stroke="{colours[name]}" '
                     f'stroke-width="2" points="{points}"/>')
    x = 30
    for name in series:
        parts.append(f'<rect x="{x}" y="{height + 10}" width="12" height="12" '
                     f'fill="{colours[name]}"/><text x="{x + 16}" y="{height + 21}" '
                     f'font-size="12">{name}</text>')
        x += 120
    parts.append(f'<text x="{width - 170}" y="{height + 21}" font-size="12">'
                 f'last {_duration(span)}</text></svg>')
    return "".join(parts)


def _duration(seconds):
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


class ControlPanel:
    """The Futures tab of the Control Panel: the state at a glance."""

    def __init__(self, context, request):
        self.context = context
        self.request = request

    def data(self):
        data = metrics_snapshot()
        # The dead letters only from a backend that answered in time.
        data["dead_letters"] = ([] if data["tasks"]["unreachable"]
                                else get_tasks().dead_letters())
        data["now"] = time.time()
        data["action_token"] = action_token(getSecurityManager().getUser().getId() or "")
        # The secrets are not shown: the scrape token, the tasks' secret.
        data["settings"] = {k: v for k, v in vars(get_runtime().settings).items()
                            if k not in SECRET_SETTINGS}
        return data

    def chart(self):
        runtime = get_runtime()
        return chart(runtime.metrics.history, runtime.settings.history_interval)


#: The key of the dead letters' actions' CSRF tokens (a new one each
#: start: a page older than the process must be reloaded).
_ACTION_KEY = secrets.token_bytes(32)


def action_token(user_id):
    """The CSRF token of the dead letters' actions for ``user_id``."""
    return hmac.new(_ACTION_KEY, f"dead-letters\0{user_id}".encode(),
                    hashlib.sha256).hexdigest()


class DeadLetterActions:
    """``manage_futures_dead_letters``: re-queue or delete a dead task.
    A POST from the Futures tab's form (its token: a page of another site
    cannot make the Manager's browser do it), Managers only (ZCML)."""

    def __init__(self, context, request):
        self.context = context
        self.request = request

    def __call__(self):
        request = self.request
        if request.get("REQUEST_METHOD") != "POST":
            raise Forbidden("the dead letters' actions take a POST from the Futures tab")
        user = getSecurityManager().getUser()
        token = request.form.get("token", "")
        if not isinstance(token, str) or not hmac.compare_digest(
                token.encode(), action_token(user.getId() or "").encode()):
            raise Forbidden("a missing or wrong token: reload the Futures tab")
        task_id, action = request.form.get("task_id"), request.form.get("action")
        if not isinstance(task_id, str) or action not in ("requeue", "delete"):
            raise BadRequest("task_id and action (requeue or delete)")
        backend = get_tasks().backend
        done = backend.requeue(task_id) if action == "requeue" else backend.delete(task_id)
        if not done:
            raise BadRequest(f"{action}: no such dead task")
        request.response.redirect(f"{self.context.absolute_url()}/manage_futures")
        return ""
