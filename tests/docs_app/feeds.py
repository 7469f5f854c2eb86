"""``.feeds.fetch_feed``, the handler that docs/templates.rst's
``futures:promise`` (snippet ``named-promise-zcml``) names relative to its
package: here the package's own feed reader, so that the page's ZCML runs
unchanged.

Runs on: the side pool (fetch_feed is a promise).
"""

from collective.futures.plone.feeds import fetch_feed


__all__ = ["fetch_feed"]
