"""``@@futures-news``: the seed's example in Plone, an RSS feed from a slow
external site rendered without holding a worker.

The feed's URL is the registry record ``collective.futures.news_feed_url``
(a TextLine). The feed is fetched by a shared promise kept for five
minutes: concurrent visitors share one fetch, later ones get it at once.
"""

from Products.Five.browser import BrowserView
from Products.Five.browser.pagetemplatefile import ViewPageTemplateFile

from collective import futures
from collective.futures.plone.feeds import fetch_feed


RECORD = "collective.futures.news_feed_url"
TTL = 300


def feed_url():
    from plone.registry.interfaces import IRegistry
    from zope.component import queryUtility
    registry = queryUtility(IRegistry)
    return registry.get(RECORD) if registry is not None else None


class NewsView(BrowserView):
    template = ViewPageTemplateFile("news.pt")

    def __call__(self):
        self.url = feed_url()
        self.items, self.error = None, None
        if self.url:
            try:
                # The URL is part of the key: sites (or a changed record)
                # with other feeds must not share this one's result.
                self.items = futures.resultOrSubmit(
                    f"collective.futures.news:{self.url}", None,
                    futures.promise(fetch_feed, shared=True, ttl=TTL), self.url)
            except Exception as exc:  # the feed failed: say so, keep the page
                self.error = f"{type(exc).__name__}: {exc}"
        return self.template()
