"""Fragments: a slow part of a page that is a hole in it, filled once its
promise has a result, instead of a reason to render the whole page again.

Runs on: ``Fragment`` and ``placeholder`` on the Zope worker (the API);
``render`` and ``fill`` where the holes are filled (the stream pool, never
the worker nor the deadline thread); the ``progressive_*`` pieces where a
progressive page is written (the asyncio loop). Pure: text and bytes.

A placeholder is an empty element carrying a random token, so that it
survives the transforms a page goes through after the view (Diazo,
plone.protect re-serialise the page) and cannot be forged by content:
nobody who writes the page's content knows the token of this response.
"""

import dataclasses
import html
import re
import secrets
import typing

from .promise import NO_FALLBACK, name_of


#: The attribute that marks a hole; its value is the fragment's token.
ATTRIBUTE = "data-futures-fragment"

#: A hole as the page carries it, after any (X)HTML serialiser.
_HOLE = re.compile(
    rb'<span ' + ATTRIBUTE.encode() + rb'="([0-9a-f]{16})"\s*(?:/>|>\s*</span>)')


class Markup(str):
    """Text that is HTML already: a fragment's renderer returns it (or any
    object with ``__html__``, such as ``markupsafe.Markup``) for markup
    that must not be escaped. Anything else a renderer returns is text and
    is escaped."""

    def __html__(self):
        return str(self)


@dataclasses.dataclass(frozen=True)
class Fragment:
    """One hole: the promise that computes its data (under ``key``), the
    ``render`` function that turns that data into HTML, and the random
    ``token`` of its placeholder."""

    key: str
    render: typing.Callable
    token: str

    @property
    def placeholder(self):
        return placeholder(self.token)

    @property
    def name(self):
        """The renderer's qualified name (logs): see core.promise.name_of."""
        return name_of(self.render)


def new_token():
    return secrets.token_hex(8)


def placeholder(token):
    """The element that marks a hole (:class:`Markup`: a template inserts it
    as it is)."""
    return Markup(f'<span {ATTRIBUTE}="{token}"></span>')


def as_html(value):
    """What a renderer returned, as HTML text: markup (``__html__``) as it
    is, None as nothing, any other text escaped. Raises TypeError for what
    is neither (bytes: which encoding?)."""
    if value is None:
        return ""
    markup = getattr(value, "__html__", None)
    if markup is not None:
        text = markup()
        if not isinstance(text, str):
            raise TypeError(f"{type(value).__name__}.__html__() returned "
                            f"{type(text).__name__}, not str")
        return text
    if isinstance(value, str):
        # Quotes too: text that ends up in an attribute stays in it.
        return html.escape(value)
    raise TypeError(
        f"a renderer returned {type(value).__name__}: return str (it is "
        f"escaped) or Markup (it is not)")


#: How a fragment ended (metrics, the request log).
FRAGMENT_OUTCOMES = ("rendered", "fallback", "render_failed", "dropped")


def render(fragment, outcome, default, run=lambda fn, value: fn(value),
           failed=None):
    """The HTML of ``fragment`` for ``outcome`` (a core.promise.Outcome) and
    how it ended: ``(html, "rendered" | "fallback" | "render_failed")``.

    A result is rendered by ``fragment.render``; a failure with the
    promise's ``on_error`` value renders that value (the part shows its own
    degraded state), without one the site's ``default`` markup. A renderer
    that raises, or returns what cannot be sent, gives ``default`` too.
    ``run(fn, value)`` calls the renderer (in the promises' sandbox);
    ``failed(fragment, exc)`` hears of a renderer that failed, whatever it
    raised (a SystemExit from a renderer fails its hole, not the page)."""
    if outcome.error is None:
        value, kind = outcome.value, "rendered"
    elif outcome.fallback is not NO_FALLBACK:
        value, kind = outcome.fallback, "fallback"
    else:
        return default, "fallback"
    try:
        return as_html(run(fragment.render, value)), kind
    except BaseException as exc:  # noqa: B036 - a hostile renderer's SystemExit too
        if failed is not None:
            failed(fragment, exc)
        return default, "render_failed"


def tokens_in(body):
    """The tokens of the holes in ``body`` (bytes), in page order."""
    return [match.group(1).decode("ascii") for match in _HOLE.finditer(body)]


def fill(body, holes, charset="utf-8"):
    """``body`` (bytes) with each hole whose token is in ``holes`` (token ->
    HTML text) replaced by that HTML, in one pass: what a fragment's HTML
    contains is never filled in turn. Holes of other tokens are left."""
    encoded = {token: text.encode(charset, "xmlcharrefreplace")
               for token, text in holes.items()}

    def replace(match):
        return encoded.get(match.group(1).decode("ascii"), match.group(0))

    return _HOLE.sub(replace, body)


# Progressive delivery: the page goes out with its holes; each fragment
# follows in the same response, moved into its hole by a line of script.

#: Defined once per page, before the first fragment.
PROGRESSIVE_SCRIPT = (
    "<script>function futuresFill(t){"
    "var s=document.querySelector('template[data-futures-fill=\"'+t+'\"]');"
    "document.querySelectorAll('span[" + ATTRIBUTE + "=\"'+t+'\"]')"
    ".forEach(function(h){h.replaceWith(s.content.cloneNode(true))});"
    "s.remove()}</script>")

_BODY_END = re.compile(rb"</body\s*>", re.IGNORECASE)
_SELF_CLOSED = re.compile(rb'<span ' + ATTRIBUTE.encode() + rb'="[0-9a-f]{16}"\s*/>')


def split_for_progressive(body):
    """``(head, tail)``: the page up to its last ``</body>`` (holes
    included) and from there on; None when the page has no ``</body>``
    after its last hole (it cannot take fragments after it), or has a hole
    written ``<span .../>`` (an HTML parser would open a span there that
    swallows what follows it)."""
    if _SELF_CLOSED.search(body):
        return None
    ends = list(_BODY_END.finditer(body))
    if not ends:
        return None
    at = ends[-1].start()
    last_hole = None
    for last_hole in _HOLE.finditer(body):
        pass
    if last_hole is not None and last_hole.end() > at:
        return None
    return body[:at], body[at:]


def progressive_chunk(token, text, charset="utf-8"):
    """One fragment, sent after the page: its HTML in an inert
    ``<template>`` and the call that moves it into its hole."""
    return (f'<template data-futures-fill="{token}">{text}</template>'
            f'<script>futuresFill("{token}")</script>').encode(
                charset, "xmlcharrefreplace")
