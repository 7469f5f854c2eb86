"""What a task is: a mapping of plain data, checked when it is made.

Runs on: the thread that calls ``taskqueue.add`` (pure: no Zope, no I/O).
"""

import math
import random
import time
import urllib.parse
import uuid

from ..exceptions import TaskQueueError


#: The fields of a new task (ITaskBackend's docstring says what each is).
FIELDS = ("id", "queue", "method", "path", "headers", "payload", "user",
          "created", "eta", "attempts", "max_attempts", "backoff", "dedup")

#: What a backend adds when it returns a task.
STORED_FIELDS = FIELDS + ("state", "lease_until", "consumer", "last_error",
                          "finished")

#: The methods a task may use (a task is published as a request is).
METHODS = frozenset(("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"))

#: A queue's name: what the metrics and the Control Panel show as a label.
QUEUE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")

#: Headers a task never carries from its caller: the ones that say who a
#: request is (the task's user is its own field, signed when it is
#: published) and the hop-by-hop ones.
REFUSED_HEADERS = frozenset((
    "authorization", "cookie", "host", "connection", "content-length",
    "transfer-encoding", "te", "upgrade", "keep-alive", "proxy-authorization"))


def check_queue_name(name):
    if not isinstance(name, str) or not name or len(name) > 64 or \
            not set(name) <= QUEUE_NAME_CHARS:
        raise TaskQueueError(
            f"queue: {name!r} is not a queue name (1 to 64 of a-z, 0-9, "
            f"'-', '_', '.')")
    return name


def target(url, params=None):
    """The path (with its query) a task requests, from ``url`` as
    collective.taskqueue took it: a physical path of the site
    (``/Plone/folder/@@view``) with an optional query, or an absolute
    URL of this site whose path is used; ``params`` (a mapping) is
    appended to the query."""
    if not isinstance(url, str):
        raise TaskQueueError(f"url: a path is a str, not {type(url).__name__}")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme or parts.netloc:
        # Another host would be a request to anyone: refused.
        raise TaskQueueError(
            f"url: {url!r} is an absolute URL; a task requests a path of this "
            f"site (e.g. '/Plone/folder/@@view')")
    if not parts.path.startswith("/"):
        raise TaskQueueError(f"url: {url!r} is not a path from the root "
                             f"(it must start with '/')")
    if any(ord(ch) < 32 or ch == "\x7f" for ch in url):
        raise TaskQueueError(f"url: {url!r} holds control characters")
    # Characters a URL path cannot carry as they are (a space, '#', non-
    # ASCII letters of a Zope id) are percent-encoded; '%' is kept, so an
    # already encoded path stays as given.
    path = urllib.parse.quote(parts.path, safe="/%@:+$,;=~!*'()&-._")
    if parts.fragment:
        path += urllib.parse.quote("#" + parts.fragment, safe="/%@:+$,;=~!*'()&-._")
    query = parts.query
    if params:
        if not hasattr(params, "items"):
            raise TaskQueueError(f"params: a mapping, not {type(params).__name__}")
        pairs = []
        for name, value in params.items():
            values = value if isinstance(value, (list, tuple)) else [value]
            for one in values:
                if not isinstance(one, (str, int, float, bool)) or \
                        not isinstance(name, str):
                    raise TaskQueueError(
                        f"params: {name!r}: {type(one).__name__} cannot be a "
                        f"query value (str, int, float, bool, or a list of them)")
                pairs.append((name, str(one).lower() if isinstance(one, bool) else str(one)))
        query = "&".join(q for q in (query, urllib.parse.urlencode(pairs)) if q)
    return path + ("?" + query if query else "")


def check_headers(headers):
    """``headers`` (a mapping or pairs) as a list of [name, value] str
    pairs, without the refused ones."""
    if headers is None:
        return []
    items = headers.items() if hasattr(headers, "items") else headers
    checked = []
    try:
        for name, value in items:
            if not isinstance(name, str) or not isinstance(value, str):
                raise TaskQueueError(f"headers: {name!r}: names and values are str")
            if any(ord(ch) < 32 for ch in name + value) or not name or \
                    ":" in name or " " in name:
                raise TaskQueueError(f"headers: {name!r} is not a header line")
            try:
                value.encode("latin-1")
            except UnicodeEncodeError:
                raise TaskQueueError(
                    f"headers: {name!r}: an HTTP header value is latin-1 "
                    f"(percent-encode it)") from None
            if name.lower() in REFUSED_HEADERS:
                continue
            checked.append([name, value])
    except (TypeError, ValueError) as exc:
        raise TaskQueueError(f"headers: a mapping or (name, value) pairs: {exc}") from exc
    return checked


def new_task(path, *, queue, method="GET", headers=(), payload=b"", user=None,
             eta=None, max_attempts=5, backoff=2.0, dedup=None, now=None):
    """A new task (a dict of FIELDS), every argument checked: a bad one
    raises TaskQueueError naming it."""
    now = time.time() if now is None else now
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise TaskQueueError(f"method: {method!r} is not one of {sorted(METHODS)}")
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    if not isinstance(payload, bytes):
        raise TaskQueueError(f"payload: bytes or str, not {type(payload).__name__}")
    if eta is None:
        eta = now
    if not isinstance(eta, (int, float)) or isinstance(eta, bool) or not math.isfinite(eta):
        raise TaskQueueError(f"eta: {eta!r} is not a time (seconds since the epoch)")
    if not isinstance(max_attempts, int) or isinstance(max_attempts, bool) or \
            not 1 <= max_attempts <= 100:
        raise TaskQueueError(f"attempts: {max_attempts!r} is not a number of "
                             f"attempts from 1 to 100")
    if not isinstance(backoff, (int, float)) or isinstance(backoff, bool) or \
            not 0 <= backoff <= 86400:
        raise TaskQueueError(f"backoff: {backoff!r} is not seconds from 0 to 86400")
    if dedup is not None and (not isinstance(dedup, str) or not dedup or len(dedup) > 200):
        raise TaskQueueError(f"dedup: {dedup!r} is not a key (a str of 1 to 200)")
    if user is not None and not (isinstance(user, dict) and isinstance(user.get("id"), str)):
        raise TaskQueueError(f"user: {user!r} is not a user record")
    return {
        "id": uuid.uuid4().hex, "queue": check_queue_name(queue),
        "method": method.upper(), "path": target(path),
        "headers": check_headers(headers), "payload": payload, "user": user,
        "created": float(now), "eta": float(eta), "attempts": 0,
        "max_attempts": max_attempts, "backoff": float(backoff), "dedup": dedup,
    }


def retry_delay(task, maximum=3600.0, rng=random.random):
    """Seconds until the next attempt of ``task`` after its
    ``attempts``-th failed: exponential (``backoff`` x 2^(attempts - 1),
    at most ``maximum``), with full jitter (a uniform draw below it), so
    that tasks that failed together do not come back together."""
    ceiling = min(maximum, task["backoff"] * 2 ** max(0, task["attempts"] - 1))
    return ceiling * rng()
