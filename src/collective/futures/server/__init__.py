"""waitress glue: serve suspendable requests.

:func:`install` makes every waitress server created afterwards in this
process use :class:`~.channel.FuturesChannel` and a ``poll()`` main loop
(``epoll`` where there is one, see ``loop.py``). Zope's ``runwsgi`` loads the
application (and so Zope's startup, where this is called) before it creates
the server, which is why the stock ``zope.ini`` needs no change.
"""

import logging

from . import internals
from .loop import LoopModule


logger = logging.getLogger("collective.futures")

#: waitress's own default, for uninstall().
_STOCK_USE_POLL = internals.Adjustments.asyncore_use_poll
#: What servers read as self.asyncore once installed.
_LOOP = LoopModule()


def install():
    """Use FuturesChannel, and a poll() main loop unless zope.ini says
    otherwise, for waitress servers created from now on.

    Returns True when installed (or already installed); False, with a
    warning logged, when this waitress is not one the glue supports or
    another package already replaced the channel class.
    """
    from .channel import FuturesChannel

    server_class = internals.BaseWSGIServer
    current = server_class.channel_class
    if current is FuturesChannel:
        return True
    problems = internals.check()
    if current is not internals.HTTPChannel:
        problems.append(
            f"waitress's channel class is already replaced by "
            f"{current.__module__}.{current.__qualname__}")
    if problems:
        logger.warning(
            "collective.futures cannot suspend requests under this waitress "
            "(%s); futures will wait in the worker thread instead",
            "; ".join(problems))
        return False
    # A patch, because waitress offers channel_class only as a class
    # attribute and runwsgi creates the server after the app is loaded,
    # with no hook in between. One attribute, set once.
    server_class.channel_class = FuturesChannel
    # The second and last patch, for the same reason (internals.py, point
    # 10): a detached request keeps its connection, and usually an upstream
    # one, while no worker holds it, so this server holds far more
    # descriptors than its threads suggest; waitress's default select()
    # loop dies (ValueError, the process exits) at the first descriptor
    # numbered 1024 or more, whatever ulimit -n says. poll() has no such
    # limit. An asyncore_use_poll given in zope.ini still decides.
    internals.Adjustments.asyncore_use_poll = True
    # The third: the main loop (internals.py, point 12), which keeps its
    # epoll registrations instead of asking every connection on every
    # iteration (loop.py). Used only where waitress would poll.
    for cls in internals.SERVER_CLASSES:
        cls.asyncore = _LOOP
    return True


def when_serving(callback):
    """Call ``callback([(host, port), ...])`` once, when the first server
    created after :func:`install` starts its main loop (the addresses it
    listens on; a Unix socket has none)."""
    from .loop import SERVING
    SERVING.append(callback)


def uninstall():
    """Undo :func:`install` (for tests and embedding)."""
    internals.BaseWSGIServer.channel_class = internals.HTTPChannel
    internals.Adjustments.asyncore_use_poll = _STOCK_USE_POLL
    for cls in internals.SERVER_CLASSES:
        cls.asyncore = internals.wasyncore
