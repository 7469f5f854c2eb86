"""The process-wide runtime: settings, the side pool and the deadlines.

One per process. ``configure()`` is called once at Zope startup with the
validated ``<product-config collective.futures>``; code that runs without a
Zope startup (test layers, scripts) gets the defaults on first use.
"""

import logging
import threading
import time

from .rounds import Round
from .settings import Settings
from .sidepool import Deadlines, SidePool


logger = logging.getLogger("collective.futures")


class Runtime:
    """Settings plus the executors that run promises, shared by all requests."""

    def __init__(self, settings=None, executor=None, deadlines=None,
                 clock=time.monotonic):
        self.settings = settings or Settings()
        self.clock = clock
        self.executor = executor or SidePool(self.settings.max_workers)
        self.deadlines = deadlines or Deadlines(clock)

    def make_round(self, promises, on_done=None):
        """A Round for ``promises``, not started; its deadline is
        ``timeout`` seconds from now."""
        timeout = self.settings.timeout
        return Round(
            promises, self.executor, self.deadlines.call_at,
            deadline=self.clock() + timeout, timeout=timeout,
            on_done=on_done,
        )

    def start_round(self, promises, on_done=None):
        """Run ``promises`` concurrently now; see :meth:`make_round`."""
        return self.make_round(promises, on_done).start()

    def shutdown(self):
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.deadlines.stop()


_lock = threading.Lock()
_runtime = None


def get_runtime():
    """The process's runtime, created with default settings on first use."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = Runtime()
        return _runtime


def configure(settings):
    """Replace the process's runtime with one built from ``settings``."""
    global _runtime
    with _lock:
        old, _runtime = _runtime, Runtime(settings)
    if old is not None:
        old.shutdown()
    return _runtime
