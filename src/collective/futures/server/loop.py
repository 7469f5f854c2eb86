"""The server's main loop, for thousands of connections.

Runs on: the server's main thread (``loop``); ``QUIET`` is changed by the
channels from any thread.

waitress's ``poll()`` loop (``wasyncore.poll2``) rebuilds its poll set on
every iteration: it copies the whole map, asks every channel
``readable()`` and ``writable()`` and registers every descriptor again.
That is Python work in proportion to the connections, on every iteration:
with thousands of suspended requests it was about a third of the process's
CPU. This loop keeps one ``epoll`` registration per descriptor, changed
only when a channel's answer changes, and does not ask *quiet* channels at
all: a channel is quiet while its request is suspended (waiting for its
promises, nothing to send), the state of nearly every connection of a busy
site, and its answer cannot change unless an event on its own socket (read
here) or the end of its wait (which makes it loud again, then wakes the
loop) changes it. Every other channel (the listening socket, the trigger,
connections being read or written) is asked on every iteration, as in
waitress's loop, so their behaviour is waitress's own.

The loop is used only where waitress would poll (``asyncore_use_poll``)
and ``epoll`` exists (Linux); elsewhere waitress's own loop runs.
"""

import select

from waitress import wasyncore


class Quiet:
    """The descriptors of quiet channels (see above). A channel adds its own
    when it becomes quiet, or quiet for another reason (its answers may
    have changed: the loop asks it once more), and discards it before it
    is served or closed. Any thread; set operations are atomic."""

    def __init__(self):
        self.fds = set()
        self._changed = set()

    def add(self, fd):
        self.fds.add(fd)
        self._changed.add(fd)

    def discard(self, fd):
        self.fds.discard(fd)

    def __contains__(self, fd):
        return fd in self.fds

    def take_changed(self):
        """The descriptors added since the last call."""
        changed = set(self._changed)
        self._changed -= changed
        return changed


#: The process's quiet channels.
QUIET = Quiet()

_READ = select.POLLIN | select.POLLPRI
_WRITE = select.POLLOUT


def flags_of(obj):
    """What waitress's poll loop would register for ``obj``."""
    flags = 0
    if obj.readable():
        flags |= _READ
    if obj.writable() and not obj.accepting:
        flags |= _WRITE
    return flags


class EpollLoop:
    """One main loop's registrations: ``once(timeout, map)`` is one
    iteration (waitress's ``poll2``)."""

    def __init__(self, quiet=QUIET):
        self.epoll = select.epoll()
        self.quiet = quiet
        #: fd -> (the dispatcher registered, its flags)
        self.registered = {}

    def close(self):
        self.epoll.close()

    def _set(self, fd, obj, flags):
        known = self.registered.get(fd)
        if known is not None:
            if known[0] is obj and known[1] == flags:
                return
            if flags:
                try:
                    self.epoll.modify(fd, flags)
                    self.registered[fd] = (obj, flags)
                    return
                except (OSError, ValueError):  # forgotten by the kernel
                    pass
            self._forget(fd)
        if flags:
            try:
                self.epoll.register(fd, flags)
            except FileExistsError:  # a closed fd's number, reused
                self.epoll.modify(fd, flags)
            except (OSError, ValueError):  # closed meanwhile (EBADF, -1)
                return
            self.registered[fd] = (obj, flags)

    def _forget(self, fd):
        del self.registered[fd]
        try:
            self.epoll.unregister(fd)
        except (OSError, ValueError):  # closed: the kernel forgot it
            pass

    def once(self, timeout, map):
        # Set operations run in C: a few microseconds per thousand
        # connections, where asking each channel costs a millisecond.
        registered, quiet = self.registered, self.quiet
        for fd in registered.keys() - map.keys():
            self._forget(fd)
        changed = quiet.take_changed()
        for fd in map.keys() - quiet.fds:
            obj = map.get(fd)
            if obj is not None:
                self._set(fd, obj, flags_of(obj))
        for fd in changed:  # (newly) quiet: asked once
            obj = map.get(fd)
            if obj is not None and fd in quiet:
                self._set(fd, obj, flags_of(obj))
        try:
            events = self.epoll.poll(timeout)
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            return
        for fd, flags in events:
            obj = map.get(fd)
            if obj is None:
                continue
            wasyncore.readwrite(obj, flags)
            if fd in quiet and map.get(fd) is obj:
                # Its own event may change a quiet channel's answer (a
                # hang-up, a pipelined request): ask it again.
                self._set(fd, obj, flags_of(obj))


def loop(timeout=30.0, use_poll=False, map=None, count=None):
    """``wasyncore.loop``, with :class:`EpollLoop` where waitress would
    poll and epoll exists."""
    if not use_poll or not hasattr(select, "epoll"):
        return wasyncore.loop(timeout=timeout, use_poll=use_poll, map=map,
                              count=count)
    if map is None:  # pragma: no cover - servers always pass their map
        map = wasyncore.socket_map
    epoll = EpollLoop()
    try:
        while map and (count is None or count > 0):
            epoll.once(timeout, map)
            if count is not None:
                count -= 1
    finally:
        epoll.close()


class LoopModule:
    """What a server reads as ``self.asyncore``: waitress's wasyncore, with
    this module's ``loop``."""

    loop = staticmethod(loop)

    def __getattr__(self, name):
        return getattr(wasyncore, name)
