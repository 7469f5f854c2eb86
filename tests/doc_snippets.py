"""Code of the README and the manual that tests run as it is written.

A snippet is the ``.. code:: LANGUAGE`` block (python unless said) that
follows a comment line ``.. snippet: NAME`` (invisible in the rendered
page). Used by the tests (tests/test_functional_shared.py,
tests/test_readme_examples.py, tests/test_docs_examples.py) and by the
views of the Zope and Plone instances they start (tests/futures_sharedapp,
tests/readme_app, tests/docs_app, tests_plone/futures_plone_app), so that
what runs is what the page shows, read from the file at each call or
import.
"""

import pathlib
import textwrap


ROOT = pathlib.Path(__file__).resolve().parent.parent


def snippet(source, name, language="python"):
    """The code of the snippet ``name`` in ``source`` (a path relative to
    the repository: ``README.rst``, ``docs/plone.rst``), a ``.. code::
    language`` block (``python``, ``xml``, ``html``). ValueError if
    ``source`` has none, or more than one, of that name, or if its block
    is of another language."""
    lines = (ROOT / source).read_text(encoding="utf-8").splitlines()
    marker = f".. snippet: {name}"
    starts = [number for number, line in enumerate(lines) if line.strip() == marker]
    if len(starts) != 1:
        raise ValueError(f"{source}: {len(starts)} snippets named {name!r}, not 1")
    rest = iter(lines[starts[0] + 1:])
    for line in rest:
        if line.strip():
            if line.strip() != f".. code:: {language}":
                raise ValueError(
                    f"{source}: the snippet {name!r} is not followed by a "
                    f"{language} code block but by {line.strip()!r}")
            break
    block = []
    for line in rest:
        if line.strip() and not line[:1].isspace():
            break  # the end of the block: text at the margin
        block.append(line)
    code = textwrap.dedent("\n".join(block)).strip()
    if not code:
        raise ValueError(f"{source}: the snippet {name!r} has no code")
    return code + "\n"


def substituted(code, old, new):
    """``code`` with every ``old`` (an address the page shows, such as its
    upstream's URL) replaced by ``new`` (the test's stand-in). ValueError
    if ``code`` has no ``old``: a page whose address changed must fail the
    test, not send it to the real address."""
    if old not in code:
        raise ValueError(f"the snippet does not contain {old!r}: "
                         f"{code[:200]!r}")
    return code.replace(old, new)
