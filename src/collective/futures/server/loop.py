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
promises, nothing to send) or streamed (a pump writes it), the state of
nearly every connection of a busy site, and its answer cannot change
unless an event on its own socket (read here) or its own code (the end of
its wait, a pump's bytes left to send: it tells ``QUIET``, then wakes the
loop) changes it. Every other channel (the listening socket, the trigger,
connections being read or written) is asked on every iteration, as in
waitress's loop, so their behaviour is waitress's own.

The loop is used only where waitress would poll (``asyncore_use_poll``)
and ``epoll`` exists (Linux); elsewhere waitress's own loop runs.
"""

import logging
import select
import time

from waitress import wasyncore


class Quiet:
    """The descriptors of quiet channels (see above), and of every change the
    loop must look at. A channel adds its own when it becomes quiet, or
    quiet for another reason (its answers may have changed: the loop asks
    it once more), and discards it before it is served or closed; it
    touches its descriptor when it enters or leaves the map. Any thread;
    set operations are atomic."""

    def __init__(self):
        self.fds = set()
        self._changed = set()

    def add(self, fd):
        self.fds.add(fd)
        self._changed.add(fd)

    def discard(self, fd):
        if fd in self.fds:
            self.fds.discard(fd)
            self._changed.add(fd)

    def touch(self, fd):
        """``fd`` entered or left the map (or may have)."""
        self._changed.add(fd)

    def __contains__(self, fd):
        return fd in self.fds

    def take_changed(self):
        """The descriptors added, discarded or touched since the last call.
        (A change made while this runs may be taken without being seen
        here; the loop reads each one's state after taking it.)"""
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
    iteration (waitress's ``poll2``).

    It keeps the set of *loud* descriptors (in the map, not quiet) up to
    date from the changes :class:`Quiet` reports, so that an iteration costs
    work in proportion to the loud channels and the events, not to every
    connection. Dispatchers that report nothing (the listening socket, the
    trigger, another package's) are found by a full comparison with the
    map, made when the map's size is not what the loop expects and at
    least every ``reconcile_interval`` seconds."""

    reconcile_interval = 1.0

    def __init__(self, quiet=QUIET, clock=time.monotonic):
        self.epoll = select.epoll()
        self.quiet = quiet
        self.clock = clock
        #: fd -> (the dispatcher registered, its flags)
        self.registered = {}
        #: the descriptors asked on every iteration
        self.loud = set()
        #: fd -> dispatcher: the map as the loop last knew it
        self.known = {}
        self._reconciled = -float("inf")

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

    def _reconcile(self, map):
        """The full comparison: every descriptor of the map not quiet is
        loud; registrations of descriptors gone from it are dropped. Set
        operations run in C, but in proportion to the connections."""
        for fd in self.registered.keys() - map.keys():
            self._forget(fd)
        self.known = dict(map)
        self.loud = map.keys() - self.quiet.fds
        for fd in map.keys() & self.quiet.fds:
            obj = map.get(fd)
            known = self.registered.get(fd)
            if obj is not None and (known is None or known[0] is not obj):
                self._set(fd, obj, flags_of(obj))  # new to the loop
        self._reconciled = self.clock()

    def once(self, timeout, map):
        registered, quiet, loud, known = (self.registered, self.quiet,
                                          self.loud, self.known)
        for fd in quiet.take_changed():
            obj = map.get(fd)
            if obj is None:
                known.pop(fd, None)
                loud.discard(fd)
                if fd in registered:
                    self._forget(fd)
                continue
            known[fd] = obj
            if fd in quiet:  # (newly) quiet: asked once
                loud.discard(fd)
                self._set(fd, obj, flags_of(obj))
            else:
                loud.add(fd)
        if (len(map) != len(known)
                or self.clock() - self._reconciled >= self.reconcile_interval):
            self._reconcile(map)
            loud = self.loud
        for fd in list(loud):
            obj = map.get(fd)
            if obj is None:
                loud.discard(fd)
                known.pop(fd, None)
                if fd in registered:
                    self._forget(fd)
            else:
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


#: Called once, with the [(host, port)] the servers listen on, when the
#: first main loop starts (server.when_serving): the task consumer sends
#: its requests there.
SERVING = []
_announced = []


def _announce(map):
    if _announced or not SERVING:
        return
    _announced.append(True)
    addresses = []
    for dispatcher in list(map.values()):
        # waitress's TCP servers: host and port as getnameinfo gives them
        # (strings); a Unix socket's server has no port.
        port = str(getattr(dispatcher, "effective_port", "") or "")
        if port.isdigit():
            addresses.append((str(dispatcher.effective_host), int(port)))
    for callback in list(SERVING):
        try:
            callback(addresses)
        except Exception:
            logging.getLogger("collective.futures").exception(
                "a callback of when_serving failed")


def loop(timeout=30.0, use_poll=False, map=None, count=None):
    """``wasyncore.loop``, with :class:`EpollLoop` where waitress would
    poll and epoll exists."""
    _announce(map if map is not None else wasyncore.socket_map)
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
