"""Plain data: what it is, the one walk over a promise's arguments, and
the canonical bytes of plain data.

Runs on: the Zope worker, when a promise is submitted. Pure: what to refuse
is the caller's judgement (the sandbox refuses what belongs to the request;
``@@futures`` and shared promises accept plain data only, judged by
:func:`not_plain`); :func:`first_refused` only walks containers, with a
bound on their depth so that nothing is left unchecked. :func:`encode`
gives what a shared promise's identity is hashed from.
"""

#: Containers whose items (and a dict's keys) are walked.
CONTAINERS = (dict, list, tuple, set, frozenset)

#: Plain data: these exact types (a subclass of str or dict could do
#: anything in its methods), and lists, tuples and dicts of them.
PLAIN_SCALARS = (str, bytes, int, float, bool, type(None))
PLAIN_CONTAINERS = (list, tuple, dict)


def first_refused(values, judge, depth=8):
    """The first reason ``judge`` gives for a value in ``values``, walking
    into containers, or None when every value passes.

    ``judge(value)`` returns a reason (str) to refuse ``value``, or None to
    accept it; an accepted container is walked. A container nested deeper
    than ``depth`` is refused rather than left unchecked.
    """
    pending = [(value, 0) for value in values]
    while pending:
        value, level = pending.pop()
        reason = judge(value)
        if reason is not None:
            return reason
        if isinstance(value, CONTAINERS):
            if level >= depth:
                return f"arguments nest deeper than {depth} containers"
            if isinstance(value, dict):
                pending.extend((key, level + 1) for key in value)
                value = value.values()
            pending.extend((item, level + 1) for item in value)
    return None


def not_plain(value):
    """A judge for :func:`first_refused`: None for plain data, else the
    name of the type that is not."""
    kind = type(value)
    if kind in PLAIN_SCALARS or kind in PLAIN_CONTAINERS:
        return None
    return kind.__name__


def encode(value):
    """The canonical bytes of plain data ``value``: equal for equal data of
    the same types, different otherwise.

    Type-aware (``1``, ``1.0``, ``True`` and ``"1"`` differ, as do a list
    and a tuple of the same items), exact (floats in hexadecimal), and a
    dict's order does not count (its items are sorted by their keys'
    bytes). Every part says its type and length, so no concatenation of
    parts can pass for another. ``value`` must have passed
    ``first_refused([value], not_plain)`` (which bounds its depth); else
    ``TypeError``.
    """
    kind = type(value)
    if value is None:
        return b"N"
    if kind is bool:
        return b"T" if value else b"F"
    if kind is int:
        # Hexadecimal: str() refuses ints of more than 4300 digits.
        return _atom(b"i", format(value, "x").encode("ascii"))
    if kind is float:
        return _atom(b"f", value.hex().encode("ascii"))
    if kind is str:
        # surrogatepass: a lone surrogate is data too, and stays distinct.
        return _atom(b"s", value.encode("utf-8", "surrogatepass"))
    if kind is bytes:
        return _atom(b"b", value)
    if kind is list or kind is tuple:
        return _group(b"l" if kind is list else b"t", [encode(item) for item in value])
    if kind is dict:
        # Keys of one dict are never equal, so neither are their bytes:
        # the sort never compares two values.
        items = sorted((encode(key), encode(item)) for key, item in value.items())
        return _group(b"d", [key + item for key, item in items])
    raise TypeError(f"not plain data: {kind.__name__}")


def _atom(tag, payload):
    return tag + str(len(payload)).encode("ascii") + b":" + payload


def _group(tag, parts):
    return tag + str(len(parts)).encode("ascii") + b":" + b"".join(parts)
