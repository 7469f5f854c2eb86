"""server/loop.py: the epoll main loop, on real sockets with dispatchers
that count what the loop asks them; and installed, the servers use it."""

import select
import socket

import pytest
from waitress import wasyncore

from collective.futures.server import loop as loop_module
from collective.futures.server.loop import EpollLoop, LoopModule, Quiet, flags_of


class Dispatcher:
    """What the loop uses of a channel, counting the questions."""

    accepting = False

    def __init__(self, sock, readable=True, writable=False):
        self.sock = sock
        self._fileno = sock.fileno()
        self.answers = {"readable": readable, "writable": writable}
        self.asked = 0
        self.reads = self.writes = self.closes = 0

    def readable(self):
        self.asked += 1
        return self.answers["readable"]

    def writable(self):
        return self.answers["writable"]

    def handle_read_event(self):
        self.reads += 1
        self.sock.recv(4096)

    def handle_write_event(self):
        self.writes += 1

    def handle_expt_event(self):
        pass

    def handle_close(self):
        self.closes += 1


@pytest.fixture
def pairs():
    made = []

    def make():
        a, b = socket.socketpair()
        made.extend((a, b))
        return a, b

    yield make
    for sock in made:
        sock.close()


def test_events_reach_the_dispatchers_as_in_waitress_loop(pairs):
    (a, peer_a), (b, _) = pairs(), pairs()
    reader, writer = Dispatcher(a), Dispatcher(b, readable=False, writable=True)
    channels = {a.fileno(): reader, b.fileno(): writer}
    epoll = EpollLoop(quiet=Quiet())
    try:
        epoll.once(0.5, channels)
        assert (reader.reads, writer.writes) == (0, 1)  # nothing to read yet
        peer_a.send(b"x")
        epoll.once(0.5, channels)
        assert reader.reads == 1
        writer.answers["writable"] = False  # its answer changes: re-registered
        epoll.once(0.01, channels)
        assert writer.writes == 2
    finally:
        epoll.close()


def test_quiet_channels_are_asked_once_and_woken_by_their_own_events(pairs):
    (a, peer_a), (b, _) = pairs(), pairs()
    quiet_one, loud = Dispatcher(a), Dispatcher(b)
    channels = {a.fileno(): quiet_one, b.fileno(): loud}
    quiet = Quiet()
    quiet.add(a.fileno())
    epoll = EpollLoop(quiet=quiet)
    try:
        for _ in range(5):
            epoll.once(0.01, channels)
        assert loud.asked == 5
        assert quiet_one.asked == 1  # asked once, when it became quiet
        peer_a.send(b"bye")  # an event on its own socket: read, asked again
        epoll.once(0.5, channels)
        assert quiet_one.reads == 1 and quiet_one.asked == 2
        quiet.add(a.fileno())  # quiet for another reason: asked once more
        epoll.once(0.01, channels)
        epoll.once(0.01, channels)
        assert quiet_one.asked == 3
        quiet.discard(a.fileno())  # loud again: asked every iteration
        epoll.once(0.01, channels)
        epoll.once(0.01, channels)
        assert quiet_one.asked == 5
    finally:
        epoll.close()


def test_closed_and_reused_descriptors(pairs):
    a, peer_a = pairs()
    first = Dispatcher(a)
    channels = {a.fileno(): first}
    epoll = EpollLoop(quiet=Quiet())
    try:
        epoll.once(0.01, channels)
        fd = a.fileno()
        del channels[fd]
        a.close()
        epoll.once(0.01, channels)
        assert fd not in epoll.registered  # forgotten once gone from the map
        c, peer_c = pairs()
        second = Dispatcher(c)
        channels[c.fileno()] = second  # perhaps the same number: re-registered
        peer_c.send(b"x")
        epoll.once(0.5, channels)
        assert second.reads == 1 and first.reads == 0
    finally:
        epoll.close()


def test_a_hang_up_is_dispatched(pairs):
    a, peer_a = pairs()
    channel = Dispatcher(a)
    channels = {a.fileno(): channel}
    quiet = Quiet()
    quiet.add(a.fileno())
    epoll = EpollLoop(quiet=quiet)
    try:
        peer_a.close()
        epoll.once(0.5, channels)
        assert channel.reads == 1  # the end of file, read (then closed by it)
    finally:
        epoll.close()


def test_flags_are_waitress_s(pairs):
    a, _ = pairs()
    d = Dispatcher(a, readable=True, writable=True)
    assert flags_of(d) == select.POLLIN | select.POLLPRI | select.POLLOUT
    d.accepting = True  # a listening socket is never watched for writing
    assert flags_of(d) == select.POLLIN | select.POLLPRI


def test_the_loop_runs_count_iterations_and_falls_back_without_poll(pairs):
    a, _ = pairs()
    d = Dispatcher(a)
    loop_module.loop(timeout=0.01, use_poll=True, map={a.fileno(): d}, count=3)
    assert d.asked == 3
    d.asked = 0
    # use_poll false: waitress's own select() loop.
    loop_module.loop(timeout=0.01, use_poll=False, map={a.fileno(): d}, count=2)
    assert d.asked == 2


def test_the_module_servers_read_is_wasyncore_with_this_loop():
    module = LoopModule()
    assert module.loop is loop_module.loop
    assert module.readwrite is wasyncore.readwrite
    assert module.dispatcher is wasyncore.dispatcher


def test_install_gives_servers_the_loop_and_uninstall_takes_it_back():
    from collective.futures import server
    from collective.futures.server import internals
    try:
        assert server.install()
        for cls in internals.SERVER_CLASSES:
            assert cls.asyncore.loop is loop_module.loop
    finally:
        server.uninstall()
    for cls in internals.SERVER_CLASSES:
        assert cls.asyncore is wasyncore


class CountingLoop(EpollLoop):
    """Counts the full comparisons with the map."""

    reconciles = 0

    def _reconcile(self, map):
        self.reconciles += 1
        super()._reconcile(map)


def test_an_iteration_costs_the_loud_channels_not_every_connection(pairs):
    # Comparing the whole map with the quiet set on every iteration was
    # about 7 % of the process's time with 4,096 suspended requests. Once
    # the loop knows the map, channels report their own changes (Quiet) and
    # it compares nothing more.
    quiet = Quiet()
    sockets = [pairs() for _ in range(200)]
    channels = {}
    for ours, _ in sockets:
        channels[ours.fileno()] = Dispatcher(ours)
        quiet.add(ours.fileno())
    clock = [0.0]
    epoll = CountingLoop(quiet=quiet, clock=lambda: clock[0])
    try:
        epoll.once(0.01, channels)
        assert epoll.reconciles == 1  # the first: it learns the map
        for _ in range(5):
            epoll.once(0.01, channels)
        assert epoll.reconciles == 1
        assert all(d.asked == 1 for d in channels.values())
        # A channel that enters the map says so: served, no comparison.
        c, peer_c = pairs()
        newcomer = Dispatcher(c)
        channels[c.fileno()] = newcomer
        quiet.touch(c.fileno())
        peer_c.send(b"x")
        epoll.once(0.5, channels)
        assert newcomer.reads == 1 and epoll.reconciles == 1
        # One that leaves says so too: forgotten.
        del channels[c.fileno()]
        quiet.touch(c.fileno())
        epoll.once(0.01, channels)
        assert c.fileno() not in epoll.registered and c.fileno() not in epoll.loud
        assert epoll.reconciles == 1
        # Loud again (discard): asked on every iteration from now on.
        first = next(iter(channels.values()))
        quiet.discard(first._fileno)
        epoll.once(0.01, channels)
        epoll.once(0.01, channels)
        assert first.asked == 3 and epoll.reconciles == 1
    finally:
        epoll.close()


def test_dispatchers_that_report_nothing_are_still_found(pairs):
    # The listening socket, the trigger, another package's dispatcher:
    # found by the comparison the map's size calls for, or at the latest
    # after reconcile_interval.
    (a, peer_a), (b, peer_b) = pairs(), pairs()
    clock = [0.0]
    epoll = CountingLoop(quiet=Quiet(), clock=lambda: clock[0])
    channels = {a.fileno(): Dispatcher(a)}
    try:
        epoll.once(0.01, channels)
        foreign = Dispatcher(b)
        channels[b.fileno()] = foreign  # not touched: the size tells
        peer_b.send(b"x")
        epoll.once(0.5, channels)
        assert foreign.reads == 1 and epoll.reconciles == 2
        # Replaced behind the loop's back, the size unchanged: the loss is
        # seen at once (loud channels are looked up on every iteration),
        # the newcomer by the comparison that follows.
        c, peer_c = pairs()
        replacement = Dispatcher(c)
        del channels[b.fileno()]
        channels[c.fileno()] = replacement
        b.close()
        peer_c.send(b"y")
        for _ in range(2):
            epoll.once(0.5, channels)
        assert replacement.reads == 1 and epoll.reconciles == 3
        # Nothing changes: no comparison, until reconcile_interval passes.
        epoll.once(0.01, channels)
        assert epoll.reconciles == 3
        clock[0] += EpollLoop.reconcile_interval
        epoll.once(0.01, channels)
        assert epoll.reconciles == 4
    finally:
        epoll.close()
