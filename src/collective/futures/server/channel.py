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
from ..stream import StreamHandoff
from .internals import HTTPChannel
from .streaming import StreamJob
from .task import FuturesTask


class FuturesChannel(HTTPChannel):
    task_class = FuturesTask

    #: What ``requests[0]`` waits for while no worker serves it: the Round of
    #: a suspended request, or the StreamJob of a handed-off stream. Both
    #: have ``cancel(reason)``.
    detached = None
    #: The request's futures, handed from ``_resume`` to the next task.
    resumed_state = None
    #: The task of a finished stream, handed to the next ``service()``.
    completed_stream = None

    # ASYNCHRONOUS METHODS (main loop)

    def readable(self):
        if self.detached is None:
            return super().readable()
        # Detached: requests[0] is held but no worker is busy with it. Keep
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
        detached = self.detached
        if detached is not None and not self.connected:
            # The client hung up: drop promises (or the stream's fn) not yet
            # started, abandon running ones; the re-queued service() closes
            # the connection without rendering.
            detached.cancel("the client disconnected")

    def handle_close(self):
        detached = self.detached
        super().handle_close()
        if detached is not None:
            detached.cancel("the connection closed")

    # SYNCHRONOUS METHODS (worker thread)

    def service(self):
        try:
            super().service()
        except SuspendRequest as suspension:
            self._suspend(suspension.state)
        except StreamHandoff as handoff:
            self._stream(handoff.task, handoff.stream)

    def _suspend(self, state):
        # The pass raised before start_response: nothing was written and
        # requests[0] is still held, unclosed (see internals.py, point 3).
        round_ = get_runtime().make_round(
            state.take_pending(),
            on_done=lambda outcomes: self._resume(state, outcomes))
        self._detach(round_)

    def _stream(self, task, stream):
        # start_response was called (status and headers stored on the task,
        # nothing written) and requests[0] is still held (point 9).
        self._detach(StreamJob(self, task, stream, on_done=self._stream_done))

    def _detach(self, job):
        self.detached = job
        self.last_activity = time.time()
        job.start()
        # Wake the main loop: readable() changed.
        self.server.pull_trigger()

    # Called by whichever thread finishes the detached work.

    def _resume(self, state, outcomes):
        state.record(outcomes)
        self.resumed_state = state
        self.detached = None
        self.server.add_task(self)

    def _stream_done(self, job):
        self.completed_stream = job.task
        self.detached = None
        self.server.add_task(self)
