"""The task that publishes one pass of a request.

Runs on: a waitress worker thread, inside ``FuturesChannel.service()``.
"""

from ..core.body import unavailable
from ..interfaces import (
    HANDOFF_KEY, STATE_KEY, SUSPEND_KEY, RefuseRequest, StreamHandoff)
from ..runtime import get_runtime
from .internals import WSGITask
from .streaming import set_response


class FuturesTask(WSGITask):
    """A WSGITask whose environ says "this server can suspend, and take a
    stream over" and, from the second pass on, carries the request's
    futures and a rewound body (from the channel's ``served`` record)."""

    def service(self):
        served = self.channel.served
        if served is not None and served.stream_task is not None:
            # This request's stream was written by a side thread; this task
            # only lets the stock HTTPChannel.service() finish the request
            # (pop and close it, serve the next pipelined one).
            self.close_on_finish = served.stream_task.close_on_finish
            return
        if served is not None and served.state.unavailable:
            self.unavailable(served.state.unavailable)
            return
        try:
            super().service()
        except StreamHandoff as handoff:
            handoff.task = self  # the channel streams into this task
            raise
        except RefuseRequest as refusal:
            # Nothing was written (raised before start_response): the 503
            # goes out from here, past every error view of the site.
            self.unavailable(refusal.reason)

    def unavailable(self, reason):
        """Answer 503 without publishing (internals.py, point 7)."""
        self.start()
        prepared = unavailable(reason, get_runtime().settings.retry_after)
        set_response(self, prepared.status, prepared.headers)
        self.complete = True
        for chunk in prepared.chunks:
            self.write(chunk)
        self.finish()

    def get_environment(self):
        if self.environ is not None:
            return self.environ
        environ = super().get_environment()
        environ[SUSPEND_KEY] = "waitress"
        # The one frame whose iteration may hand a stream over: the stock
        # execute()'s own loop over the application's result (point 9).
        environ[HANDOFF_KEY] = WSGITask.execute.__code__
        served = self.channel.served
        if served is not None and served.state is not None:
            environ[STATE_KEY] = served.state
            # Pass 1 read the body; waitress keeps it (seekable) until the
            # request is closed, so the next pass reads it again from 0.
            environ["wsgi.input"].seek(0)
        return environ
