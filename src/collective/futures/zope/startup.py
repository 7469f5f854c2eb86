"""Zope startup: read ``<product-config collective.futures>``, build the
runtime, enable suspension under waitress, and say which mode is active.

Runs on: the main thread, once, while Zope starts (``IProcessStarting``),
before ``runwsgi`` creates the waitress server.
"""

import logging
import os

from App.config import getConfiguration

from .. import runtime, server
from ..core.descriptors import raise_soft_limit
from ..server.drain import Drain
from ..settings import Settings, from_environment


logger = logging.getLogger("collective.futures")


def product_config():
    """The raw ``<product-config collective.futures>`` mapping (or {}),
    with the COLLECTIVE_FUTURES_* environment variables over it."""
    config = getattr(getConfiguration(), "product_config", None) or {}
    return {**(config.get("collective.futures") or {}), **from_environment(os.environ)}


def process_starting(event):
    """IProcessStarting subscriber. A bad option stops startup with a
    ConfigurationError naming it."""
    settings = Settings.from_mapping(product_config())
    before, after = raise_soft_limit()
    if before != after:
        # Suspended requests and streams hold connections no worker holds.
        logger.info("collective.futures raised the soft limit of open files "
                    "(ulimit -n) from %d to %d", before, after)
    runtime.configure(settings)
    tasks = runtime.configure_tasks(settings, _var_dir(), _declared_periodic())
    drain = None
    if settings.suspend and server.install():
        from ..server.channel import detached_channels
        drain = Drain(detached_channels)
        drain.install()
        mode = ("suspend mode under waitress %s (the worker thread is freed "
                "while promises run); wait mode under other servers"
                % server.internals.WAITRESS_VERSION)
    else:
        mode = ("wait mode (promises run concurrently while the worker "
                "thread waits)")
    if settings.task_consumer:
        _start_consuming(settings, tasks, drain)
    _add_control_panel_tab()
    # Our metrics in prometheus_client's default registry, for a site whose
    # metrics endpoint serves it.
    if settings.metrics_registry:
        runtime.register_metrics()
    logger.info(
        "collective.futures ready: %s; max_workers=%d timeout=%gs "
        "max_passes=%d", mode, settings.max_workers, settings.timeout,
        settings.max_passes)


def _prune_done_records():
    import Zope2
    from .tasks import prune_done_records, record_keep
    pruned = prune_done_records(Zope2.DB, record_keep(runtime.get_tasks().settings))
    if pruned:
        logger.info("forgot %d record(s) of background tasks done long ago", pruned)


def _declared_periodic():
    """The periodic tasks of ``<futures:periodic>`` (ZCML is loaded by now)."""
    from zope.component import getUtilitiesFor
    from ..interfaces import IPeriodicTask
    return [task for _, task in getUtilitiesFor(IPeriodicTask)]


def _var_dir():
    config = getConfiguration()
    return getattr(config, "clienthome", None) or os.path.join(
        getattr(config, "instancehome", "."), "var")


def _start_consuming(settings, tasks, drain):
    """Consume tasks: at once when ``task_url`` names the address, else
    once waitress listens (its address is known only then). The
    housekeeping also prunes the ZODB's record of done tasks."""
    tasks.housekeepers.append(_prune_done_records)
    if drain is not None:
        # SIGTERM: take no new task; a task running then is cut with the
        # process, and delivered again once its lease expires.
        drain.on_drain.append(lambda: tasks.stop(timeout=0.0))
    if settings.task_url:
        tasks.start_consumer(settings.task_url)
        return
    if drain is None:
        logger.error(
            "task_consumer is on, but this instance's address is not known "
            "(not served by collective.futures' waitress glue: suspend off, or "
            "another server); set task_url; no task is consumed")
        return

    def serving(addresses):
        if not addresses:
            logger.error("task_consumer is on, but waitress listens on no TCP "
                         "address; set task_url; no task is consumed")
            return
        host, port = addresses[0]
        # Listening everywhere: the loopback is one address of it (waitress
        # binds "::" to IPv6 only).
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
        host = f"[{host}]" if ":" in host else host
        tasks.start_consumer(f"http://{host}:{port}")

    server.when_serving(serving)


def _add_control_panel_tab():
    # A patch: the Control Panel's tabs are a class attribute with no
    # registration hook. One tab, added once.
    from App.ApplicationManager import ApplicationManager
    tab = {"label": "Futures", "action": "manage_futures"}
    if tab not in ApplicationManager.manage_options:
        ApplicationManager.manage_options = (
            tuple(ApplicationManager.manage_options) + (tab,))
