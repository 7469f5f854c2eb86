"""The ``<futures:promise>`` and ``<futures:periodic>`` ZCML directives
(namespace ``http://namespaces.zope.org/futures``)."""

from zope.component.zcml import utility
from zope.configuration.fields import GlobalObject
from zope.interface import Interface
from zope.schema import Bool, Float, TextLine
from zope.security.zcml import Permission

from zope.configuration.exceptions import ConfigurationError

from ..interfaces import INamedPromise, IPeriodicTask
from ..settings import BUILTIN_EXECUTORS
from .named import NamedPromise


class IPromiseDirective(Interface):
    name = TextLine(title="Name", description="What restricted code submits")
    handler = GlobalObject(title="The function", required=True)
    permission = Permission(title="Permission needed to submit it", required=True)
    executor = TextLine(title="Executor", required=False)
    shared = Bool(title="Shared between concurrent requests", required=False,
                  default=False)
    ttl = Float(title="Seconds a shared result is kept", required=False)
    renderer = GlobalObject(
        title="The renderer",
        description="A function turning the result into HTML: templates may "
                    "then submit the promise as a fragment", required=False)


def promise(_context, name, handler, permission, executor=None, shared=False,
            ttl=None, renderer=None):
    if not callable(handler):
        raise TypeError(f"<futures:promise name={name!r}>: handler is not callable")
    if renderer is not None and not callable(renderer):
        raise TypeError(f"<futures:promise name={name!r}>: renderer is not callable")
    if ttl is not None and not shared:
        raise ValueError(f"<futures:promise name={name!r}>: ttl needs shared=\"true\"")
    if executor is not None and executor not in BUILTIN_EXECUTORS and "." in executor:
        raise ValueError(f"<futures:promise name={name!r}>: bad executor {executor!r}")
    utility(_context, provides=INamedPromise, name=name,
            component=NamedPromise(name, handler, permission, executor, shared, ttl,
                                   renderer))


class IPeriodicDirective(Interface):
    name = TextLine(title="Name", description="The same on every instance; "
                    "task_periodic.NAME in zope.conf overrides it")
    schedule = TextLine(title="Schedule", description="Cron's five fields "
                        "(UTC), @every N, @hourly, @daily or @weekly")
    path = TextLine(title="Path", description="From the root, with a query if wanted")
    queue = TextLine(title="Queue (default: the first of task_queues)",
                     required=False)


def periodic(_context, name, schedule, path, queue=None):
    from ..tasks.model import target
    from ..tasks.schedule import PeriodicTask, parse
    where = f"<futures:periodic name={name!r}>"
    if not name or not all(ch.isalnum() or ch in "-_." for ch in name) \
            or name != name.lower():
        # Lower case: zope.conf, which overrides it by name, lowers its keys.
        raise ConfigurationError(f"{where}: the name must be lower-case letters, "
                                 f"digits, '-', '_' or '.'")
    try:
        parsed = parse(schedule)
    except ValueError as exc:
        raise ConfigurationError(f"{where}: schedule: {exc}") from exc
    try:
        path = target(path)
    except Exception as exc:
        raise ConfigurationError(f"{where}: path: {exc}") from exc
    utility(_context, provides=IPeriodicTask, name=name,
            component=PeriodicTask(name, parsed, path, queue, origin=where))
