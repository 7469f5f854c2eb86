"""The ``<futures:promise>`` ZCML directive (namespace
``http://namespaces.zope.org/futures``)."""

from zope.component.zcml import utility
from zope.configuration.fields import GlobalObject
from zope.interface import Interface
from zope.schema import Bool, Float, TextLine
from zope.security.zcml import Permission

from ..interfaces import INamedPromise
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


def promise(_context, name, handler, permission, executor=None, shared=False,
            ttl=None):
    if not callable(handler):
        raise TypeError(f"<futures:promise name={name!r}>: handler is not callable")
    if ttl is not None and not shared:
        raise ValueError(f"<futures:promise name={name!r}>: ttl needs shared=\"true\"")
    if executor is not None and executor not in BUILTIN_EXECUTORS and "." in executor:
        raise ValueError(f"<futures:promise name={name!r}>: bad executor {executor!r}")
    utility(_context, provides=INamedPromise, name=name,
            component=NamedPromise(name, handler, permission, executor, shared, ttl))
