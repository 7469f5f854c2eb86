"""One figure of a benchmark report (docs/benchmark.json), found by its
path and formatted: what the docs quote, read from what was measured.

A path is the keys from the top of the report down to the figure,
separated by "/"::

    results/futures, threads executor/256/throughput_rps
    ratios/overhead (plain page, C=16)
    slow_requests/results/stock Zope, blocking view/total_s
    slow_requests/results/collective.futures/statuses/0

Keys are taken as written: spaces, commas, "=", parentheses and dots are
part of them, and nothing is stripped. An element of a list is named by its
index. A key that contains "/" is reached with a tuple of keys instead of a
string (``("results", "a/b", "rps")``); the reports have none today.

Pure: no I/O, no imports beyond the standard library.
"""

import numbers


SEPARATOR = "/"
#: ``{bound}`` in a format: this mark when the figure is a lower bound.
LOWER_BOUND = "≥"


class FigureError(LookupError):
    """The path names no figure in the report (a missing key, a figure
    that is not a single value, or one the run could not measure). The
    message says where the path stopped: fix the path or run the
    benchmark again."""


def parse(path):
    """The keys of ``path`` (a "/"-separated string, or a tuple or list
    of keys) as a tuple."""
    if isinstance(path, str):
        keys = tuple(path.split(SEPARATOR))
    else:
        keys = tuple(path)
    if not keys or any(key == "" for key in keys):
        raise FigureError(f"bad figure path {path!r}: an empty key")
    return keys


def _step(node, key, keys, depth):
    where = SEPARATOR.join(str(k) for k in keys[:depth]) or "the report"
    if isinstance(node, dict):
        if key in node:
            return node[key]
        if not isinstance(key, str) and str(key) in node:
            return node[str(key)]  # JSON's keys are strings: 256 is "256"
        known = ", ".join(repr(k) for k in list(node)[:12])
        raise FigureError(f"{where} has no key {key!r} (it has {known}"
                          f"{', ...' if len(node) > 12 else ''})")
    if isinstance(node, list):
        try:
            index = int(key)
        except (TypeError, ValueError):
            index = -1
        if 0 <= index < len(node) and str(key) == str(index):
            return node[index]
        raise FigureError(f"{where} is a list of {len(node)}: no element {key!r}")
    raise FigureError(f"{where} is a single value ({node!r}), not a dict or list")


def lookup(report, path):
    """The value at ``path``: a number, a string or a bool; FigureError
    if there is none, or if it is None (not measured) or a dict or list."""
    keys = parse(path)
    node = report
    for depth, key in enumerate(keys):
        node = _step(node, key, keys, depth)
    where = SEPARATOR.join(str(k) for k in keys)
    if node is None:
        raise FigureError(f"{where} is None: the run did not measure it")
    if isinstance(node, (dict, list)):
        raise FigureError(f"{where} is a {type(node).__name__}, not one figure")
    return node


def is_lower_bound(report, path):
    """Whether the figure at ``path`` is a lower bound: the suite writes,
    next to a latency ``<name>_ms``, ``<name>_censored`` (true when the
    request was still waiting as the run ended). False when there is no
    such neighbour."""
    keys = parse(path)
    last = str(keys[-1])
    if not last.endswith("_ms"):
        return False
    try:
        return lookup(report, keys[:-1] + (last[:-3] + "_censored",)) is True
    except FigureError:
        return False


def figure(report, path, fmt="{}", scale=None):
    """The figure at ``path``, formatted.

    ``fmt`` is a ``str.format`` template whose field is the value
    (``"{:.2f} s"``, ``"{value:,}"``), or, without braces, a format
    specification (``".2f"``, ``",.0f"``). In a template, ``{bound}`` is
    "≥" when the figure is a lower bound (see is_lower_bound), else empty.
    ``scale`` multiplies a number before formatting (``0.001``: ms to s).
    """
    value = lookup(report, path)
    if scale is not None:
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise FigureError(f"{path!r} is {value!r}: only numbers can be scaled")
        value = value * scale
    template = fmt if "{" in fmt else "{:" + fmt + "}"
    bound = LOWER_BOUND if is_lower_bound(report, path) else ""
    try:
        return template.format(value, value=value, bound=bound)
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise FigureError(f"{path!r} ({value!r}) does not format with "
                          f"{fmt!r}: {exc}") from exc


def paths(report):
    """Every path to a single value in the report, in the report's order
    (for listing what can be quoted)."""
    def walk(node, prefix):
        if isinstance(node, dict):
            items = node.items()
        elif isinstance(node, list):
            items = enumerate(node)
        else:
            yield SEPARATOR.join(prefix)
            return
        for key, child in items:
            yield from walk(child, prefix + (str(key),))
    yield from walk(report, ())
