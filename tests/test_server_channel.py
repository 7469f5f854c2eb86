"""The channel's hand-over of a detached request between threads, on a real
FuturesChannel (a socket pair, no server loop) with a real runtime: the
worker detaches, the completion thread re-queues, the shutdown thread
refuses, and they race."""

import socket
import threading

import pytest
from waitress import wasyncore
from waitress.adjustments import Adjustments

from collective.futures import runtime as runtime_module
from collective.futures.core.promise import Promise
from collective.futures.core.state import RequestFutures
from collective.futures.server.channel import FuturesChannel, detached_channels
from collective.futures.settings import Settings


class FakeServer:
    """What a channel asks of its server: add_task (recorded, and signalled),
    pull_trigger, and the map of active channels."""

    def __init__(self):
        # clear_untrusted_proxy_headers: waitress 2.0 warns without it.
        self.adj = Adjustments(threads=2, clear_untrusted_proxy_headers=True)
        self.active_channels = {}
        self.tasks = []
        self.queued = threading.Event()

    def add_task(self, channel):
        self.tasks.append(channel)
        self.queued.set()

    def pull_trigger(self):
        pass


@pytest.fixture
def runtime():
    old = runtime_module._runtime
    yield runtime_module.configure(Settings(max_workers=2, timeout=10))
    runtime_module.get_runtime().shutdown()
    runtime_module._runtime = old


@pytest.fixture
def make_channel():
    made = []

    def make(channel_class=FuturesChannel):
        server = FakeServer()
        ours, theirs = socket.socketpair()
        made.extend((ours, theirs))
        channel = channel_class(server, ours, ("127.0.0.1", 0), server.adj, map={})
        return channel, server

    yield make
    for sock in made:
        sock.close()


def suspended(channel, release):
    """Suspend a request on ``channel`` whose one promise waits for
    ``release``; returns its state."""
    state = RequestFutures()
    state.pending["k"] = Promise("k", lambda: release.wait(10) and "value")
    channel._suspend(state)
    return state


def test_a_round_that_ends_re_queues_the_channel_with_its_outcomes(runtime, make_channel):
    channel, server = make_channel()
    release = threading.Event()
    state = suspended(channel, release)
    assert channel.detached is not None and channel in detached_channels()
    assert "readable" in channel.__dict__  # the detached readable()
    release.set()
    assert server.queued.wait(10)
    assert server.tasks == [channel]
    assert channel.detached is None and channel not in detached_channels()
    assert "readable" not in channel.__dict__
    assert state.resolved["k"].value == "value" and state.unavailable is None
    # The next service() takes the record, once.
    assert channel._next is not None and channel._next.state is state


def test_refuse_answers_a_suspended_request_with_a_503(runtime, make_channel):
    channel, server = make_channel()
    release = threading.Event()
    state = suspended(channel, release)
    channel.refuse("the server is shutting down")
    assert server.queued.wait(10)
    assert state.unavailable == "the server is shutting down"
    assert state.resolved["k"].kind == "cancelled"
    release.set()


def test_refuse_after_the_round_ended_leaves_the_request_as_it_ended(runtime, make_channel):
    channel, server = make_channel()
    release = threading.Event()
    state = suspended(channel, release)
    release.set()
    assert server.queued.wait(10)
    channel.refuse("too late")  # nothing detached: a no-op
    assert state.unavailable is None and len(server.tasks) == 1


class RacingChannel(FuturesChannel):
    """Makes the race of the shutdown thread with the round's end happen at
    the worst moment: when ``refuse()`` has read ``detached``, the round
    ends on its own thread (its promise is released), and the read returns
    once that end is over, or after 0.5 s if the end has to wait for
    ``refuse()`` (as it must: the hand-over is locked)."""

    race = None  # (release, ended) while armed

    @property
    def detached(self):
        value = self.__dict__.get("_detached_value")
        race, self.race = self.race, None
        if race is not None and value is not None:
            release, ended = race
            release.set()
            ended.wait(0.5)
        return value

    @detached.setter
    def detached(self, value):
        self.__dict__["_detached_value"] = value


def test_refuse_racing_the_end_of_the_round_never_fails(runtime, make_channel):
    # Before the channel kept one record under one lock, refuse() read the
    # suspended state after the round's end had cleared it: AttributeError,
    # and the drain stopped refusing the other requests.
    channel, server = make_channel(RacingChannel)
    release = threading.Event()
    state = suspended(channel, release)
    channel.race = (release, server.queued)
    channel.refuse("the server is shutting down")  # must not raise
    assert server.queued.wait(10)
    assert server.tasks == [channel]  # answered once
    outcome = state.resolved["k"]
    # Either the refusal won (a 503) or the round had ended (its pass
    # renders); never both, never neither.
    assert (state.unavailable, outcome.kind) in (
        ("the server is shutting down", "cancelled"), (None, "completed"))


def test_the_racing_channel_does_make_the_round_end_inside_refuse(runtime, make_channel):
    # Positive control of the race above: with no lock in the way (a read
    # of detached outside refuse), the round ends during the read.
    channel, server = make_channel(RacingChannel)
    release = threading.Event()
    suspended(channel, release)
    channel.race = (release, server.queued)
    assert channel.detached is not None  # the value read before the end
    assert server.queued.is_set()  # ...and the round ended during the read


# The main loop while a worker writes (issue 11, item 8)

def held_with_output(channel, size=100):
    """A request held (a worker serves it) with ``size`` bytes buffered, as
    waitress's write_soon() leaves them before it sends."""
    channel.requests = [object()]
    channel.outbufs[-1].append(b"x" * size)
    channel.total_outbufs_len = size


def handle_writes(channel, iterations):
    """Run waitress's real poll() main loop on the channel's map for
    ``iterations`` iterations; the number of handle_write() calls."""
    calls = []
    channel.handle_write = lambda: calls.append(type(channel).handle_write(channel))
    try:
        wasyncore.loop(timeout=0.01, use_poll=True, map=channel._map,
                       count=iterations)
    finally:
        del channel.handle_write
    return len(calls)


def test_the_main_loop_does_not_spin_while_a_writer_holds_the_output(make_channel):
    # The socket is writable and bytes are buffered, but the thread that
    # holds outbuf_lock sends them itself: handle_write() could do nothing.
    # With stock writable(), poll() returned at once for it, every
    # iteration, as long as the writer held the lock (the spin of issue
    # 11, item 8: hundreds of poll() calls per request under load).
    channel, server = make_channel()
    held_with_output(channel)
    holding, release = threading.Event(), threading.Event()

    def writer():
        with channel.outbuf_lock:
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=writer, name="test-outbuf-writer")
    thread.start()
    try:
        assert holding.wait(10)
        writes = handle_writes(channel, 20)
        assert writes <= 2, f"{writes} handle_write() calls in 20 iterations"
        assert not channel.writable()
    finally:
        release.set()
        thread.join(10)
    # The lock is free: the main loop sends, as stock waitress does.
    assert channel.writable()
    assert handle_writes(channel, 1) == 1
    assert channel.total_outbufs_len == 0


def test_writable_still_says_what_handle_write_would_do(make_channel):
    channel, server = make_channel()
    assert not channel.writable()  # nothing buffered
    held_with_output(channel)
    assert channel.writable()  # held, lock free: flushed if lockable
    channel.adj.send_bytes = 1000  # waitress's deprecated threshold
    assert not channel.writable()  # held, below it: handle_write() waits
    channel.requests = []
    assert channel.writable()  # not held: flushed at once
    channel.total_outbufs_len = 0
    channel.close_when_flushed = True
    assert channel.writable()  # closing: handle_write() closes


def test_a_write_that_leaves_bytes_wakes_the_loop_once_the_lock_is_free(make_channel):
    # writable() is false while a writer holds the lock, so the trigger
    # waitress pulls inside it may be spent before the lock is free: the
    # channel pulls it again after, or what is left waits for the next
    # event (up to asyncore_loop_timeout).
    channel, server = make_channel()
    channel.requests = [object()]
    owned_at_pull = []
    server.pull_trigger = lambda: owned_at_pull.append(channel.outbuf_lock._is_owned())
    # The peer reads nothing: the socket takes part, the rest stays (in
    # memory: below outbuf_overflow, no temporary file).
    channel.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    try:
        channel.write_soon(b"x" * (256 << 10))
        assert channel.total_outbufs_len > 0
        assert owned_at_pull and owned_at_pull[-1] is False
    finally:
        channel.handle_close()


def test_a_streaming_channel_is_quiet_but_for_what_its_writers_leave(runtime, make_channel):
    # Thousands of streams waiting for their fn were asked readable() and
    # writable() on every iteration of the main loop: half the process's
    # time at C = 2,048. Quiet while it streams, a channel is asked again
    # when its own socket has an event (loop.py) or when a writer leaves
    # bytes for the loop to send (here).
    from collective.futures.server.channel import Detachment
    from collective.futures.server.loop import QUIET

    channel, server = make_channel()
    fd = channel._fileno
    try:
        channel.requests = [object()]
        channel._streaming = True
        QUIET.add(fd)
        QUIET.take_changed()
        # waitress sends what it can at once (from 2.1; 2.0 leaves it all
        # for the loop): the loop is asked again exactly when bytes are left.
        channel.write_soon(b"small")
        left = channel.total_outbufs_len > 0
        assert (fd in QUIET.take_changed()) == left and fd in QUIET
        channel.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        channel.write_soon(b"x" * (256 << 10))  # the peer reads nothing: left over
        assert channel.total_outbufs_len > 0
        assert fd in QUIET.take_changed() and fd in QUIET  # asked once more
        # The stream's job ends: loud again, queued for its service().
        channel._job_done(Detachment(stream_task=object()))
        assert not channel._streaming and fd not in QUIET
        assert server.tasks == [channel]
        # The positive control: a request a worker serves (loud) stays loud.
        QUIET.take_changed()
        channel.write_soon(b"y" * (256 << 10))
        assert fd not in QUIET and fd not in QUIET.take_changed()
        # Closed while quiet, however: its number is never left quiet.
        QUIET.add(fd)
    finally:
        channel.close()
    assert fd not in QUIET
