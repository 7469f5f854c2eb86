"""Text a client chose (a path, a key a view made from the request) made
safe for one log line.

Runs on: whichever thread writes a log line. Pure.
"""


def printable(value, limit=500):
    """``value`` as text with every non-printable character escaped
    (``\\n``, ``\\r``, ``\\x1b``, ``\\u2028``...), so that it cannot end the
    log line and forge another, nor drive a terminal; cut at ``limit``
    characters."""
    text = str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
