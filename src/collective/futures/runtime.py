"""The process's runtime: one :class:`~.core.runtime.Runtime`, wired with
Zope's sandbox.

Runs on: any thread. ``configure()`` is called once at Zope startup with the
validated ``<product-config collective.futures>``; code that runs without a
Zope startup (test layers, scripts) gets the defaults on first use.
"""

import threading

from .core.runtime import Runtime
from . import sandbox


__all__ = ["get_runtime", "configure"]

# Guards _runtime: the first request and Zope's startup may race for it.
_lock = threading.Lock()
_runtime = None


def get_runtime():
    """The process's runtime, created with default settings on first use."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = Runtime(sandbox=sandbox)
            _runtime.start_sampling()
        return _runtime


def configure(settings):
    """Replace the process's runtime with one built from ``settings``; the
    old one's executors and deadline thread are shut down."""
    global _runtime
    runtime = Runtime(settings, sandbox=sandbox)
    runtime.check_factories()
    runtime.start_sampling()
    with _lock:
        old, _runtime = _runtime, runtime
    if old is not None:
        old.shutdown()
    return runtime
