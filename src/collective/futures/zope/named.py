"""Named promises: functions registered in ZCML under a name, which page
templates and restricted (through-the-web) code may submit with plain
arguments; and the ``@@futures`` view they use.

Runs on: a Zope worker thread (the view), ZCML loading (the directive).

Restricted code cannot be trusted with a callable: anything it could pass
(a lambda, a method of a persistent object, a builtin) would run outside
Zope's security. So ``@@futures`` takes a promise *name*, checks that the
name is registered and that the user has its permission, and that every
argument is plain data; anything else raises ``Unauthorized``.
"""

from AccessControl import getSecurityManager
from zExceptions import NotFound, Unauthorized
from zope.component import queryUtility
from zope.interface import implementer
from zope.publisher.interfaces.browser import IBrowserPublisher
from zope.security.interfaces import IPermission

from .. import api
from ..core.plain import first_refused, not_plain
from ..core.promise import promise
from ..core.shared import digest
from ..interfaces import INamedPromise


#: Keys submitted by restricted code live apart from trusted code's.
KEY_PREFIX = "named:"


@implementer(INamedPromise)
class NamedPromise:
    """See INamedPromise."""

    def __init__(self, name, fn, permission, executor=None, shared=False, ttl=None,
                 renderer=None):
        self.renderer = renderer
        self.name = name
        self.fn = fn
        self.permission = permission
        self.executor = executor
        self.shared = shared
        self.ttl = ttl

    def options(self):
        return promise(self.fn, executor=self.executor, shared=self.shared,
                       ttl=self.ttl if self.shared else None)

    def shared_key(self, args, kwargs):
        """A shared execution is identified by the promise's name, its
        arguments (plain data) and its executor, never by the caller's key:
        two calls share a result only if they ask for exactly the same
        thing. A digest (core.shared.digest) that no key names: the kept
        results are found only through what is asked."""
        return digest("named", self.name, args, kwargs, self.executor)


def _title(permission):
    """Zope checks permissions by title (View); ZCML names them by id
    (zope2.View). Looked up when checked: at ZCML time the permission
    utilities may not be registered yet."""
    registered = queryUtility(IPermission, name=permission)
    return registered.title if registered is not None else permission


def _named(context, name):
    if not isinstance(name, str):
        raise Unauthorized(
            "@@futures submits named promises only (registered in ZCML); "
            f"got {type(name).__name__}")
    named = queryUtility(INamedPromise, name=name)
    if named is None:
        raise Unauthorized(f"no promise named {name!r} is registered")
    if not getSecurityManager().checkPermission(_title(named.permission), context):
        raise Unauthorized(
            f"submitting promise {name!r} needs the permission "
            f"{named.permission!r}")
    return named


def _plain(name, args, kwargs, depth=8):
    """Restricted code may pass plain data only: str, bytes, numbers,
    booleans, None, and lists, tuples and dicts of those."""
    reason = first_refused(args + tuple(kwargs.values()), not_plain, depth)
    if reason is not None and reason.startswith("arguments nest"):
        raise Unauthorized(f"@@futures: promise {name!r}: {reason}")
    if reason is not None:
        raise Unauthorized(
            f"@@futures: promise {name!r}: arguments must be plain data (str, "
            f"numbers, lists and dicts of them), not {reason}")


@implementer(IBrowserPublisher)
class TemplateFutures:
    """``@@futures``: the futures API for page templates and restricted
    code, on named promises. ``view.resultOrSubmit('feed', None,
    'rss-feed', url)`` renders ``None`` in pass 1 and the feed in pass 2.

    Never published by URL: a template or a script reaches it by path
    traversal or ``restrictedTraverse`` (no publisher involved), while
    ``/@@futures`` and ``/@@futures/<method>`` end at ZPublisher's
    ``browserDefault`` and ``publishTraverse``, which answer 404 for
    everyone, anonymous or Manager. No one needs its methods as URLs, and
    they would let any visitor submit named promises with query-string
    arguments."""

    def __init__(self, context, request):
        self.context = context
        self.request = request

    def __call__(self):
        return self

    def publishTraverse(self, request, name):
        raise NotFound(self, name, request)

    def browserDefault(self, request):
        raise NotFound(self, "@@futures", request)

    def result(self, key, default=None):
        """The result for ``key``, or ``default`` (a promise that raised
        raises here)."""
        # This request's results only: restricted code must not read the
        # process-wide kept results by guessing a key.
        outcome = api.futures_for(self.request).resolved.get(KEY_PREFIX + str(key))
        return default if outcome is None else outcome.unwrap()

    def submit(self, key, name, *args, **kwargs):
        """Submit the promise registered as ``name`` for ``key``."""
        named = _named(self.context, name)
        _plain(name, args, kwargs)
        api.submit(KEY_PREFIX + str(key), self._options(named, args, kwargs),
                   *args, **kwargs)
        return True

    def resultOrSubmit(self, key, placeholder, name, *args, **kwargs):
        """The result for ``key``, or submit the promise ``name`` and return
        ``placeholder``."""
        named = _named(self.context, name)
        _plain(name, args, kwargs)
        # A kept shared result is found by api.resultOrSubmit, through the
        # identity the options carry (never through the key).
        return api.resultOrSubmit(KEY_PREFIX + str(key), placeholder,
                                  self._options(named, args, kwargs), *args, **kwargs)

    def fragment(self, key, name, *args, **kwargs):
        """Submit the promise registered as ``name`` (with a ``renderer``)
        as a fragment for ``key``; returns the HTML for its place (a
        placeholder until its result is in: insert it with
        ``structure``)."""
        named = _named(self.context, name)
        if named.renderer is None:
            raise Unauthorized(
                f"@@futures: promise {name!r} has no renderer: register it "
                f"with renderer=\"...\" to use it as a fragment")
        _plain(name, args, kwargs)
        return api.fragment(KEY_PREFIX + str(key), named.renderer,
                            self._options(named, args, kwargs), *args, **kwargs)

    @staticmethod
    def _options(named, args, kwargs):
        options = named.options()
        if named.shared:
            options = options.with_shared_key(named.shared_key(args, kwargs))
        return options
