"""A handed-off stream: ``fn`` runs and its output is written to the client
from a side thread, through waitress's thread-safe output buffer.

Runs on: a side-pool thread (``fn`` and the writes), the deadline thread
(504 when nothing came in time) and the main loop (``cancel`` on hang-up).
The first of "first byte", "timed out" and "cancelled" wins, under the
job's lock; the loser discards what it has. Only the side thread writes
after the first byte.

The producer never lets waitress's output buffer grow past its high-water
mark: it waits (bounded by ``channel_timeout``, like an idle connection)
until the main loop has sent enough, so a multi-gigabyte stream keeps memory
flat and costs no Zope worker while it waits.
"""

import logging
import threading
import time

from zope.interface import implementer

from ..core.body import error_prepared, unavailable
from ..core.printable import printable
from ..interfaces import IDetachedJob
from ..runtime import get_runtime
from ..sandbox import promise_context
from .internals import ClientDisconnected


logger = logging.getLogger("collective.futures")
request_log = logging.getLogger("collective.futures.requests")


class StreamStalled(Exception):
    """The client read nothing for ``channel_timeout`` seconds."""


@implementer(IDetachedJob)
class StreamJob:
    """See IDetachedJob: the job of a handed-off stream. ``on_done(job)``
    is called once, when the response is written, refused or abandoned."""

    def __init__(self, channel, task, stream, on_done, runtime=None):
        self.channel = channel
        self.task = task
        self.stream = stream
        self.on_done = on_done
        self.runtime = runtime = runtime or get_runtime()
        # Streams have a pool of their own: a slow reader holds its writer
        # thread for the whole download, and must not starve promises.
        self.executor = runtime.streams
        self.timeout = runtime.settings.timeout
        self.deadlines = runtime.deadlines
        # Guards state and the completion: three threads race for them.
        self._lock = threading.Lock()
        self.state = "pending"   # -> streaming | timed out | cancelled | failed
        self._completed = False
        self._future = None
        self._timer = None
        self.started = time.monotonic()
        self.outcome = None  # for the log line and the metrics
        self.sent = 0        # body bytes handed to waitress

    # Any thread

    def start(self):
        self._timer = self.deadlines.call_later(self.timeout, self._expire)
        try:
            self._future = self.executor.submit(self._run)
        except Exception as exc:  # the stream pool is full, or shut down
            logger.warning("stream %s refused with a 503: %s",
                           self.stream.name, exc)
            self.refuse(str(exc))
        return self

    def cancel(self, reason="cancelled"):
        """The client is gone (main loop)."""
        with self._lock:
            if self.state != "pending":
                return  # streaming: the next write notices the hang-up
            self.state = "cancelled"
        if self._future is not None:
            self._future.cancel()  # not started: fn never runs
        logger.info("stream %s: %s before its first byte", self.stream.name, reason)
        self.task.close_on_finish = True
        self._complete()

    def refuse(self, reason):
        """503 (with Retry-After) if nothing was sent yet: the server is
        stopping, or the stream pool is full."""
        with self._lock:
            if self.state != "pending":
                return  # streaming: it ends when the process does
            self.state = "refused"
        if self._future is not None:
            self._future.cancel()
        self._send_error(unavailable(reason, self.runtime.settings.retry_after))

    def _expire(self):
        """Deadline thread: fn produced no first byte within timeout."""
        with self._lock:
            if self.state != "pending":
                return
            self.state = "timed out"
        logger.error("stream %s produced nothing within %g s: 504",
                     self.stream.name, self.timeout)
        self._send_error(error_prepared(504, "Gateway Timeout"))

    # Side-pool thread

    def _run(self):
        # fn and the iteration of its output: no request, no user.
        with promise_context():
            self._produce()

    def _produce(self):
        stream, task = self.stream, self.task
        try:
            result = stream.call()
            prepared = stream.prepare(result, task.status,
                                      list(task.response_headers))
        except Exception:
            with self._lock:
                if self.state != "pending":
                    return
                self.state = "failed"
            logger.exception("stream %s raised before its first byte: 500",
                             stream.name)
            self._send_error(error_prepared(500, "Internal Server Error"))
            return
        with self._lock:
            if self.state != "pending":
                late = True
            else:
                late = False
                self.state = "streaming"
        if late:
            prepared.close()  # timed out or client gone: discard the output
            return
        if self._timer is not None:
            self._timer.cancel()
        try:
            self._send(prepared)
        finally:
            self._complete()

    def _send(self, prepared):
        task = self.task
        try:
            set_response(task, prepared.status, prepared.headers)
            for chunk in prepared.chunks:
                self._wait_for_room()
                task.write(chunk)
                self.sent += len(chunk)
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
        except (ClientDisconnected, StreamStalled) as exc:
            logger.info("stream %s stopped: %s", self.stream.name,
                        "the client disconnected" if isinstance(
                            exc, ClientDisconnected) else exc)
            task.close_on_finish = True
            self.outcome = "client gone"
        except Exception:
            # Mid-stream: the status line is gone, so the only honest signal
            # left is a connection closed before the body is complete.
            logger.exception("stream %s raised after its first byte: the "
                             "response is truncated", self.stream.name)
            task.close_on_finish = True
            self.outcome = "truncated"
        finally:
            try:
                prepared.close()
            except Exception:
                logger.exception("closing the output of stream %s failed",
                                 self.stream.name)

    def _wait_for_room(self):
        """Wait until waitress's output buffer is below its high-water mark,
        for at most channel_timeout seconds without progress."""
        channel = self.channel
        high = channel.adj.outbuf_high_watermark
        if channel.total_outbufs_len <= high:
            return
        patience = channel.adj.channel_timeout
        deadline = time.monotonic() + patience
        last = channel.total_outbufs_len
        with channel.outbuf_lock:
            while channel.connected and channel.total_outbufs_len > high:
                now = time.monotonic()
                if channel.total_outbufs_len < last:
                    last, deadline = channel.total_outbufs_len, now + patience
                if now >= deadline:
                    raise StreamStalled(
                        f"the client read nothing for {patience:g} s")
                channel.server.pull_trigger()
                # Why wait: the main loop sends, then notifies this
                # condition; bounded so the stall deadline is checked.
                channel.outbuf_lock.wait(min(1.0, deadline - now))
        if not channel.connected:
            raise ClientDisconnected

    # Completion

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
        if self._timer is not None:
            self._timer.cancel()
        self.runtime.metrics.stream_done(outcome)
        task = self.task
        request_log.info(
            "%s %s: stream %s %s: %s, %d bytes in %.3fs",
            printable(task.request.command), printable(task.request.path),
            self.stream.name,
            self.stream.promise.executor, outcome, self.sent,
            time.monotonic() - self.started)
        self.on_done(self)


def set_response(task, status, headers):
    """Replace the status and headers a waitress task will send, before its
    first write (internals.py, point 7)."""
    task.status = status
    task.response_headers = list(headers)
    task.content_length = None
    for name, value in headers:
        if name.lower() == "content-length":
            task.content_length = int(value)
