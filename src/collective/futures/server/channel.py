"""The connection: suspends a request between passes.

Two threads use a channel, as in waitress itself:

* ASYNCHRONOUS methods run on the server's main loop (the only thread that
  touches the socket): ``handle_close``, and while a request is detached
  ``readable`` and ``handle_read`` (set on the instance then).
* SYNCHRONOUS methods run on a waitress worker thread: ``service``.

Side threads (a round's last promise, the deadline thread) call
``_resume``, which hands the outcomes over and re-queues the channel with
``server.add_task``. A handed-off stream's thread writes its response
through the task (``write_soon``, waitress's thread-safe output buffer);
no side thread ever touches the socket itself.

As in stock waitress, one ``service()`` per channel serves the request: a
suspended channel is neither queued nor served until ``_resume``. (If a
round finishes while ``_suspend`` is still returning, the next
``service()`` may start before that call has fully returned; the caller
does nothing with the channel after starting the round.)
"""

import threading
import time
import weakref

from ..publisher import SuspendRequest
from ..runtime import get_runtime
from ..stream import StreamHandoff
from .fairness import gate_for
from .internals import HTTPChannel
from .streaming import StreamJob
from .task import FuturesTask


# Channels whose request is detached now, for a graceful shutdown.
_detached = weakref.WeakSet()
_detached_lock = threading.Lock()


def detached_channels():
    with _detached_lock:
        return list(_detached)


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
    #: Set while a resumed request holds a slot of the fairness gate.
    _gated = False
    _suspended_state = None

    # ASYNCHRONOUS METHODS (main loop)
    #
    # While a request is detached, readable() and handle_read() are these
    # two, set on the instance by _detach() and removed by _attach(): the
    # main loop calls readable() for every channel on every iteration, and
    # an override on the class measurably slowed plain pages.

    def _detached_readable(self):
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

    def _detached_handle_read(self):
        HTTPChannel.handle_read(self)
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
        gated, self._gated = self._gated, False
        try:
            super().service()
        except SuspendRequest as suspension:
            self._suspend(suspension.state)
        except StreamHandoff as handoff:
            self._stream(handoff.task, handoff.stream)
        finally:
            if gated:
                gate_for(self.server, get_runtime().settings.resume_slots).done()

    def _suspend(self, state):
        # The pass raised before start_response: nothing was written and
        # requests[0] is still held, unclosed (see internals.py, point 3).
        self._suspended_state = state
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
        self.readable = self._detached_readable
        self.handle_read = self._detached_handle_read
        self.last_activity = time.time()
        get_runtime().metrics.suspend()
        with _detached_lock:
            _detached.add(self)
        job.start()
        # Wake the main loop: readable() changed.
        self.server.pull_trigger()

    def _attach(self):
        self.detached = None
        self.__dict__.pop("readable", None)
        self.__dict__.pop("handle_read", None)
        with _detached_lock:
            _detached.discard(self)
        get_runtime().metrics.resume()

    def refuse(self, reason):
        """Answer the detached request with a 503 instead of its next pass
        (a graceful shutdown whose grace is over). Any thread."""
        detached = self.detached
        if isinstance(detached, StreamJob):
            detached.refuse(reason)
        elif detached is not None:
            self._suspended_state.unavailable = reason
            detached.cancel(reason)

    # Called by whichever thread finishes the detached work.

    def _resume(self, state, outcomes):
        state.record(outcomes)
        self.resumed_state = state
        self._suspended_state = None
        self._attach()
        # Through the gate, so a burst of resumed requests cannot queue
        # ahead of every fresh one (fairness.py).
        self._gated = True
        gate_for(self.server, get_runtime().settings.resume_slots).resume(self)

    def _stream_done(self, job):
        self.completed_stream = job.task
        self._attach()
        self.server.add_task(self)
