"""A handed-off stream: ``fn`` runs on its executor, then its output is
written to the client through waitress's thread-safe output buffer, one
step at a time, with no thread held while nothing computes.

Runs on, in turn:

* ``fn``: its executor (a thread of the ``threads`` executor, the asyncio
  loop, a worker process), like any promise. The job waits for it with a
  done-callback, not a thread.
* the output, written chunk by chunk by a *pump*: synchronous output (bytes,
  a file, a generator) on the stream pool (``stream_threads``), asynchronous
  output (an async generator) on the asyncio executor's loop. A pump holds
  its thread only while the output computes its next chunk.
* when waitress's output buffer is past its high-water mark, the pump parks
  (its thread goes back to the pool) and the main loop wakes it once it has
  sent enough (``drained``, from the channel's ``handle_write``); the
  deadline thread ends a pump parked for ``channel_timeout`` seconds with no
  progress (a client that reads nothing).
* the deadline thread (504 when ``fn`` is not done in time) and the main
  loop (``cancel`` on a hang-up).

The first of "fn done", "timed out", "refused" and "cancelled" wins, under
the job's lock; the loser discards what it has. Only the pump writes after
the status line, and only one pump runs at a time: a pump either runs,
or is parked, or has been scheduled by the one that woke it.
"""

import asyncio
import logging
import threading
import time

from zope.interface import implementer

from ..core.body import error_prepared, unavailable
from ..core.printable import printable
from ..executors.asyncio import AsyncioExecutor
from ..interfaces import IDetachedJob
from ..runtime import get_runtime
from ..sandbox import promise_context
from .internals import ClientDisconnected


logger = logging.getLogger("collective.futures")

#: Seconds the generator of an async output gets to close.
ACLOSE_TIMEOUT = 5.0


class StreamStalled(Exception):
    """The client read nothing for ``channel_timeout`` seconds."""


@implementer(IDetachedJob)
class StreamJob:
    """See IDetachedJob: the job of a handed-off stream. ``on_done(job)``
    is called once, when the response is written, refused or abandoned.

    ``stream`` is what the view's response body handed over (IHandedOff):
    an ``AsyncWorkerStreamIterator``, or a page filling its fragments'
    holes (``collective.futures.fragments``)."""

    def __init__(self, channel, task, stream, on_done, runtime=None):
        self.channel = channel
        self.task = task
        self.stream = stream
        self.on_done = on_done
        self.runtime = runtime = runtime or get_runtime()
        # A stream may need longer than its fn's timeout before its first
        # byte (a page filling its holes allows their renderers a grace).
        self.timeout = getattr(stream, "deadline", None) or runtime.settings.timeout
        self.deadlines = runtime.deadlines
        self.clock = runtime.clock
        # Guards state, the completion and parking: the pump, the main
        # loop, the deadline thread and fn's executor race for them.
        self._lock = threading.Lock()
        self.state = "pending"   # -> streaming | timed out | cancelled | failed | refused
        self._admitted = False
        self._completed = False
        self._future = None      # fn's, on its executor
        self._timer = None       # the 504 deadline
        self._prepared = None    # fn's output, once streaming
        self._parked = False     # waiting for room, no thread held
        self._stalled = None     # the StreamStalled the pump raises next
        self._progress = (0, 0.0)  # (bytes buffered, when) at the last park
        self._stall_timer = None
        self.started = time.monotonic()
        self.refusal = None
        self.outcome = None  # for the log line and the metrics
        self.sent = 0        # body bytes handed to waitress

    # Any thread

    def start(self):
        reason = self.runtime.open_stream()
        if reason is not None:
            return self._refused_at_start(reason)
        self._admitted = True
        self._timer = self.deadlines.call_later(self.timeout, self._expire)
        try:
            future = self.stream.start_work(self.runtime)
        except Exception as exc:  # its executor's queue is full, or shut down
            return self._refused_at_start(str(exc))
        with self._lock:
            self._future = future
            pending = self.state == "pending"
        if not pending:
            future.cancel()  # ended while fn was being submitted
        future.add_done_callback(self._computed)
        return self

    def _refused_at_start(self, reason):
        self.refuse(reason, log=True)
        return self

    def cancel(self, reason="cancelled"):
        """The client is gone (main loop)."""
        with self._lock:
            if self.state == "streaming":
                # The pump notices at its next step; a parked one is woken
                # for it, or nothing would ever end it.
                wake = self._parked
                self._parked = False
            elif self.state != "pending":
                return
            else:
                wake = None
                self.state = "cancelled"
        if wake is not None:
            # What still computes the output stops now (a page's fragments
            # not in yet), so that the pump ends at once.
            self.stream.stop_work(self.runtime, None)
            if wake:
                self._schedule()
            return
        self._stop_fn()
        logger.info("stream %s: %s before its first byte", self.stream.name, reason)
        self.task.close_on_finish = True
        self._complete()

    def refuse(self, reason, log=False):
        """503 (with Retry-After) if nothing was sent yet: the server is
        stopping, or a bound is reached."""
        with self._lock:
            if self.state != "pending":
                return  # streaming: it ends when the process does
            self.state = "refused"
        self.refusal = reason
        self._stop_fn()
        prepared, answer = self._instead(
            reason, unavailable(reason, self.runtime.settings.retry_after), "a 503")
        if log:
            logger.warning("stream %s refused with %s: %s", self.stream.name,
                           answer, printable(reason))
        self._send_error(prepared)

    def _expire(self):
        """Deadline thread: fn was not done within timeout."""
        with self._lock:
            if self.state != "pending":
                return
            self.state = "timed out"
        self._stop_fn()
        prepared, answer = self._instead(
            f"not done within {self.timeout:g} s",
            error_prepared(504, "Gateway Timeout"), "504")
        logger.error("stream %s produced nothing within %g s: %s",
                     self.stream.name, self.timeout, answer)
        self._send_error(prepared)

    def _instead(self, reason, prepared, label):
        """``(prepared, label)`` for a refused or late stream: what the
        stream gives instead (a page of fragments, committed already: its
        holes filled with their fallbacks), else ``prepared`` (the 503 or
        504 ``label`` names)."""
        try:
            fallback = self.stream.fallback(reason)
            if fallback is not None:
                return self.stream.prepare(
                    fallback, self.task.status,
                    list(self.task.response_headers)), "its fallback"
        except Exception:
            logger.exception("the fallback of stream %s failed", self.stream.name)
        return prepared, label

    def _stop_fn(self):
        """Drop fn if it has not started; stop it if its executor can."""
        self.stream.stop_work(self.runtime, self._future)

    # fn's executor (the thread that completes its future)

    def _computed(self, future):
        if future.cancelled():
            return  # cancelled, refused or timed out: already answered
        error = future.exception()
        prepared = None
        if error is None:
            try:
                prepared = self.stream.prepare(
                    future.result(), self.task.status, list(self.task.response_headers))
            except Exception as exc:
                error = exc
        with self._lock:
            late = self.state != "pending"
            if not late:
                self.state = "streaming" if error is None else "failed"
        if late:
            if prepared is not None:
                self._discard(prepared)  # timed out or client gone
            return
        if error is not None:
            if prepared is None and future.exception() is None:
                logger.error("stream %s returned output that cannot be sent: "
                             "500", self.stream.name, exc_info=error)
            else:
                logger.error("stream %s raised before its first byte: 500",
                             self.stream.name, exc_info=error)
            self._send_error(error_prepared(500, "Internal Server Error"))
            return
        if self._timer is not None:
            self._timer.cancel()
        set_response(self.task, prepared.status, prepared.headers)
        self._prepared = prepared
        self._schedule()

    def _discard(self, prepared):
        try:
            if prepared.is_async:
                asyncio.run_coroutine_threadsafe(prepared.aclose(), self._loop())
            else:
                prepared.close()
        except Exception:
            logger.exception("closing the late output of stream %s failed",
                             self.stream.name)

    # Pumps

    def _loop(self):
        executor = self.runtime.executor_for("asyncio")
        if not isinstance(executor, AsyncioExecutor):
            raise TypeError("fn returned an async iterable but the asyncio "
                            "executor is not collective.futures' own")
        return executor.loop

    def _schedule(self):
        """Run the pump's next step where the output is iterated."""
        try:
            if self._prepared.is_async:
                future = asyncio.run_coroutine_threadsafe(
                    self._pump_async(), self._loop())
            else:
                # The stream pool, started by the first synchronous output.
                future = self.runtime.streams.submit(self._pump)
        except Exception as exc:  # the pool or the loop is shut down
            self._end(exc)
            return
        future.add_done_callback(self._pump_done)

    def _pump_done(self, future):
        # A pump ends the job itself; this catches what escaped it.
        if not future.cancelled() and future.exception() is not None:
            self._end(future.exception())

    def _pump(self):
        """Stream pool: write chunks while there is room, then park."""
        prepared = self._prepared
        with promise_context():  # the output's code: no request, no user
            try:
                while True:
                    self._check()
                    if not self._has_room():
                        if self._park():
                            return  # the thread goes back to the pool
                        continue
                    try:
                        chunk = next(prepared.chunks)
                    except StopIteration:
                        break
                    self._write(chunk)
            except BaseException as exc:  # noqa: B036 - the output's failure, whatever it is
                self._end(exc)
                return
        self._end(None)

    async def _pump_async(self):
        """The asyncio loop: the same, for asynchronous output."""
        prepared = self._prepared
        try:
            while True:
                self._check()
                if not self._has_room():
                    if self._park():
                        return
                    continue
                try:
                    chunk = await prepared.achunks.__anext__()
                except StopAsyncIteration:
                    break
                self._write(chunk)
        except BaseException as exc:  # noqa: B036 - cancellation included
            await self._aclose(prepared)
            self._end(exc, closed=True)
            return
        await self._aclose(prepared)
        self._end(None, closed=True)

    async def _aclose(self, prepared):
        try:
            await asyncio.wait_for(prepared.aclose(), ACLOSE_TIMEOUT)
        except BaseException:  # noqa: B036 - logged; the response goes on
            logger.exception("closing the output of stream %s failed",
                             self.stream.name)

    def _check(self):
        stalled = self._stalled
        if stalled is not None:
            raise stalled
        if not self.channel.connected:
            raise ClientDisconnected("the client disconnected")

    def _has_room(self):
        return self.channel.total_outbufs_len <= self.channel.adj.outbuf_high_watermark

    def _write(self, chunk):
        self.task.write(chunk)
        self.sent += len(chunk)

    # Parking: no room in waitress's output buffer

    def _park(self):
        """Give the pump's thread back until the main loop has sent enough.
        False: room came meanwhile, go on."""
        now = self.clock()
        with self._lock:
            self._parked = True
            self._progress = (self.channel.total_outbufs_len, now)
        self.channel.server.pull_trigger()  # the main loop sends
        if self._has_room() or not self.channel.connected:
            with self._lock:
                if self._parked:
                    self._parked = False
                    return False
            return True  # the main loop woke it meanwhile: a new pump runs
        self._arm_stall_check(now + self.channel.adj.channel_timeout)
        return True

    def drained(self):
        """Main loop, after sending: wake a parked pump once there is room."""
        if self._parked and self._has_room():
            self._wake()

    def _wake(self):
        with self._lock:
            if not self._parked:
                return
            self._parked = False
        self._schedule()

    def _arm_stall_check(self, when):
        self._stall_timer = self.deadlines.call_at(when, self._stall_check)

    def _stall_check(self):
        """Deadline thread: end a pump parked with no progress for
        channel_timeout seconds."""
        patience = self.channel.adj.channel_timeout
        now = self.clock()
        with self._lock:
            if not self._parked:
                return
            buffered, since = self._progress
            current = self.channel.total_outbufs_len
            if current < buffered:  # the client read some
                self._progress = (current, now)
                since = now
            stalled = now - since >= patience
            if stalled:
                self._stalled = StreamStalled(
                    f"the client read nothing for {patience:g} s")
                self._parked = False
        if stalled:
            self._schedule()
        else:
            self._arm_stall_check(since + patience)

    # Completion

    def _end(self, error, closed=False):
        """The pump is done: finish the response, or cut it short."""
        task, prepared = self.task, self._prepared
        try:
            if error is None:
                if (task.content_length is not None
                        and task.content_bytes_written != task.content_length):
                    logger.warning(
                        "stream %s wrote %d bytes of its Content-Length %d: "
                        "closing the connection", self.stream.name,
                        task.content_bytes_written, task.content_length)
                    task.close_on_finish = True
                    self.outcome = "truncated"
                else:
                    task.finish()
                    self.outcome = "complete"
            else:
                raise error
        except (ClientDisconnected, StreamStalled) as exc:
            logger.info("stream %s stopped: %s", self.stream.name,
                        "the client disconnected" if isinstance(
                            exc, ClientDisconnected) else exc)
            task.close_on_finish = True
            self.outcome = "client gone"
        except BaseException:  # noqa: B036 - the output's failure, whatever it is
            # Mid-stream: the status line is gone, so the only honest signal
            # left is a connection closed before the body is complete.
            logger.exception("stream %s raised after its first byte: the "
                             "response is truncated", self.stream.name)
            task.close_on_finish = True
            self.outcome = "truncated"
        finally:
            if not closed and prepared is not None and not prepared.is_async:
                try:
                    prepared.close()
                except Exception:
                    logger.exception("closing the output of stream %s failed",
                                     self.stream.name)
            self._complete()

    def _send_error(self, prepared):
        task = self.task
        try:
            set_response(task, prepared.status, prepared.headers)
            for chunk in prepared.chunks:
                task.write(chunk)
            task.finish()
        except ClientDisconnected:
            task.close_on_finish = True
        except Exception:
            logger.exception("sending the error response of stream %s failed",
                             self.stream.name)
            task.close_on_finish = True
        finally:
            self._complete()

    def _complete(self):
        with self._lock:
            if self._completed:
                return
            self._completed = True
            outcome = self.outcome or self.state
        for timer in (self._timer, self._stall_timer):
            if timer is not None:
                timer.cancel()
        if self._admitted:
            self.runtime.close_stream()
        try:
            # The stream counts itself and writes the request's log line.
            self.stream.finished(self.runtime, self.task, outcome, self.sent,
                                 time.monotonic() - self.started)
        except Exception:
            logger.exception("recording the end of stream %s failed",
                             self.stream.name)
        # Dropped once done: on_done holds what holds this job, and fn's
        # future keeps its done-callback (this job): cycles only the
        # garbage collector would free.
        on_done, self.on_done, self._future = self.on_done, None, None
        on_done(self)


def set_response(task, status, headers):
    """Replace the status and headers a waitress task will send, before its
    first write (internals.py, point 7)."""
    task.status = status
    task.response_headers = list(headers)
    task.content_length = None
    for name, value in headers:
        if name.lower() == "content-length":
            task.content_length = int(value)
