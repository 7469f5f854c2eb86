"""``.feeds.fetch_feed``, the handler that the README's ``futures:promise``
(snippet ``feed-promise``) names relative to its package: here the
package's own feed reader, so that the README's ZCML runs unchanged.

Runs on: the side pool (fetch_feed is a promise).
"""

from collective.futures.plone.feeds import fetch_feed


__all__ = ["fetch_feed"]
