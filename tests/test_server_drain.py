"""server/drain.py: the graceful drain on SIGTERM/SIGINT, with fake
channels, a fake clock whose sleep moves it, and a real core Runtime. No
signal is sent to the test process: _handle and _chain are called
directly with fake previous handlers."""

import logging
import signal
import threading


from collective.futures.core.promise import Promise
from collective.futures.core.runtime import Runtime
from collective.futures.server.drain import SIGNALS, Drain
from collective.futures.settings import Settings

from fakes import FakeClock, bounded, manual_deadlines


REASON = "the server is shutting down"


class Channel:
    """A connection holding a detached request, as the drain sees it.
    ``answer_at``: the clock time its job ends by itself (None: never);
    ``flushed_after``: seconds from the answer until its output is sent
    (None: never)."""

    def __init__(self, clock, name, answer_at=None, flushed_after=0.0,
                 answered_on_refuse=True, disconnect_at=None):
        self.clock = clock
        self.disconnect_at = disconnect_at
        self.name = name
        self.answer_at = answer_at
        self.flushed_after = flushed_after
        self.answered_on_refuse = answered_on_refuse
        self.request = object()
        self.requests = [self.request]
        self.detached = "a detachment"
        self.connected = True
        self.refused = []
        self._answered_at = None

    def __repr__(self):
        return f"<Channel {self.name}>"

    def answer(self):
        self.detached = None
        self._answered_at = self.clock()

    def tick(self):
        """What other threads did by now (called when the clock moves)."""
        if self.disconnect_at is not None and self.clock() >= self.disconnect_at:
            self.connected = False  # the main loop saw the hang-up
        if self.detached is not None and self.answer_at is not None and (
                self.clock() >= self.answer_at):
            self.answer()
        if self._answered_at is not None and self.requests and (
                self.flushed_after is not None
                and self.clock() >= self._answered_at + self.flushed_after):
            self.requests.pop(0)

    @property
    def total_outbufs_len(self):
        return 0 if self.detached is None and not self.requests else 100

    def refuse(self, reason):
        self.refused.append(reason)
        if self.answered_on_refuse:
            self.answer()
            self.tick()


class World:
    """The channels, a clock and a sleep that moves it (and the world)."""

    def __init__(self, grace=2.0):
        self.clock = FakeClock()
        self.channels = []
        self.runtime = Runtime(Settings(shutdown_grace=grace),
                               deadlines=manual_deadlines(self.clock),
                               clock=self.clock)

    def add(self, *args, **kwargs):
        channel = Channel(self.clock, *args, **kwargs)
        self.channels.append(channel)
        return channel

    def detached(self):
        return [c for c in self.channels if c.detached is not None]

    def sleep(self, seconds):
        self.clock.sleep(seconds)
        for channel in self.channels:
            channel.tick()

    def drain(self):
        return Drain(self.detached, sleep=self.sleep, clock=self.clock,
                     runtime=self.runtime)


def test_all_answered_within_the_grace_none_refused(caplog):
    world = World(grace=2.0)
    fast = world.add("fast", answer_at=0.3)
    slow = world.add("slow", answer_at=1.5)
    drain = world.drain()
    with caplog.at_level(logging.INFO, "collective.futures"):
        drain.run()
    assert drain.finished
    assert world.runtime.draining is True
    assert fast.refused == slow.refused == []
    assert not fast.requests and not slow.requests
    # It waited as long as the slowest needed, not the whole grace.
    assert 1.5 <= world.clock.now < 1.7
    assert "draining 2 suspended request(s) within 2 s" in caplog.text
    assert "drained; stopping" in caplog.text


def test_late_requests_are_refused_with_the_reason(caplog):
    world = World(grace=2.0)
    on_time = world.add("on time", answer_at=1.0)
    late = world.add("late", answer_at=50.0)
    never = world.add("never")
    drain = world.drain()
    drain.run()
    assert on_time.refused == []
    assert late.refused == [REASON] and never.refused == [REASON]
    # The grace was waited in full, then the refusals flushed at once.
    assert 2.0 <= world.clock.now < 2.2
    assert not late.requests and not never.requests
    assert "answered 2 request(s) still suspended after 2 s with a 503" in (
        caplog.text)


def test_the_flush_wait_is_bounded():
    world = World(grace=1.0)
    stuck = world.add("stuck", flushed_after=None)  # refused, never sent
    drain = world.drain()
    bounded(drain.run)
    assert stuck.refused == [REASON]
    # The grace, then at most 5 s more for the answers to go out.
    assert 6.0 <= world.clock.now < 6.2
    assert all(s <= 0.1 for s in world.clock.sleeps)


def test_a_refusal_that_does_not_end_the_job_is_waited_for_within_the_bound():
    world = World(grace=1.0)
    world.add("deaf", answered_on_refuse=False)
    bounded(world.drain().run)
    assert 6.0 <= world.clock.now < 6.2


def test_a_channel_whose_client_went_away_counts_as_answered():
    world = World(grace=5.0)
    # Its client hangs up at 0.2 s; its job has not ended yet (still
    # detached, its request still held).
    gone = world.add("gone", disconnect_at=0.2, answered_on_refuse=False)
    waiting = world.add("waiting", answer_at=0.5)
    world.drain().run()
    assert world.clock.now < 1.0  # not waiting the grace out for the gone one
    assert waiting.refused == []
    # Still detached when the waiting is over: refused, which ends its job.
    assert gone.refused == [REASON]


def test_a_gone_client_is_not_waited_for_in_the_flush_either():
    world = World(grace=1.0)
    world.add("gone", disconnect_at=1.5, flushed_after=None)
    bounded(world.drain().run)
    assert 1.5 <= world.clock.now < 1.7  # not the 5 s flush bound


def test_a_channel_detached_during_the_grace_is_watched_too():
    world = World(grace=3.0)
    world.add("first", answer_at=0.5)
    late_comer = Channel(world.clock, "late comer", answer_at=2.5)
    late_comer.detached = None  # not detached yet
    world.channels.append(late_comer)
    original_sleep = world.sleep

    def sleep(seconds):
        original_sleep(seconds)
        if world.clock.now >= 0.3 and late_comer.answer_at and (
                late_comer._answered_at is None):
            late_comer.detached = "a detachment"  # suspended meanwhile

    world.sleep = sleep
    world.drain().run()
    assert late_comer.refused == [] and not late_comer.requests
    assert world.clock.now >= 2.5  # waited for it


def test_nothing_detached():
    world = World(grace=10.0)
    drain = world.drain()
    drain.run()
    assert world.clock.now == 0.0 and world.clock.sleeps == []
    assert world.runtime.draining is True


def test_the_runtime_refuses_new_suspensions_once_draining():
    world = World()
    promises = {"k": Promise("k", len)}
    assert world.runtime.admission(promises, suspending=True) == (None, True)
    world.drain().run()
    assert world.runtime.admission(promises, suspending=True) == (REASON, False)


def test_a_failing_drain_still_finishes(caplog):
    world = World()

    def broken():
        raise RuntimeError("channel list broken")

    drain = Drain(broken, sleep=world.sleep, clock=world.clock,
                  runtime=world.runtime)
    drain.run()
    assert drain.finished
    assert "draining failed; stopping anyway" in caplog.text


# signals (no signal is ever sent: the handlers are called directly)

def test_install_off_the_main_thread_does_nothing(caplog):
    drain = World().drain()
    assert bounded(drain.install) is False
    assert drain.previous == {}
    assert signal.getsignal(signal.SIGTERM) != drain._handle
    assert "not on the main thread" in caplog.text


def test_install_on_the_main_thread_keeps_the_previous_handlers():
    assert threading.current_thread() is threading.main_thread()
    saved = {signum: signal.getsignal(signum) for signum in SIGNALS}
    drain = World().drain()
    try:
        assert drain.install() is True
        for signum in SIGNALS:
            assert signal.getsignal(signum) == drain._handle
            assert drain.previous[signum] is saved[signum]
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def test_the_first_signal_starts_the_drain_thread():
    drain = World().drain()
    ran = threading.Event()
    drain.run = lambda: (ran.set(), None)[1]  # not the real run(): no kill
    drain._handle(signal.SIGTERM, None)
    assert ran.wait(5)
    assert drain.signum == signal.SIGTERM
    assert drain.thread.name == "collective.futures-shutdown"
    assert drain.thread.daemon
    drain.thread.join(5)


def test_a_second_signal_while_draining_chains_at_once():
    calls = []
    drain = World().drain()
    drain.previous[signal.SIGINT] = lambda signum, frame: calls.append(
        (signum, frame))
    drain.thread = threading.current_thread()  # a drain is running
    drain._handle(signal.SIGINT, "frame")
    assert calls == [(signal.SIGINT, "frame")]


def test_the_signal_after_the_drain_goes_to_the_previous_handler():
    calls = []
    drain = World().drain()
    drain.previous[signal.SIGTERM] = lambda signum, frame: calls.append(signum)
    drain.finished = True
    assert drain._handle(signal.SIGTERM, None) is None
    assert calls == [signal.SIGTERM]
    assert drain.thread is None  # no second drain


def test_chain_to_a_previous_handler_that_returns_a_value():
    drain = World().drain()
    drain.previous[signal.SIGINT] = lambda signum, frame: "stopped"
    assert drain._chain(signal.SIGINT, None) == "stopped"


def test_chain_to_an_ignored_signal_does_nothing():
    drain = World().drain()
    drain.previous[signal.SIGTERM] = signal.SIG_IGN
    before = signal.getsignal(signal.SIGTERM)
    assert drain._chain(signal.SIGTERM, None) is None
    assert signal.getsignal(signal.SIGTERM) is before  # left as it was


def test_run_without_a_signal_does_not_kill_the_process():
    # run() re-delivers the signal it drained for; started without one (as
    # in these tests) it only drains.
    world = World()
    drain = world.drain()
    assert drain.signum is None
    drain.run()
    assert drain.finished
