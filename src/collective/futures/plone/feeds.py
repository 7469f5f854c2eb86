"""Reading an RSS or Atom feed: the seed's own example of slow work.

Runs on: a side thread (it is a promise). Plain data in (a URL), plain
data out (a list of dicts): no ZODB, no request.
"""

import urllib.request
import xml.etree.ElementTree as ElementTree


ATOM = "{http://www.w3.org/2005/Atom}"
MAX_BYTES = 5 * 1024 * 1024


def parse_feed(data, limit=10):
    """``[{"title", "link", "published"}, ...]`` from RSS 2.0 or Atom bytes."""
    root = ElementTree.fromstring(data)
    items = []
    if root.tag == f"{ATOM}feed":
        for entry in root.findall(f"{ATOM}entry")[:limit]:
            link = entry.find(f"{ATOM}link")
            items.append({
                "title": (entry.findtext(f"{ATOM}title") or "").strip(),
                "link": link.get("href", "") if link is not None else "",
                "published": (entry.findtext(f"{ATOM}updated") or "").strip(),
            })
    else:
        for item in root.iter("item"):
            if len(items) >= limit:
                break
            items.append({
                "title": (item.findtext("title") or "").strip(),
                "link": (item.findtext("link") or "").strip(),
                "published": (item.findtext("pubDate") or "").strip(),
            })
    return items


def fetch_feed(url, limit=10, timeout=10.0):
    """Fetch and parse a feed (at most 5 MiB) from ``url`` (http or https)."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url!r}")
    request = urllib.request.Request(url, headers={
        "User-Agent": "collective.futures feed reader",
        "Accept": "application/rss+xml, application/atom+xml, application/xml"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        data = response.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise ValueError(f"the feed at {url} is larger than {MAX_BYTES} bytes")
    return parse_feed(data, limit)
