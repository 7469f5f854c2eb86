"""The ``futures-options`` directive: the configuration options of the
manual, written from the one option table
(``collective.futures.settings.OPTIONS``), so the manual can neither miss an
option nor show a wrong default.

Each option becomes an item of a definition list: the term is ``name``
(default ``value``), the text is the option's doc from the table. The
directive's content may add a note to an option, as a field list::

    .. futures-options::

       :timeout: A suspended request therefore waits at most ``timeout``
           per round.

A note for an option that is not in the table is an error (so a renamed
or removed option cannot leave a stale note behind).

Plain docutils, no Sphinx: ``tests/test_docs.py`` renders the same list
without Sphinx and checks it.
"""

import re

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList

from collective.futures.settings import OPTIONS


def default_text(option):
    """The default as zope.conf spells it (``on``, ``30``, ``auto``), or
    None when the option has none."""
    default = option.default
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    if default == "":
        return None
    return str(default)


def term(option):
    default = default_text(option)
    if default is None:
        return f"``{option.name}`` (no default)"
    return f"``{option.name}`` (default ``{default}``)"


_FIELD = re.compile(r"^:([A-Za-z_][\w.]*):\s*(.*)$")


def parse_notes(lines):
    """``{name: text}`` from a field list (``:name: text``, continuation
    lines indented). Raises ValueError for anything else."""
    notes, name = {}, None
    for line in lines:
        match = _FIELD.match(line)
        if match:
            name = match.group(1)
            if name in notes:
                raise ValueError(f"two notes for {name!r}")
            notes[name] = match.group(2).strip()
        elif not line.strip():
            continue
        elif name is not None and line[:1].isspace():
            notes[name] = f"{notes[name]} {line.strip()}".strip()
        else:
            raise ValueError(f"not a note (':name: text'): {line!r}")
    return notes


def options_rst(notes=None):
    """The options as reStructuredText lines (a definition list), each
    option's doc followed by its note, if any."""
    notes = dict(notes or {})
    unknown = sorted(set(notes) - {option.name for option in OPTIONS})
    if unknown:
        raise ValueError(f"notes for options that do not exist: {', '.join(unknown)}")
    lines = []
    for option in OPTIONS:
        text = option.doc
        if option.name in notes:
            text = f"{text} {notes[option.name]}"
        lines += [term(option), f"    {text}", ""]
    return lines


class FuturesOptions(Directive):
    has_content = True

    def run(self):
        try:
            lines = options_rst(parse_notes(self.content))
        except ValueError as exc:
            raise self.error(f"futures-options: {exc}") from None
        container = nodes.container()
        source = self.state_machine.get_source_and_line(self.lineno)[0]
        self.state.nested_parse(
            StringList(lines, source=source), self.content_offset, container)
        return container.children


def setup(app):
    app.add_directive("futures-options", FuturesOptions)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
