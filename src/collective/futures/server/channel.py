"""The connection: suspends a request between passes.

Two threads use a channel, as in waitress itself:

* ASYNCHRONOUS methods run on the server's main loop (the only thread that
  touches the socket): ``readable``, ``handle_read``, ``handle_close``.
* SYNCHRONOUS methods run on a waitress worker thread: ``service``.

Side threads (a round's last promise, the deadline thread) only call
``_resume``, which hands the outcomes over and re-queues the channel with
``server.add_task``; they never touch the socket.

Exactly one ``service()`` per channel is ever queued or running, as in stock
waitress: a suspended channel is in neither state until ``_resume``.
"""

import time

from ..publisher import SuspendRequest
from ..runtime import get_runtime
from .internals import HTTPChannel
from .task import FuturesTask


class FuturesChannel(HTTPChannel):
    task_class = FuturesTask

    #: The Round that ``requests[0]`` waits for, while suspended.
    suspended_round = None
    #: The request's futures, handed from ``_resume`` to the next task.
    resumed_state = None

    # ASYNCHRONOUS METHODS (main loop)

    def readable(self):
        if self.suspended_round is None:
            return super().readable()
        # Suspended: requests[0] is held but no worker is busy with it. Keep
        # reading so a hang-up is seen (handle_read), within stock waitress's
        # bound on parsed-ahead requests, plus the held one.
        return (
            self.connected
            and not self.will_close
            and not self.close_when_flushed
            and not self.total_outbufs_len
            and len(self.requests) <= self.adj.channel_request_lookahead + 1
        )

    def handle_read(self):
        super().handle_read()
        round_ = self.suspended_round
        if round_ is not None and not self.connected:
            # The client hung up: drop promises not yet started, abandon the
            # running ones; the re-queued service() closes the connection
            # without rendering.
            round_.cancel("the client disconnected")

    def handle_close(self):
        round_ = self.suspended_round
        super().handle_close()
        if round_ is not None:
            round_.cancel("the connection closed")

    # SYNCHRONOUS METHODS (worker thread)

    def service(self):
        try:
            super().service()
        except SuspendRequest as suspension:
            self._suspend(suspension.state)

    def _suspend(self, state):
        # The pass raised before start_response: nothing was written and
        # requests[0] is still held, unclosed (see internals.py, point 3).
        round_ = get_runtime().make_round(
            state.take_pending(),
            on_done=lambda outcomes: self._resume(state, outcomes))
        self.suspended_round = round_
        self.last_activity = time.time()
        round_.start()
        # Wake the main loop: readable() changed.
        self.server.pull_trigger()

    # Called by whichever thread settles the round's last promise.

    def _resume(self, state, outcomes):
        state.record(outcomes)
        self.resumed_state = state
        self.suspended_round = None
        self.server.add_task(self)
