"""Zope startup: read ``<product-config collective.futures>``, build the
runtime, enable suspension under waitress, and say which mode is active.

Runs on: the main thread, once, while Zope starts (``IProcessStarting``),
before ``runwsgi`` creates the waitress server.
"""

import logging

from App.config import getConfiguration

from .. import runtime, server
from ..core.descriptors import raise_soft_limit
from ..server.drain import Drain
from ..settings import Settings


logger = logging.getLogger("collective.futures")


def product_config():
    """The raw ``<product-config collective.futures>`` mapping (or {})."""
    config = getattr(getConfiguration(), "product_config", None) or {}
    return config.get("collective.futures") or {}


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
    if settings.suspend and server.install():
        from ..server.channel import detached_channels
        Drain(detached_channels).install()
        mode = ("suspend mode under waitress %s (the worker thread is freed "
                "while promises run); wait mode under other servers"
                % server.internals.WAITRESS_VERSION)
    else:
        mode = ("wait mode (promises run concurrently while the worker "
                "thread waits)")
    _add_control_panel_tab()
    logger.info(
        "collective.futures ready: %s; max_workers=%d timeout=%gs "
        "max_passes=%d", mode, settings.max_workers, settings.timeout,
        settings.max_passes)


def _add_control_panel_tab():
    # A patch: the Control Panel's tabs are a class attribute with no
    # registration hook. One tab, added once.
    from App.ApplicationManager import ApplicationManager
    tab = {"label": "Futures", "action": "manage_futures"}
    if tab not in ApplicationManager.manage_options:
        ApplicationManager.manage_options = (
            tuple(ApplicationManager.manage_options) + (tab,))
