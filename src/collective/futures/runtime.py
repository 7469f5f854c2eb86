"""The process's runtime: one :class:`~.core.runtime.Runtime`, wired with
Zope's sandbox.

Runs on: any thread. ``configure()`` is called once at Zope startup with the
validated ``<product-config collective.futures>``; code that runs without a
Zope startup (test layers, scripts) gets the defaults on first use.
"""

import threading

from .core.runtime import Runtime
from . import sandbox


__all__ = ["get_runtime", "configure", "get_tasks", "configure_tasks",
           "metrics_snapshot", "register_metrics"]

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


# Background tasks: one TaskService per process, made at startup from the
# same settings (or with the defaults on first use, var/ being the
# current directory's then).
_tasks = None


def get_tasks():
    """The process's TaskService."""
    global _tasks
    with _lock:
        if _tasks is None:
            from .settings import Settings
            from .tasks.service import TaskService
            _tasks = TaskService(Settings(), ".")
        return _tasks


def configure_tasks(settings, var_dir, declared=()):
    """Replace the process's TaskService with one built from ``settings``
    (a relative SQLite path lives in ``var_dir``) and the periodic tasks
    ``declared`` in ZCML; the old one stops."""
    global _tasks
    from .tasks.service import TaskService
    service = TaskService(settings, var_dir, declared)
    with _lock:
        old, _tasks = _tasks, service
    if old is not None:
        old.stop(timeout=0.0)
    return service


def metrics_snapshot():
    """Everything ``@@futures-metrics`` and the Prometheus collector show:
    the runtime's snapshot with the task service's under ``"tasks"``, whose
    backend gets ``FIGURES_DEADLINE`` seconds to answer (a scrape must
    answer within its own timeout)."""
    from .tasks.service import FIGURES_DEADLINE
    runtime = get_runtime()
    data = runtime.metrics.snapshot(runtime)
    data["tasks"] = get_tasks().snapshot(deadline=FIGURES_DEADLINE)
    return data


# The registries our collector is in (each once), guarded by _lock.
_registered = []


def register_metrics(registry=None):
    """Put the package's collector into prometheus_client's default
    registry (or ``registry``), once per process: an endpoint of the site's
    that serves that registry shows our metrics with no step of its own.
    Each collection reads the process's runtime and task service as they
    are then. Returns False (and logs why) if the registry refused it."""
    from prometheus_client import REGISTRY
    from .exposition import SnapshotCollector
    registry = REGISTRY if registry is None else registry
    with _lock:
        if any(r is registry for r in _registered):
            return True
        try:
            registry.register(SnapshotCollector(metrics_snapshot))
        except ValueError as exc:
            # Names taken: another copy of this package registered them.
            import logging
            logging.getLogger("collective.futures").warning(
                "collective.futures' metrics are not in the Prometheus "
                "registry: %s", exc)
            return False
        _registered.append(registry)
        return True
