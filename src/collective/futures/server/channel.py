"""The connection: detaches a request from its worker while its promises
run (a suspended request) or while a side thread writes it (a handed-off
stream), and serves it again when that is over.

Three kinds of thread use a channel:

* ASYNCHRONOUS methods run on the server's main loop (the only thread that
  touches the socket): ``handle_close``, and while a request is detached
  ``readable`` and ``handle_read`` (set on the instance then).
* SYNCHRONOUS methods run on a waitress worker thread: ``service``, which
  detaches.
* COMPLETION runs on whichever thread ends the detached job (a round's last
  promise, the deadline thread, the main loop on a hang-up, the shutdown
  thread): ``_job_done``, which re-queues the channel with
  ``server.add_task``. A handed-off stream's thread writes its response
  through the task (``write_soon``, waitress's thread-safe output buffer);
  no side thread ever touches the socket itself.

What crosses those threads is one :class:`Detachment` record, handed over
under the channel's ``_handover`` lock: ``detached`` while the job runs,
``_next`` once it is over and until the next ``service()`` takes it. As in
stock waitress, one ``service()`` per channel serves the request: a
detached channel is neither queued nor served until its job is done.
"""

import logging
import threading
import time
import weakref

from ..core.descriptors import connection_bound, soft_limit
from ..interfaces import StreamHandoff, SuspendRequest
from ..runtime import get_runtime
from .fairness import gate_for
from .internals import HTTPChannel
from .loop import QUIET
from .streaming import StreamJob
from .task import FuturesTask


logger = logging.getLogger("collective.futures")

# Channels whose request is detached now, for a graceful shutdown.
_detached = weakref.WeakSet()
_detached_lock = threading.Lock()


def bound_connections(adj):
    """Lower the server's ``connection_limit`` (once, at its first
    connection) so that its connections cannot take the descriptors the
    rest of the process needs: past it waitress stops accepting until
    connections close, instead of failing accept() with EMFILE, which
    spins the main loop and floods the log."""
    adj._futures_bounded = True
    reserve = get_runtime().settings.descriptor_reserve
    bound = connection_bound(reserve)
    if bound is not None and adj.connection_limit > bound:
        logger.warning(
            "collective.futures lowered waitress's connection_limit from %d "
            "to %d: this process may open %d files (ulimit -n) and keeps "
            "descriptor_reserve %d for the rest", adj.connection_limit, bound,
            soft_limit(), reserve)
        adj.connection_limit = bound


def detached_channels():
    with _detached_lock:
        return list(_detached)


class Detachment:
    """One detached request: the job it waits for (an IDetachedJob) and
    what the next ``service()`` needs once that is over: the request's
    futures (a suspended request) or the task a stream was written through
    (a handed-off stream)."""

    __slots__ = ("job", "state", "stream_task", "gated")

    def __init__(self, state=None, stream_task=None):
        self.job = None
        self.state = state
        self.stream_task = stream_task
        #: The resumed request holds a slot of the fairness gate.
        self.gated = False


class FuturesChannel(HTTPChannel):
    task_class = FuturesTask

    #: The :class:`Detachment` whose job runs now, or None.
    detached = None
    #: The :class:`Detachment` whose job is over, for the next service().
    _next = None
    #: The :class:`Detachment` the running service() took, for its task
    #: (read on that worker thread while the task runs).
    served = None
    #: A worker runs this channel's service() now (guarded by _handover).
    _in_service = False
    #: A handed-off stream runs: the channel is quiet (loop.py) but for
    #: what its writers leave in the output buffer (write_soon).
    _streaming = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not getattr(self.adj, "_futures_bounded", False):
            bound_connections(self.adj)
        # Guards detached, _next and served: set by the worker that
        # detaches, ended by the thread that ends the job, read by the main
        # loop (hang-up) and the shutdown thread (refuse).
        self._handover = threading.Lock()

    # ASYNCHRONOUS METHODS (main loop)
    #
    # While a request is detached, readable() and handle_read() are these
    # two (and, for a stream, handle_write() the third), set on the instance
    # by _detach() and _stream() and removed by _job_done(): the
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
        if not self.connected:
            # The client hung up: drop promises (or the stream's fn) not yet
            # started, abandon running ones; the re-queued service() closes
            # the connection without rendering.
            self._cancel("the client disconnected")

    def received(self, data):
        result = HTTPChannel.received(self, data)
        if self.requests and not self.adj.channel_request_lookahead:
            # A request was parsed and its service() queued: nothing can
            # change here before a worker takes it (readable() is false
            # while a request is held, nothing is buffered), so the main
            # loop need not ask (loop.py). Under the lock service() takes
            # first, so that one already running stays loud.
            with self._handover:
                if (not self._in_service and self.detached is None
                        and not self.total_outbufs_len):
                    QUIET.add(self._fileno)
        return result

    def _streaming_handle_write(self):
        # A handed-off stream's pump parks while waitress's output buffer is
        # past its high-water mark: once the main loop has sent some, wake
        # it (internals.py, point 11).
        HTTPChannel.handle_write(self)
        with self._handover:
            detachment = self.detached
        if detachment is not None:
            detachment.job.drained()

    def add_channel(self, map=None):
        super().add_channel(map)
        QUIET.touch(self._fileno)  # the loop learns of it without a scan

    def del_channel(self, map=None):
        fd = self._fileno
        super().del_channel(map)
        # Never left quiet, whatever closed it: the number is reused.
        QUIET.discard(fd)
        QUIET.touch(fd)

    def handle_close(self):
        with self._handover:
            detachment = self.detached
        QUIET.discard(self._fileno)  # its number may be reused at once
        super().handle_close()
        if detachment is not None:
            detachment.job.cancel("the connection closed")

    def _cancel(self, reason):
        with self._handover:
            detachment = self.detached
        if detachment is not None:
            # Outside the lock: ending the job calls _job_done.
            detachment.job.cancel(reason)

    def writable(self):
        # Stock writable() is true whenever output is buffered, but while a
        # request is held (served by a worker, or detached) handle_write()
        # sends only from send_bytes on, and only if it gets outbuf_lock at
        # once: otherwise poll() returns at once (the socket is writable)
        # for a handle_write() that does nothing, iteration after
        # iteration, and the spinning loop takes the GIL from the very
        # thread that holds the lock (issue 11, item 8). Whoever leaves
        # bytes that handle_write() would send pulls the trigger: service()
        # once it pops the request, write_soon() (below) once it lets the
        # lock go (internals.py, point 11).
        if self.will_close or self.close_when_flushed:
            return True
        pending = self.total_outbufs_len
        if not pending:
            return False
        if not self.requests:
            return True
        if pending < self.adj.send_bytes:
            return False
        if pending > self.adj.outbuf_high_watermark:
            # A writer waits for room, with the lock released.
            return True
        lock = self.outbuf_lock
        if lock.acquire(False):
            lock.release()
            return True
        return False

    # SYNCHRONOUS METHODS (worker thread)

    def write_soon(self, data):
        # A worker's or a stream thread's write, which flushes what it can
        # itself, with outbuf_lock held. writable() was false meanwhile:
        # wake the main loop if bytes it would send are left.
        written = super().write_soon(data)
        if self.total_outbufs_len >= self.adj.send_bytes and self.connected:
            if self._streaming:
                # A quiet stream's answers changed: the loop asks once more.
                QUIET.add(self._fileno)
            self.server.pull_trigger()
        return written

    def service(self):
        with self._handover:
            served, self._next = self._next, None
            self.served = served  # for this service()'s task
            # Loud from now on: this service() may write (loop.py).
            self._in_service = True
            QUIET.discard(self._fileno)
        try:
            super().service()
        except SuspendRequest as suspension:
            self._suspend(suspension.state)
        except StreamHandoff as handoff:
            self._stream(handoff.task, handoff.stream)
        finally:
            with self._handover:
                # Let the results go with the request (a keep-alive
                # connection must not hold them), unless the next service()
                # already took its own: a job that ends inside start()
                # re-queues the channel before this one has returned.
                if self.served is served:
                    self.served = None
                    self._in_service = False
            if served is not None and served.gated:
                gate_for(self.server, get_runtime().settings.resume_slots).done()

    def _suspend(self, state):
        # The pass raised before start_response: nothing was written and
        # requests[0] is still held, unclosed (see internals.py, point 3).
        detachment = Detachment(state=state)
        detachment.job = get_runtime().make_round(
            state.take_pending(),
            on_done=lambda outcomes: self._job_done(detachment, outcomes))
        self._detach(detachment, quiet=True)

    def _stream(self, task, stream):
        # start_response was called (status and headers stored on the task,
        # nothing written) and requests[0] is still held (point 9).
        detachment = Detachment(stream_task=task)
        detachment.job = StreamJob(
            self, task, stream, on_done=lambda job: self._job_done(detachment))
        self.handle_write = self._streaming_handle_write
        # Quiet (loop.py) while it runs: thousands of streams waiting for
        # their fn must not be asked on every iteration. What changes its
        # answers is its own socket's events (read here) and its writers'
        # bytes, which write_soon() reports.
        self._streaming = True
        self._detach(detachment, quiet=True)

    def _detach(self, detachment, quiet=False):
        with self._handover:
            self.detached = detachment
        if get_runtime().settings.watch_hangups:
            # Else stock readable() (False while requests[0] is held): a
            # half-closed client is answered; a hang-up is noticed when
            # the response is written (internals.py, point 4).
            self.readable = self._detached_readable
            self.handle_read = self._detached_handle_read
        self.last_activity = time.time()
        get_runtime().metrics.suspend()
        with _detached_lock:
            _detached.add(self)
        if quiet:
            # Nothing to send until the round ends (or a stream's writer
            # says so): the main loop stops asking this channel (loop.py).
            QUIET.add(self._fileno)
        # The job may end inside start() (every promise refused at once);
        # _job_done then re-queues the channel, which is why nothing here
        # touches the channel after it.
        detachment.job.start()
        # Wake the main loop: readable() changed.
        self.server.pull_trigger()

    # ANY THREAD

    def refuse(self, reason):
        """Answer the detached request with a 503 instead of its next pass
        (a graceful shutdown whose grace is over). A job that is already
        over is left as it ended."""
        with self._handover:
            detachment = self.detached
        if detachment is not None:
            # Outside the lock: refusing ends the job, which calls _job_done.
            detachment.job.refuse(reason)

    # COMPLETION (the thread that ends the job)

    def _job_done(self, detachment, outcomes=None):
        state = detachment.state
        if state is not None:
            state.record(outcomes)
            if detachment.job.refusal is not None:
                state.unavailable = detachment.job.refusal
            detachment.gated = True
        with self._handover:
            self.detached = None
            self._next = detachment
        self.__dict__.pop("readable", None)
        self.__dict__.pop("handle_read", None)
        self.__dict__.pop("handle_write", None)
        with _detached_lock:
            _detached.discard(self)
        get_runtime().metrics.resume()
        if state is None:
            # A stream's: loud again, as service() will be.
            self._streaming = False
            QUIET.discard(self._fileno)
            self.server.add_task(self)
            return
        # Still quiet (loop.py): nothing to send before service() runs,
        # which makes it loud; no longer read (readable() is stock again),
        # which the loop learns by asking once more.
        QUIET.add(self._fileno)
        # Through the gate, so a burst of resumed requests cannot queue
        # ahead of every fresh one (fairness.py).
        gate_for(self.server, get_runtime().settings.resume_slots).resume(self)
