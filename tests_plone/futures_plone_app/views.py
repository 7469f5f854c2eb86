import re
import threading
import time
import urllib.request

from AccessControl import getSecurityManager
from Products.Five.browser import BrowserView
from zope.interface import Interface, implementer
from plone.restapi.services import Service

from collective import futures
from collective.futures import AsyncWorkerStreamIterator, StreamResult

from doc_snippets import snippet, substituted


def slow(value, delay=0.3):
    time.sleep(delay)
    return value


class WhoAmI(BrowserView):
    """Pass 2 runs as the same user as pass 1."""

    def __call__(self):
        user = getSecurityManager().getUser().getId() or "Anonymous"
        value = futures.resultOrSubmit("v", None, slow, "computed")
        if value is None:
            return "PLACEHOLDER"
        return f"user={user} value={value}"


class Themed(BrowserView):
    """A page in Plone's main template: the theme applies to pass 2."""

    def __call__(self):
        value = futures.resultOrSubmit("v", "PLACEHOLDER", slow, "themed result")
        return self.index(value=value)


_lock = threading.Lock()


class Write(BrowserView):
    """Writes to the ZODB in pass 2 of a POST (plone.protect checks it)."""

    def __call__(self):
        value = futures.resultOrSubmit("w", None, slow, "written", 0.1)
        if value is None:
            self.context._futures_writes = "pass 1 must never be committed"
            return "PLACEHOLDER"
        self.context._futures_writes = getattr(self.context, "_futures_count", 0) + 1
        self.context._futures_count = self.context._futures_writes
        # HTML, as a form handler answers: plone.transformchain (and so
        # plone.protect) only looks at HTML responses.
        self.request.response.setHeader("Content-Type", "text/html; charset=utf-8")
        return f"<html><body><p>writes={self.context._futures_count}</p></body></html>"


class Count(BrowserView):
    def __call__(self):
        return str(getattr(self.context, "_futures_count", 0))


def archive(size):
    time.sleep(0.2)
    return StreamResult((bytes([n % 256]) * 1000 for n in range(size // 1000)),
                        content_type="application/octet-stream", filename="data.bin")


class Stream(BrowserView):
    def __call__(self):
        return AsyncWorkerStreamIterator(archive, self.request, 200000)


class Token(BrowserView):
    """The current user's CSRF token (plone.protect)."""

    def __call__(self):
        from plone.protect.authenticator import createToken
        return createToken()


class Boom(BrowserView):
    """A real error: Plone's error log must keep it."""

    def __call__(self):
        raise ValueError("boom for the error log")


class ErrorLogTypes(BrowserView):
    """The types of the entries of the site's error log (Site Setup >
    Errors), newest first, as JSON."""

    def __call__(self):
        import json
        self.request.response.setHeader("Content-Type", "application/json")
        entries = self.context.error_log.getLogEntries()
        return json.dumps([entry["type"] for entry in entries])


class SlowJson(Service):
    """A plone.restapi service whose data comes from a promise."""

    def reply(self):
        value = futures.resultOrSubmit("j", None, slow, "json", 0.5)
        return {"value": value}


class Uninstall(BrowserView):
    """What the Add-ons panel does with collective.futures: uninstall it,
    then install it again; what each step left (JSON)."""

    def __call__(self):
        import json

        from plone.registry.interfaces import IRegistry
        from Products.CMFPlone.utils import get_installer
        from zope.component import getUtility

        product = "collective.futures.plone"
        installer = get_installer(self.context, self.request)
        registry = getUtility(IRegistry)
        record = "collective.futures.news_feed_url"
        report = {"installed": installer.is_product_installed(product),
                  "uninstall_profile": bool(installer.get_uninstall_profile(product))}
        plugin = "collective_futures_tasks"
        pas = self.context.acl_users
        report["plugin"] = plugin in pas.objectIds()
        report["uninstalled"] = installer.uninstall_product(product)
        report["installed_after_uninstall"] = installer.is_product_installed(product)
        report["record_after_uninstall"] = record in registry.records
        report["plugin_after_uninstall"] = plugin in pas.objectIds()
        report["reinstalled"] = installer.install_product(product)
        report["record_after_reinstall"] = record in registry.records
        report["plugin_after_reinstall"] = plugin in pas.objectIds()
        self.request.response.setHeader("Content-Type", "application/json")
        return json.dumps(report)


# A viewlet whose upstream is down: with on_error its part of the page
# degrades; without, the whole page is a 500 (the control).

class IDegradedPage(Interface):
    pass


class IBrokenPage(Interface):
    pass


@implementer(IDegradedPage)
class DegradedPage(BrowserView):
    pass


@implementer(IBrokenPage)
class BrokenPage(BrowserView):
    pass


# The viewlet is docs/plone.rst's (snippet news-viewlet-on-error), run as
# it is written: the names it takes from its surroundings (fetch_news,
# render_items, and the viewlet's feed_url) are the test's. Its update()
# does the work, as viewlets usually do: Plone's viewlet manager catches
# what render() raises, not what update() raises.

#: The page, and its viewlet's snippet.
DOC = "docs/plone.rst"
NEWS_VIEWLET = "news-viewlet-on-error"
#: The feed the viewlets ask for (fetch_news fails for any).
FEED_URL = "https://news.example.org/feed"


def fetch_news(url):
    """The viewlet's upstream, down. Runs on: the side pool."""
    raise ConnectionError(f"{url} is down")


def render_items(items):
    """The viewlet's list (never reached here: the upstream is down)."""
    return "<ul>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>"


def doc_news_viewlet(replace=None, fetch=fetch_news):
    """The class NewsViewlet of the page's snippet, its code run in a
    namespace holding ``fetch`` (as fetch_news) and render_items (with
    ``replace``, ``(old, new)``, applied to the code first if given)."""
    code = snippet(DOC, NEWS_VIEWLET)
    if replace is not None:
        code = substituted(code, *replace)
    namespace = {"__name__": __name__, "fetch_news": fetch,
                 "render_items": render_items}
    exec(compile(code, f"{DOC} (snippet {NEWS_VIEWLET})", "exec"), namespace)
    return namespace["NewsViewlet"]


class NewsViewlet(doc_news_viewlet()):
    """The documented pattern: a fallback (on_error=[]) for its part."""

    feed_url = FEED_URL


class StrictNewsViewlet(doc_news_viewlet(replace=(
        "futures.promise(fetch_news, on_error=[])", "futures.promise(fetch_news)"))):
    """The control: the same code without on_error."""

    feed_url = FEED_URL


# The deployment test (test_plone_deployment.py): the same viewlet, its
# upstream up and slow (the slow upstream's feed, the URL in the site's
# registry), on a page of its own; the page is slow for every visitor (the
# promise is not shared), as a per-visitor viewlet makes every page of a
# site.

class IProxiedPage(Interface):
    pass


@implementer(IProxiedPage)
class ProxiedPage(BrowserView):
    pass


def fetch_feed(url):
    """The item titles of the feed at ``url``. Runs on: the side pool."""
    with urllib.request.urlopen(url, timeout=30) as response:
        return re.findall(r"<item><title>([^<]*)</title>", response.read().decode())


class UpstreamNewsViewlet(doc_news_viewlet(fetch=fetch_feed)):

    @property
    def feed_url(self):
        from plone.registry.interfaces import IRegistry
        from zope.component import getUtility
        return getUtility(IRegistry)["collective.futures.news_feed_url"]


class WarmNews(BrowserView):
    """Renders @@futures-news's template once, with no feed: CPython 3.11's
    compile() is not safe in two threads at once ("AST constructor
    recursion depth mismatch", a SystemError seen in CI when two first
    visitors made Chameleon compile news.pt together); the concurrency
    test is about the feed, so its template is compiled before it."""

    def __call__(self):
        from collective.futures.plone.news import NewsView
        view = NewsView(self.context, self.request)
        view.url, view.items, view.error = None, None, None
        view.template()
        self.request.response.setHeader("Content-Type", "text/plain")
        return "warm"


# Background tasks (test_plone_tasks.py): a member's task creates content
# as that member, through plone.protect.

class QueueTask(BrowserView):
    """Queues the task ``task`` (a view name) on this context, with
    ``title``/``token`` (and ``run_as``: a user id, or ``anonymous``; with
    ``as_member``, the member object of that id; ``path`` instead of the
    context's view); answers the task's id."""

    def __call__(self):
        from collective.futures import taskqueue
        form = self.request.form
        path = form.get("path") or (
            "/".join(self.context.getPhysicalPath()) + "/@@" + form["task"])
        kwargs = {}
        if "run_as" in form:
            kwargs["run_as"] = (taskqueue.ANONYMOUS if form["run_as"] == "anonymous"
                                else form["run_as"])
            if form.get("as_member"):
                from plone import api
                kwargs["run_as"] = api.user.get(userid=form["run_as"])
        return taskqueue.add(path, params={"title": form.get("title", ""),
                                           "token": form.get("token", "")}, **kwargs)


class TaskState(BrowserView):
    def __call__(self):
        import json
        from collective.futures import taskqueue
        self.request.response.setHeader("Content-Type", "application/json")
        return json.dumps(taskqueue.status(self.request.form["id"]))


class TaskCreate(BrowserView):
    """The task: creates a Document here (a write, in a GET: plone.protect
    wants its CSRF token)."""

    def __call__(self):
        title = self.request.form["title"]
        new_id = self.context.invokeFactory("Document", title.lower(), title=title)
        return new_id


class TaskWhoAmI(BrowserView):
    """The task: records who it runs as (under ``token``)."""

    def __call__(self):
        site = self.context
        users = dict(getattr(site, "futures_task_users", {}))
        users[self.request.form["token"]] = getSecurityManager().getUser().getUserName()
        site.futures_task_users = users
        return "ok"


class TaskUsers(BrowserView):
    def __call__(self):
        import json
        self.request.response.setHeader("Content-Type", "application/json")
        return json.dumps(dict(getattr(self.context, "futures_task_users", {})))


class DocInfo(BrowserView):
    def __call__(self):
        import json
        name = self.request.form["id"]
        found = self.context.portal_catalog.unrestrictedSearchResults(
            getId=name, path="/".join(self.context.getPhysicalPath()))
        doc = found[0]._unrestrictedGetObject() if found else None
        self.request.response.setHeader("Content-Type", "application/json")
        if doc is None:
            return json.dumps(None)
        return json.dumps({"creators": list(doc.listCreators()),
                           "owner": doc.getOwner().getId()})


# Fragments (docs/fragments.rst): a viewlet and a portlet whose slow part
# is a hole in the page, run as the page writes them (snippets
# fragment-viewlet and fragment-portlet); what they take from their
# surroundings (fetch_forecast, fetch_prices, the viewlet's city, the
# portlet's market) is the test's: the slow upstream's feed.

FRAGMENTS_DOC = "docs/fragments.rst"


def fetch_forecast(url):
    """The viewlet's upstream: (day, sky) pairs from the feed at ``url``.
    Runs on: the side pool."""
    with urllib.request.urlopen(url, timeout=30) as response:
        titles = re.findall(r"<item><title>([^<]*)</title>", response.read().decode())
    return [(f"Day {n}", title) for n, title in enumerate(titles, 1)]


def fetch_prices(url):
    """The portlet's upstream: (name, price) pairs. Runs on: the side pool."""
    with urllib.request.urlopen(url, timeout=30) as response:
        titles = re.findall(r"<item><title>([^<]*)</title>", response.read().decode())
    return [(title, f"{n}.00 EUR <&>") for n, title in enumerate(titles, 1)]


def doc_class(name, snippet_name, **names):
    """The class ``name`` of the snippet, its code run with ``names``."""
    code = snippet(FRAGMENTS_DOC, snippet_name)
    namespace = {"__name__": __name__, **names}
    exec(compile(code, f"{FRAGMENTS_DOC} (snippet {snippet_name})", "exec"), namespace)
    return namespace[name], namespace


DocWeatherViewlet, _weather = doc_class(
    "WeatherViewlet", "fragment-viewlet", fetch_forecast=fetch_forecast)
DocPricesRenderer, _prices = doc_class(
    "PricesRenderer", "fragment-portlet", fetch_prices=fetch_prices)


def feed_url(request, name="delay"):
    from plone.registry.interfaces import IRegistry
    from zope.component import getUtility
    url = getUtility(IRegistry)["collective.futures.news_feed_url"]
    base = url.split("?", 1)[0]
    return f"{base}?delay={float(request.form.get(name, 0)):g}"


class WeatherViewlet(DocWeatherViewlet):
    """Below the content of every page, shown when the request asks:
    ``?weather=fragment`` (the documented viewlet), ``?weather=twopass``
    (the same part as an ordinary promise: the page takes two passes),
    ``?weather=down`` (its upstream fails: on_error=[]). ``delay``: the
    upstream's; ``progressive=1``: the page asks for progressive delivery.
    (benchmarks/fragments_plone.py measures the front page with each.)"""

    @property
    def city(self):
        if self.request.form.get("weather") == "down":
            return "http://127.0.0.1:9/unreachable"
        return feed_url(self.request)

    def render(self):
        mode = self.request.form.get("weather")
        if "progressive" in self.request.form:
            futures.progressive(self.request.form["progressive"] == "1")
        if mode in ("fragment", "down"):
            return super().render()
        if mode == "twopass":
            forecast = futures.resultOrSubmit(
                "weather", None, futures.promise(fetch_forecast, on_error=[]),
                self.city)
            return "" if forecast is None else _weather["render_forecast"](forecast)
        return ""


from plone.app.portlets.portlets import base as portlets_base  # noqa: E402
from plone.portlets.interfaces import IPortletDataProvider  # noqa: E402


class IPricesPortlet(IPortletDataProvider):
    pass


@implementer(IPricesPortlet)
class PricesAssignment(portlets_base.Assignment):
    title = "Prices"
    market = None


class PricesAddForm(portlets_base.NullAddForm):
    def create(self):
        return PricesAssignment()


class PricesRenderer(DocPricesRenderer):
    """The documented portlet, shown when the request asks (``?prices=1``);
    its market is the slow upstream's feed (``prices_delay``)."""

    @property
    def available(self):
        return "prices" in self.request.form

    @property
    def data(self):
        # Not the (persistent) assignment: setting its market would write.
        return Market(feed_url(self.request, "prices_delay"))

    @data.setter
    def data(self, value):
        self.__dict__["assignment"] = value


class Market:
    def __init__(self, market):
        self.market = market
