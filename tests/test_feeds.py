"""The feed parser (RSS 2.0 and Atom)."""

import pytest

from collective.futures.plone.feeds import fetch_feed, parse_feed


def test_rss():
    data = b"""<?xml version="1.0"?><rss version="2.0"><channel>
      <item><title> One </title><link>https://a/1</link><pubDate>Mon</pubDate></item>
      <item><title>Two</title><link>https://a/2</link></item>
      <item><title>Three</title></item></channel></rss>"""
    assert parse_feed(data, limit=2) == [
        {"title": "One", "link": "https://a/1", "published": "Mon"},
        {"title": "Two", "link": "https://a/2", "published": ""}]


def test_atom():
    data = b"""<feed xmlns="http://www.w3.org/2005/Atom">
      <entry><title>A</title><link href="https://a/"/><updated>2026</updated></entry>
    </feed>"""
    assert parse_feed(data) == [{"title": "A", "link": "https://a/", "published": "2026"}]


def test_only_http_urls():
    with pytest.raises(ValueError, match="not an http"):
        fetch_feed("file:///etc/passwd")
