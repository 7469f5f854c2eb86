"""The task that publishes one pass of a request.

Runs on: a waitress worker thread.
"""

from ..promises import STATE_KEY, SUSPEND_KEY
from ..runtime import get_runtime
from ..stream import StreamHandoff, error_prepared
from .internals import WSGITask
from .streaming import set_response


class FuturesTask(WSGITask):
    """A WSGITask whose environ says "this server can suspend" and, from the
    second pass on, carries the request's futures and a rewound body."""

    def service(self):
        completed = self.channel.completed_stream
        if completed is not None:
            # This request's stream was written by a side thread; this task
            # only lets the stock HTTPChannel.service() finish the request
            # (pop and close it, serve the next pipelined one).
            self.channel.completed_stream = None
            self.close_on_finish = completed.close_on_finish
            return
        state = self.channel.resumed_state
        if state is not None and state.unavailable:
            self.channel.resumed_state = None
            self.unavailable(state.unavailable)
            return
        try:
            super().service()
        except StreamHandoff as handoff:
            handoff.task = self  # the channel streams into this task
            raise

    def unavailable(self, reason):
        """Answer 503 without publishing (internals.py, point 7)."""
        self.start()
        prepared = error_prepared(503, f"Service Unavailable: {reason}")
        retry_after = str(get_runtime().settings.retry_after)
        set_response(self, prepared.status,
                     prepared.headers + [("Retry-After", retry_after)])
        self.complete = True
        for chunk in prepared.chunks:
            self.write(chunk)
        self.finish()

    def get_environment(self):
        if self.environ is not None:
            return self.environ
        environ = super().get_environment()
        environ[SUSPEND_KEY] = "waitress"
        state = self.channel.resumed_state
        if state is not None:
            self.channel.resumed_state = None
            environ[STATE_KEY] = state
            # Pass 1 read the body; waitress keeps it (seekable) until the
            # request is closed, so the next pass reads it again from 0.
            environ["wsgi.input"].seek(0)
        return environ
