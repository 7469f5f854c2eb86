"""Graceful shutdown: on SIGTERM or SIGINT, answer every detached request
(suspended, or a stream not yet started) before the process goes.

Runs on: the signal handler (the main thread, briefly) starts the
``collective.futures-shutdown`` thread, which drains:

1. new suspensions are refused (503 with ``Retry-After``);
2. suspended requests and streams get ``shutdown_grace`` seconds to finish
   normally (their promises run, their last pass renders);
3. those still suspended then are answered 503 (streams that have not sent
   a byte too; a stream already sending is cut when the process ends);
4. once those answers are flushed (at most 5 s more), the signal is
   delivered again to the handler that was there before (waitress stops on
   SIGINT, the process ends on SIGTERM).

A second signal while draining skips the wait.
"""

import logging
import os
import signal
import threading
import time

from ..runtime import get_runtime


logger = logging.getLogger("collective.futures")

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Drain:
    def __init__(self, channels, sleep=time.sleep, clock=time.monotonic,
                 runtime=None):
        """``channels()`` lists the channels whose request is detached;
        ``runtime`` is the process's unless given."""
        self.channels = channels
        self.runtime = runtime
        self.sleep = sleep
        self.clock = clock
        self.previous = {}
        self.thread = None
        self.signum = None
        self.finished = False
        #: Called (no arguments) when the drain starts: the task consumer
        #: stops taking tasks.
        self.on_drain = []

    def install(self):
        """Take over SIGTERM and SIGINT (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            logger.warning("graceful shutdown not installed: not on the main thread")
            return False
        for signum in SIGNALS:
            self.previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)
        return True

    def _handle(self, signum, frame):
        # Main thread, between two bytecodes of whatever it was doing.
        if self.finished:
            return self._chain(signum, frame)
        if self.thread is not None:
            logger.warning("second %s: stopping now", signal.Signals(signum).name)
            return self._chain(signum, frame)
        self.signum = signum
        self.thread = threading.Thread(target=self.run, name="collective.futures-shutdown",
                                       daemon=True)
        self.thread.start()

    def run(self):
        try:
            self._drain()
        except Exception:
            logger.exception("draining failed; stopping anyway")
        finally:
            # Whatever happened, the signal must still stop the process.
            self.finished = True
            if self.signum is not None:
                # Back to the main thread: _handle chains to the old handler.
                os.kill(os.getpid(), self.signum)

    def _drain(self):
        runtime = self.runtime or get_runtime()
        runtime.draining = True
        for callback in self.on_drain:
            try:
                callback()
            except Exception:
                logger.exception("a drain callback failed")
        grace = runtime.settings.shutdown_grace
        watched = {}  # channel -> the request it was holding
        self._watch(watched)
        logger.info("%s: draining %d suspended request(s) within %g s",
                    signal.Signals(self.signum).name if self.signum else "shutdown",
                    len(watched), grace)
        deadline = self.clock() + grace
        # Why wait: suspended requests finish on other threads; poll until
        # every one is answered or the grace period is over.
        while not self._answered(watched) and self.clock() < deadline:
            self.sleep(0.1)
            self._watch(watched)
        late = self.channels()
        for channel in late:
            channel.refuse("the server is shutting down")
        if late:
            logger.warning("answered %d request(s) still suspended after %g s "
                           "with a 503", len(late), grace)
        flush_deadline = self.clock() + 5.0
        while not self._answered(watched) and self.clock() < flush_deadline:
            self.sleep(0.05)
        logger.info("drained; stopping")

    def _watch(self, watched):
        for channel in self.channels():
            requests = channel.requests
            if channel not in watched and requests:
                watched[channel] = requests[0]

    @staticmethod
    def _answered(watched):
        """Every watched request answered: written out (or its client gone)
        and no longer held by its connection."""
        for channel, request in watched.items():
            if not channel.connected:
                continue
            requests = channel.requests
            if (channel.detached is not None or channel.total_outbufs_len
                    or (requests and requests[0] is request)):
                return False
        return True

    def _chain(self, signum, frame):
        """Do what the signal did before we took it over (main thread)."""
        previous = self.previous.get(signum, signal.SIG_DFL)
        if callable(previous):
            return previous(signum, frame)
        if previous == signal.SIG_IGN:
            return None
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return None
