"""Background tasks: ``from collective.futures import taskqueue``.

``taskqueue.add(url, ...)`` queues a request to ``url`` (a path of the
site: a view, a script) when the current transaction commits; a
consuming instance publishes it later as it publishes a visitor's
request (ZODB, security, the site, its virtual hosting). The arguments
of collective.taskqueue's ``add`` mean what they meant there, so code
written for it runs unchanged; the keyword-only ones are new.

Runs on: the thread that calls it (a Zope worker, a script).
"""

import logging
import time
import urllib.parse

from zope.globalrequest import getRequest

from .exceptions import TaskQueueError
from .runtime import get_tasks
from .tasks.model import new_task, target


__all__ = ["add", "status", "ANONYMOUS"]

logger = logging.getLogger("collective.futures.tasks")

_marker = object()


class _Anonymous:
    def __repr__(self):
        return "taskqueue.ANONYMOUS"


#: ``add(..., run_as=ANONYMOUS)``: the task runs as Anonymous, whoever
#: queues it.
ANONYMOUS = _Anonymous()

#: The queuing request's headers a task takes over: what says how to
#: answer (its language, the formats it accepts). Not the others: they
#: may say who the request is (cookies, Authorization, a front proxy's
#: X-Remote-User), ask for a part of an answer (Range, If-None-Match) or
#: be a task's own (a task that queues another).
COPIED_HEADERS = ("Accept", "Accept-Language")

#: The PAS plugin that authenticates a task's user
#: (collective.futures.plone.taskuser.PLUGIN_ID).
TASK_USER_PLUGIN = "collective_futures_tasks"


def add(url=None, method="GET", params=None, headers=None, payload=_marker,
        queue=_marker, *, delay=None, eta=None, attempts=None, backoff=None,
        dedup=None, run_as=None):
    """Queue a request to ``url`` when the current transaction commits;
    return the task's id (a str).

    ``url``: a path from the root (``/Plone/folder/@@convert``, with a
    query if wanted); ``params``: a mapping appended to the query;
    ``method``: GET, POST, PUT, PATCH, DELETE or HEAD; ``headers``: a
    mapping added to the request's (of the current request's, only
    COPIED_HEADERS are taken over);
    ``payload``: the body (default: the current request's); ``queue``:
    one of ``task_queues`` (default: the first).

    Keyword-only: ``delay`` (seconds) or ``eta`` (seconds since the
    epoch): not before then; ``attempts``: how many times it may run
    before it goes to the dead letters (default ``task_attempts``);
    ``backoff``: seconds before its first retry (default
    ``task_backoff``), doubling with each further one; ``dedup``: a key;
    while a task of the same queue with this key waits or runs, the
    existing task's id is returned and nothing is added; ``run_as``: who
    the task runs as, named by trusted code instead of the current user:
    a user id of the current site's user folder (the nearest one up from
    the site), a user object (of any user folder), or ANONYMOUS.

    A bad argument raises TaskQueueError naming it. If the backend cannot
    take the task, the transaction fails at its commit
    (TaskQueueUnavailableError): nothing is half-done.
    """
    service = get_tasks()
    settings = service.settings
    if url is None:
        raise TaskQueueError("url: the path of the view or script to request")
    queue = service.default_queue if queue is _marker else queue
    if not isinstance(queue, str):
        raise TaskQueueError(f"queue: a queue's name (str), not {type(queue).__name__}")
    service.check_queue(queue)
    if delay is not None and eta is not None:
        raise TaskQueueError("delay, eta: one or the other")
    now = time.time()
    if delay is not None:
        if not isinstance(delay, (int, float)) or isinstance(delay, bool) or delay < 0:
            raise TaskQueueError(f"delay: {delay!r} is not a number of seconds")
        eta = now + delay
    request = getRequest()
    physical = target(url, params)
    path = _virtual_hosted(physical, request)
    copied = _copied_headers(request, payload is _marker)
    if headers is not None:
        if not hasattr(headers, "items"):
            raise TaskQueueError(f"headers: a mapping, not {type(headers).__name__}")
        copied.update(headers)
    if payload is _marker:
        payload = _body(request)
    task = new_task(
        path, queue=queue, method=method, headers=copied, payload=payload,
        user=_user(physical) if run_as is None else _named_user(run_as, physical),
        eta=eta, now=now,
        max_attempts=settings.task_attempts if attempts is None else attempts,
        backoff=settings.task_backoff if backoff is None else backoff, dedup=dedup)
    if dedup is not None:
        # A task with this key that waits or runs: its id, nothing added.
        # (Two transactions adding the same key at once both get here;
        # the backend then keeps the first to commit, ITaskBackend.prepare.)
        existing = service.backend.find(queue, dedup)
        if existing is not None:
            return existing
    service.queue(task)
    return task["id"]


def status(task_id):
    """What is known of the task ``task_id``: a mapping with ``state``
    (``queued``, ``running``, ``done``, ``dead``; ``prepared`` while the
    transaction that queued it commits), ``attempts``, ``max_attempts``,
    ``last_error``, ``created``, ``eta``, ``finished``, ``queue``,
    ``method`` and ``path``; or None (unknown, or finished longer ago
    than ``task_keep_done``)."""
    if not isinstance(task_id, str):
        raise TaskQueueError(f"task_id: a str, not {type(task_id).__name__}")
    stored = get_tasks().backend.status(task_id)
    if stored is None:
        return None
    return {name: stored[name] for name in (
        "id", "queue", "method", "path", "state", "attempts", "max_attempts",
        "last_error", "created", "eta", "finished")}


def _copied_headers(request, with_content):
    """The current request's headers a task takes over (COPIED_HEADERS,
    and its Content-Type with its body)."""
    copied = {}
    environ = getattr(request, "_orig_env", None) or getattr(request, "environ", None) or {}
    for name in COPIED_HEADERS + (("Content-Type",) if with_content else ()):
        key = name.upper().replace("-", "_")
        value = environ.get(key if key == "CONTENT_TYPE" else "HTTP_" + key)
        if isinstance(value, str) and value:
            copied[name] = value
    return copied


def _body(request):
    """The current request's body (as collective.taskqueue took it)."""
    stdin = getattr(request, "stdin", None)
    if stdin is None or not hasattr(stdin, "seek"):
        return b""
    try:
        position = stdin.tell()
        stdin.seek(0)
        body = stdin.read()
        stdin.seek(position)
    except (OSError, ValueError):
        return b""
    return body if isinstance(body, bytes) else b""


def _user(path):
    """The current user, as a task to ``path`` (physical) records it
    (None: anonymous)."""
    from AccessControl.SecurityManagement import getSecurityManager
    user = getSecurityManager().getUser()
    recorded = _recorded(user)
    if recorded is not None:
        problem = _why_not(user, recorded, path)
        if problem:
            logger.warning("a task queued by %r of %s will run as Anonymous: %s "
                           "(see run_as)", recorded["id"],
                           recorded["folder"] or "a user folder", problem)
    return recorded


def _recorded(user):
    from Acquisition import aq_inner, aq_parent
    user_id = user.getId() if user is not None else None
    if not user_id:
        return None
    folder = aq_parent(aq_inner(user))
    path = "/".join(folder.getPhysicalPath()) if hasattr(folder, "getPhysicalPath") else ""
    return {"id": user_id, "folder": path}


def _why_not(user, recorded, path):
    """Why the task to ``path`` could not run as ``user`` (recorded as
    ``recorded``), or None: it can if its user folder is a PAS with the
    task-user plugin active, still finds the user by id, and is the user
    folder of the task's path (its container is one of the path's)."""
    from Acquisition import aq_inner, aq_parent
    folder = aq_parent(aq_inner(user))
    if not recorded["folder"] or not hasattr(folder, "getUserById"):
        return "it is not a user of a user folder"
    if folder.getUserById(recorded["id"]) is None:
        return f"{recorded['folder']} has no user {recorded['id']!r}"
    if not _authenticates_tasks(folder):
        return (f"{recorded['folder']} cannot authenticate a task's user (a "
                f"PAS user folder with the {TASK_USER_PLUGIN!r} plugin active "
                f"can: a Plone site's, with the add-on installed)")
    container = recorded["folder"].rsplit("/", 1)[0]
    physical = path.split("?", 1)[0]
    if physical != container and not physical.startswith(container + "/"):
        return (f"{recorded['folder']} is not the user folder of {physical} "
                f"(its site's is)")
    return None


def _authenticates_tasks(folder):
    """True if ``folder`` is a PAS whose task-user plugin is active."""
    from Acquisition import aq_base
    if TASK_USER_PLUGIN not in getattr(aq_base(folder), "objectIds", lambda: ())():
        return False
    registry = getattr(aq_base(folder), "plugins", None)
    if registry is None:
        return False
    try:
        from Products.PluggableAuthService.interfaces.plugins import (
            IAuthenticationPlugin, IExtractionPlugin)
    except ImportError:  # no PAS installed: no PAS folder either
        return False
    return all(TASK_USER_PLUGIN in folder.plugins.listPluginIds(interface)
               for interface in (IExtractionPlugin, IAuthenticationPlugin))


def _named_user(run_as, path):
    """The user ``run_as`` names (see ``add``), as a task to ``path``
    (physical) records it; TaskQueueError if the task could not run as
    them."""
    if run_as is ANONYMOUS:
        return None
    if isinstance(run_as, str):
        from zope.component.hooks import getSite
        site = getSite()
        if site is None:  # plain Zope: the root
            request = getRequest()
            parents = request.get("PARENTS") if request is not None else None
            site = parents[-1] if parents else None
        folder = getattr(site, "acl_users", None) if site is not None else None
        if folder is None or not hasattr(folder, "getUserById"):
            raise TaskQueueError(f"run_as: no user folder to find {run_as!r} in "
                                 f"(no site); pass a user object")
        user = folder.getUserById(run_as)
        if user is None:
            where = "/".join(folder.getPhysicalPath())
            raise TaskQueueError(f"run_as: no user {run_as!r} in {where}")
        # The user folder that has them (acquired: the nearest one).
        if not hasattr(user, "aq_parent"):
            user = user.__of__(folder)
    elif callable(getattr(run_as, "getUser", None)):
        # A member (plone.api.user.get, portal_membership): its user.
        user = run_as.getUser()
    elif hasattr(run_as, "getId") and hasattr(run_as, "aq_parent"):
        user = run_as
    else:
        raise TaskQueueError(f"run_as: a user id (str), a user object or ANONYMOUS, "
                             f"not {type(run_as).__name__}")
    recorded = _recorded(user)
    if recorded is None:
        raise TaskQueueError(f"run_as: {run_as!r} is not a user of a user folder")
    problem = _why_not(user, recorded, path)
    if problem:
        # The task would run as Anonymous, which is not what was asked.
        raise TaskQueueError(f"run_as: {recorded['id']!r}: {problem}")
    return recorded


def _virtual_hosted(path, request):
    """``path`` (physical) as the queuing request's virtual host sees it:
    wrapped for the VirtualHostMonster (``/VirtualHostBase/...``), so that
    the task's URLs (``absolute_url``, links in an email) are the public
    ones. Outside a request, or outside the virtual root, as given."""
    if request is None or path.startswith("/VirtualHostBase/"):
        return path
    server = urllib.parse.urlsplit(request.get("SERVER_URL") or "")
    try:
        port = server.port or (443 if server.scheme == "https" else 80)
    except ValueError:  # a Host header with a port that is no port
        return path
    if server.scheme not in ("http", "https") or not server.hostname:
        return path
    host = f"[{server.hostname}]" if ":" in server.hostname else server.hostname
    vroot = request.get("VirtualRootPhysicalPath") or ("",)
    root = "/".join(vroot)  # "" for the application root
    bare, _, query = path.partition("?")
    if root and not (bare == root or bare.startswith(root + "/")):
        return path
    rest = bare[len(root):]
    virtual = "".join(f"/_vh_{urllib.parse.quote(part, safe='')}"
                      for part in (getattr(request, "_script", None) or ()))
    wrapped = (f"/VirtualHostBase/{server.scheme}/{host}:{port}{root}"
               f"/VirtualHostRoot{virtual}{rest or '/'}")
    return f"{wrapped}?{query}" if query else wrapped
