"""core/printable.py: client-chosen text made safe for one log line."""

from collective.futures.core.printable import printable


def test_printable_text_is_left_as_it_is():
    assert printable("/Plone/@@news") == "/Plone/@@news"
    assert printable("/@@tëst-échö") == "/@@tëst-échö"  # not ASCII: fine


def test_line_breaks_and_control_characters_are_escaped():
    forged = "/x\nINFO [collective.futures.requests] GET /admin: 200\r\x1b[2J\u2028"
    text = printable(forged)
    assert "\n" not in text and "\r" not in text and "\x1b" not in text
    assert "\u2028" not in text
    assert text == ("/x\\nINFO [collective.futures.requests] GET /admin: 200"
                    "\\r\\x1b[2J\\u2028")


def test_long_text_is_cut():
    assert printable("a" * 600) == "a" * 500 + "..."
    assert printable("a" * 10, limit=4) == "aaaa..."
