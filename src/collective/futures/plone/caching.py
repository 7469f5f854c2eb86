"""plone.app.caching and one-pass pages.

Runs on: the Zope worker, in Plone's transform chain (IPubBeforeCommit).

plone.app.caching's RAM cache stores a page as the transform chain leaves
it (its ``Store`` transform, order 90000). A page of fragments leaves the
chain with its holes still empty: its fragments are filled for this
request only, after the chain. Stored, it would be served to later
visitors with holes nobody fills. So a page that holds fragments is not
stored: this transform, just before ``Store``, takes the request's
"cache me in RAM" mark away.
"""

from plone.app.caching.interfaces import IRAMCached
from plone.transformchain.interfaces import ITransform
from zope.component import adapter
from zope.interface import Interface, implementer, noLongerProvides

from ..interfaces import STATE_ATTRIBUTE


@implementer(ITransform)
@adapter(Interface, Interface)
class KeepHolesOutOfRAMCache:

    order = 89999  # plone.app.caching's Store is 90000

    def __init__(self, published, request):
        self.published = published
        self.request = request

    def _check(self):
        state = getattr(self.request, STATE_ATTRIBUTE, None)
        if state is not None and state.held and IRAMCached.providedBy(self.request):
            noLongerProvides(self.request, IRAMCached)
        # None: the page is unchanged

    def transformBytes(self, result, encoding):
        return self._check()

    def transformUnicode(self, result, encoding):
        return self._check()

    def transformIterable(self, result, encoding):
        return self._check()
