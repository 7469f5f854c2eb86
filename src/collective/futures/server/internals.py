"""Every waitress internal collective.futures relies on, in one place.

waitress documents ``channel_class`` and ``task_class`` as extension points
but not the behaviour below; it is the same from waitress 2.0.0 to 3.0.x.
:func:`check` verifies what can be verified at startup, and
``tests/test_waitress_glue.py`` (and the functional tests) exercise the
behaviour, so a waitress
release that moves any of it fails loudly instead of hanging requests.

1. ``waitress.server.BaseWSGIServer.channel_class`` is read at accept time,
   so setting it before the server accepts changes every new connection.
2. ``HTTPChannel.task_class`` builds the task for a parsed request;
   ``WSGITask.get_environment()`` builds (and caches on ``task.environ``) the
   WSGI environ, from the parsed request, for each task.
3. ``HTTPChannel.service()`` runs ``requests[0]``; only after the task
   returns or raises an ``Exception`` does it pop and ``close()`` that
   request. A BaseException raised by the application leaves
   ``requests[0]`` in place, unclosed, with nothing written.
4. While ``requests`` is not empty, ``readable()`` is False (with
   ``channel_request_lookahead = 0``); ``handle_read()`` sets
   ``connected = False`` when the client hangs up; ``service()`` answers a
   request whose channel is no longer connected by closing it.
5. ``server.add_task(channel)`` queues ``channel.service()`` for a worker
   thread and may be called from any thread; ``server.pull_trigger()``
   wakes the main loop.
6. The parsed request's body stream (``get_body_stream()``) is seekable and
   stays open until the request is closed.
7. A task keeps what ``start_response`` gave it in ``status``,
   ``response_headers`` and ``content_length``, and sends them on its first
   ``write()``; until then they may be replaced. ``write()`` and
   ``finish()`` (the terminating chunk) may be called from any thread, one
   at a time; ``close_on_finish`` tells ``service()`` to close the
   connection after the response.
8. ``channel.write_soon()`` (behind ``task.write``) raises
   ``ClientDisconnected`` once the client is gone, and blocks only while
   ``total_outbufs_len`` is past ``adj.outbuf_high_watermark`` (a writer
   that writes only below the mark never blocks).
9. ``WSGITask.execute()`` iterates the application's result itself (a
   ``for`` loop in its own frame), after ``start_response`` and before any
   write, and closes it in a ``finally``; a BaseException raised by the first
   ``__next__`` leaves the task unfinished and ``requests[0]`` held.
10. ``BaseWSGIServer.run()`` hands ``adj.asyncore_use_poll`` to the main
    loop, which then uses ``poll()`` instead of ``select()``; the defaults
    of ``waitress.adjustments.Adjustments`` are class attributes, so one
    set before the server is created is that server's default (an option
    given in zope.ini still wins).
11. ``HTTPChannel.handle_write()`` runs on the main loop when the socket
    can take bytes and ``writable()`` said so; it sends nothing while
    ``requests`` is not empty unless ``total_outbufs_len >= adj.send_bytes``
    (1 by default) and it gets ``outbuf_lock`` without blocking.
    ``write_soon()`` appends, and (from waitress 2.1) sends, with
    ``outbuf_lock`` held, pulling the trigger inside it when bytes are
    left; ``service()`` pulls the trigger after it pops the request; a
    writer waiting for room (``total_outbufs_len`` above
    ``outbuf_high_watermark``) waits on ``outbuf_lock``, released.
12. ``BaseWSGIServer.run()`` (and ``MultiSocketServer.run()``) runs the main
    loop as ``self.asyncore.loop(timeout=, map=, use_poll=)``, reading
    ``asyncore`` from the class (waitress's "test shim"), and dispatches
    events with ``wasyncore.readwrite(obj, flags)``; a channel's
    ``readable()`` and ``writable()`` are what the loop must watch, its
    ``_fileno`` its key in the map. A dispatcher enters the map only in
    ``wasyncore.dispatcher.add_channel()`` and leaves it only in
    ``del_channel()`` (which ``close()`` calls), each called on the
    dispatcher itself, so a channel class that extends them sees every
    change of its own entry.
"""

import waitress
import waitress.adjustments
import waitress.channel
import waitress.server
import waitress.task
import waitress.wasyncore


try:  # Python 3.8+: the installed distribution's version
    from importlib.metadata import version as _dist_version
    WAITRESS_VERSION = _dist_version("waitress")
except Exception:  # pragma: no cover - metadata missing in odd installs
    WAITRESS_VERSION = "unknown"

SUPPORTED = ((2, 0), (4, 0))

HTTPChannel = waitress.channel.HTTPChannel
ClientDisconnected = waitress.channel.ClientDisconnected
WSGITask = waitress.task.WSGITask
BaseWSGIServer = waitress.server.BaseWSGIServer
#: The server classes whose main loop the package replaces (point 12).
SERVER_CLASSES = (waitress.server.BaseWSGIServer,
                  waitress.server.MultiSocketServer)
wasyncore = waitress.wasyncore
Adjustments = waitress.adjustments.Adjustments

_REQUIRED = (
    (HTTPChannel, ("service", "readable", "writable", "handle_read",
                   "handle_write", "handle_close", "write_soon", "task_class",
                   "received")),
    (WSGITask, ("get_environment", "execute", "service", "write", "finish",
                "build_response_header")),
    (BaseWSGIServer, ("channel_class", "add_task", "pull_trigger", "run",
                      "asyncore")),
    (waitress.server.MultiSocketServer, ("asyncore", "run")),
    (waitress.wasyncore, ("loop", "readwrite", "socket_map")),
    (waitress.wasyncore.dispatcher, ("add_channel", "del_channel")),
    (Adjustments, ("asyncore_use_poll",)),
)


def _version_tuple(text):
    parts = []
    for part in text.split(".")[:2]:
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def check():
    """Return a list of problems (empty when this waitress is usable)."""
    problems = []
    if WAITRESS_VERSION != "unknown":
        found = _version_tuple(WAITRESS_VERSION)
        low, high = SUPPORTED
        if not low <= found < high:
            problems.append(
                f"waitress {WAITRESS_VERSION} is outside the supported range "
                f">= {low[0]}.{low[1]}, < {high[0]}")
    for cls, names in _REQUIRED:
        for name in names:
            if not hasattr(cls, name):
                problems.append(f"{cls.__module__}.{cls.__name__}.{name} is missing")
    return problems
