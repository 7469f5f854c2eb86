"""core.fragments: placeholders, escaping, fallbacks, filling (pure)."""

import pytest

from collective.futures.core.fragments import (
    PROGRESSIVE_SCRIPT, Fragment, Markup, as_html, fill, new_token,
    placeholder, progressive_chunk, render, split_for_progressive, tokens_in)
from collective.futures.core.promise import NO_FALLBACK, Outcome
from collective.futures.exceptions import FutureTimeoutError


def fragment(render_fn=str, key="k"):
    return Fragment(key, render_fn, new_token())


def test_tokens_are_random_and_placeholders_are_markup():
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100 and all(len(t) == 16 for t in tokens)
    hole = placeholder("0123456789abcdef")
    assert hole == '<span data-futures-fragment="0123456789abcdef"></span>'
    assert hole.__html__() == hole


@pytest.mark.parametrize("value, html", [
    ("<b>&'\"", "&lt;b&gt;&amp;&#x27;&quot;"),
    (Markup("<b>bold</b>"), "<b>bold</b>"),
    (None, ""),
    ("", ""),
])
def test_text_is_escaped_and_declared_markup_is_not(value, html):
    assert as_html(value) == html


def test_anything_with_dunder_html_is_markup():
    class Safe:
        def __html__(self):
            return "<i>safe</i>"
    assert as_html(Safe()) == "<i>safe</i>"


@pytest.mark.parametrize("value", [b"<b>", 42, ["a"]])
def test_what_is_neither_text_nor_markup_is_refused(value):
    with pytest.raises(TypeError, match="return str"):
        as_html(value)


def test_a_result_is_rendered():
    assert render(fragment(lambda v: v.upper()), Outcome(value="<x>"), "D") == (
        "&lt;X&gt;", "rendered")


def test_a_failure_renders_on_error_or_gives_the_default():
    failed = Outcome(error=FutureTimeoutError("late"), fallback=[])
    calls = []

    def render_fn(value):
        calls.append(value)
        return Markup("<p>none</p>")

    assert render(fragment(render_fn), failed, "D") == ("<p>none</p>", "fallback")
    assert calls == [[]]
    bare = Outcome(error=ValueError("down"), fallback=NO_FALLBACK)
    assert render(fragment(render_fn), bare, "<em>D</em>") == ("<em>D</em>", "fallback")
    assert calls == [[]]  # the renderer is not called without a value


def test_a_renderer_that_raises_gives_the_default_and_is_reported():
    heard = []

    def broken(value):
        raise RuntimeError("broken")

    result = render(fragment(broken), Outcome(value=1), "D",
                    failed=lambda f, exc: heard.append(exc))
    assert result == ("D", "render_failed")
    assert isinstance(heard[0], RuntimeError)
    # returning bytes is a failure too
    assert render(fragment(lambda v: b"x"), Outcome(value=1), "D") == ("D", "render_failed")


@pytest.mark.parametrize("raised", [SystemExit, KeyboardInterrupt, GeneratorExit])
def test_a_renderer_raising_a_base_exception_fails_its_hole_only(raised):
    def hostile(value):
        raise raised("from a renderer")
    heard = []
    assert render(fragment(hostile), Outcome(value=1), "D",
                  failed=lambda f, exc: heard.append(exc)) == ("D", "render_failed")
    assert isinstance(heard[0], raised)


def test_the_renderer_is_called_through_run():
    seen = []
    result = render(fragment(str), Outcome(value=5), "D",
                    run=lambda fn, value: seen.append(value) or "ran")
    assert result == ("ran", "rendered") and seen == [5]


def test_fill_replaces_known_holes_in_one_pass():
    a, b = fragment(key="a"), fragment(key="b")
    forged = placeholder("0123456789abcdef")
    body = f"<p>{a.placeholder}</p><p>{b.placeholder}</p><p>{forged}</p>".encode()
    # a's HTML carries b's placeholder: it must not be filled in turn.
    filled = fill(body, {a.token: f"A{b.placeholder}", b.token: "B"})
    assert filled == f"<p>A{b.placeholder}</p><p>B</p><p>{forged}</p>".encode()
    assert tokens_in(body) == [a.token, b.token, "0123456789abcdef"]


def test_fill_takes_what_serialisers_make_of_the_hole_and_encodes():
    token = new_token()
    body = (f'<p><span data-futures-fragment="{token}"/></p>'
            f'<p><span data-futures-fragment="{token}" ></span></p>').encode()
    filled = fill(body, {token: "é€"}, charset="latin-1")
    assert filled == "<p>é&#8364;</p><p>é&#8364;</p>".encode("latin-1")


def test_split_for_progressive():
    hole = placeholder(new_token())
    body = f"<html><body>{hole}<p>end</p></BODY></html>".encode()
    head, tail = split_for_progressive(body)
    assert head.endswith(b"<p>end</p>") and tail == b"</BODY></html>"
    assert split_for_progressive(b"<p>no body end</p>") is None
    # a hole after the last </body> cannot be filled by script before it
    assert split_for_progressive(f"<body></body>{hole}".encode()) is None
    # a self-closed hole would swallow what follows it in an HTML parser
    closed = f'<span data-futures-fragment="{new_token()}"/>'
    assert split_for_progressive(f"<body>{closed}<p>x</p></body>".encode()) is None


def test_progressive_chunk_and_script():
    chunk = progressive_chunk("0123456789abcdef", "<b>é</b>", charset="ascii")
    assert chunk == (b'<template data-futures-fill="0123456789abcdef"><b>&#233;</b>'
                     b'</template><script>futuresFill("0123456789abcdef")</script>')
    assert PROGRESSIVE_SCRIPT.startswith("<script>function futuresFill(t)")
