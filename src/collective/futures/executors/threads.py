"""The ``threads`` executor (the default), and the pool that writes
handed-off streams.

Runs on: ``collective.futures-worker-N`` threads (promises) and
``collective.futures-stream-N`` threads (streams, which write through
waitress's thread-safe output buffer). None touches a socket, the ZODB or a
Zope request: the runtime submits each promise wrapped in the sandbox.
"""

import threading

from .base import BoundedPool


class ThreadExecutor(BoundedPool):
    """A bounded pool of named daemon threads returning standard Futures.
    Threads start on demand up to ``max_workers`` and retire after
    ``idle_seconds`` without work; work beyond the bound waits in the
    queue, where ``Future.cancel()`` can still drop it."""

    def __init__(self, max_workers, name="collective.futures-worker",
                 idle_seconds=60.0, max_queue=None, queue_setting="max_queue"):
        super().__init__(max_workers, name, max_queue=max_queue,
                         idle_seconds=idle_seconds, queue_setting=queue_setting)

    def _start_worker(self, number):
        thread = threading.Thread(target=self._work, daemon=True,
                                  name=f"{self.name}-{number}")
        thread.start()
        return thread, thread

    def _work(self):
        try:
            while True:
                taken = self._take()
                if taken is None:
                    return
                future, (fn, args, kwargs) = taken
                if not future.set_running_or_notify_cancel():
                    continue
                # A catch-all: whatever fn raises, even SystemExit, ends up
                # in its future and never kills this thread.
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
                del future, fn, args, kwargs, taken
        finally:
            self._gone()
