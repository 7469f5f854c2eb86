"""Runs on: a Zope worker thread (the view); the snippet's promise on the
futures' side pool."""

import json

from doc_snippets import snippet
from futures_testapp.views import bump


#: The files whose viewlet snippet may be run (the form names one).
SOURCES = ("README.rst", "docs/plone.rst")


class NewsSnippet:
    """``@@news-snippet?source=docs/plone.rst&url=...&tag=...``: runs the
    snippet ``shared-viewlet`` of ``source`` with ``url`` and answers the
    titles of its items (JSON), or ``PLACEHOLDER`` in a pass that has
    none; counts its passes under ``tag``."""

    def __init__(self, context, request):
        self.context = context
        self.request = request

    def __call__(self):
        form = self.request.form
        if form["source"] not in SOURCES:
            raise ValueError(f"not a source of snippets: {form['source']!r}")
        bump(form["tag"] + ".passes")
        namespace = {"url": form["url"]}
        exec(snippet(form["source"], "shared-viewlet"), namespace)
        items = namespace["items"]
        if items is None:
            return "PLACEHOLDER"
        return json.dumps([item["title"] for item in items])
