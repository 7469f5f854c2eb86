"""Every example of the manual (docs/*.rst) is run by a test (issue 12).

Each code block of the manual is one of:

* a ``.. doctest::`` block (or a ``>>>`` block): ``./scripts/docs`` runs
  and compares them (``sphinx-build -b doctest``, docs/conf.py);
* a ``.. literalinclude::`` of a file that a test runs (INCLUDED_BY);
* a snippet (``.. snippet: NAME`` before a ``.. code::`` block,
  tests/doc_snippets.py) that a test runs (RUN_BY);
* a fragment listed in FRAGMENTS with the reason it cannot run alone.

A unit test reads every page with docutils (Sphinx's directives and roles
replaced by stand-ins that keep what matters here) and fails on any other
block.

The functional tests start a real Zope under real waitress with
tests/docs_app, whose modules run the manual's Python snippets at import,
and include the ZCML snippet and template of docs/templates.rst as
written, copied into the instance (the test's files: the package's tree
stays clean). The upstreams are a local HTTP server of this process
(SlowUpstream, answering at once), the only change to the manual's code:
the weather view's URL and the feed template's. docs/plone.rst's snippets
run elsewhere: ``shared-viewlet`` in tests/test_functional_shared.py (a
real Zope), ``news-viewlet-on-error`` in the Plone suite
(tests_plone/test_plone.py, a real Plone site).
"""

import collections
import contextlib
import functools
import inspect
import io
import json
import pathlib
import urllib.parse
import xml.etree.ElementTree as ElementTree
import zipfile

import docutils.core
import docutils.nodes
import docutils.utils
import pytest
from docutils.parsers.rst import Directive, directives, roles
from docutils.parsers.rst.directives.body import CodeBlock

from conftest import wait_for
from doc_snippets import ROOT, snippet, substituted
from docs_app import UPSTREAM_VARIABLE
from slow_upstream import HITS, SlowUpstream
from zopeinstance import ZopeInstance


DOCS = ROOT / "docs"


# Every code block: run, or a fragment.

#: Each snippet of the manual (names are unique across its pages), and
#: what runs it (which names it and its page): a file, or
#: ``file::function`` for a function of this file.
RUN_BY = {
    # docs/api.rst, docs/streams.rst and docs/templates.rst: by this file's
    # functional tests, below (one for each snippet, the page's two
    # named-promise snippets together).
    "api-example": "tests/docs_app/views.py",
    "api-0.9-spelling": "tests/docs_app/views.py",
    "zip-export": "tests/docs_app/streams.py",
    "named-promise-zcml": "tests/test_docs_examples.py::write_docs_files",
    "named-promise-template": "tests/test_docs_examples.py::write_docs_files",
    # docs/plone.rst: tests/test_functional_shared.py (a real Zope).
    "shared-viewlet": "tests/futures_sharedapp/views.py",
    # docs/plone.rst: the Plone suite (a real Plone site), tests_plone/
    # test_plone.py::test_a_viewlet_whose_upstream_fails_degrades_its_part_only
    "news-viewlet-on-error": "tests_plone/futures_plone_app/views.py",
    # docs/fragments.rst: the Plone suite, tests_plone/test_plone_fragments.py
    # (the viewlet and the portlet on a real Plone site's front page).
    "fragment-viewlet": "tests_plone/futures_plone_app/views.py",
    "fragment-portlet": "tests_plone/futures_plone_app/views.py",
    # docs/tasks.rst: tests/test_functional_tasks.py (a real Zope, its
    # own consumer), the test app's views running the snippet.
    "taskqueue-example": "tests/futures_testapp/views.py",
    # docs/tasks.rst: loaded as ZCML, its utilities checked.
    "periodic-zcml": "tests/test_tasks_schedule.py",
    # docs/operations.rst: started in a real Zope by tests/futures_promsite
    # (tests/test_operations.py scrapes it).
    "metrics-endpoint": "tests/futures_promsite/__init__.py",
}

#: Each file the manual includes (``.. literalinclude::``, relative to the
#: repository) that a test runs, and that test (which reads it by name).
INCLUDED_BY = {
    "examples/deployment/zeo.conf": "tests/test_deployment.py",
    "examples/deployment/zope.conf": "tests/test_deployment.py",
    "examples/deployment/zope.ini": "tests/test_deployment.py",
    "examples/deployment/haproxy.cfg": "tests/test_deployment.py",
    "examples/deployment/nginx.conf": "tests/test_deployment.py",
    "examples/deployment/redis.conf": "tests/test_tasks_redis.py",
}
#: The harness modules a runner of INCLUDED_BY reads its files through.
HARNESS = {"tests/test_deployment.py": "tests/deployment.py"}

#: What runs the doctest blocks: the manual's build (sphinx-build -b
#: doctest), which CI runs (.ci/run).
DOCTESTS_RUN_BY = "./scripts/docs"

#: The manual's blocks that cannot run alone, by their page and first line
#: (an included file's: its path), each with the reason. One entry covers
#: every block of the page with that first line.
FRAGMENTS = {
    ("docs/fragments.rst", "GET /Plone: 200 in one pass, 1 fragment(s) filled in "
     "0.302s, 48213 bytes (complete); fragments: weather [threads] 0.300s rendered"):
        "a log line, not code: tests/test_fragments.py::"
        "test_the_manual_s_log_line_is_the_one_written checks its shape against "
        "the lines a real Zope writes",
    ("docs/tasks.rst", "task_periodic.nightly-report  0 4 * * *  /Plone/@@nightly-report"):
        "zope.conf lines, not code: test_the_periodic_tasks_lines_of_the_manual_are_valid "
        "(below) reads them with Settings.from_mapping, and tests/"
        "test_functional_tasks.py runs an @every periodic task on two instances",
    ("docs/tasks.rst", 'taskqueue.add("/Plone/reports/@@build", run_as="reports-bot")'):
        "two calls, not a program (the reader's paths and user): the Plone "
        "suite runs add() with run_as a user id and ANONYMOUS "
        "(tests_plone/test_plone_tasks.py::"
        "test_a_task_runs_as_the_user_trusted_code_names), the core suite its "
        "errors (tests/test_functional_tasks.py)",
    ("docs/deployment.rst", "<product-config collective.futures>"):
        "a zope.conf excerpt: test_the_redis_settings_of_the_manual_are_valid "
        "(below) reads it with Settings.from_mapping; tests/"
        "test_functional_tasks_redis.py runs instances so configured",
    ("docs/deployment.rst", "COLLECTIVE_FUTURES_TASK_BACKEND=redis://:PASSWORD@redis:6379/0"):
        "environment variables, not code: test_the_redis_settings_of_the_manual_are_valid "
        "reads them with from_environment; tests/test_functional_tasks_redis.py "
        "starts an instance configured by such variables alone",
    ("docs/configuration.rst", "<product-config collective.futures>"):
        "a zope.conf excerpt, not code: the doctest below it validates the "
        "same strings with Settings.from_mapping (what startup calls), and "
        "the functional tests' Zopes read such a section (tests/"
        "zopeinstance.py writes it from their product_config)",
    ("docs/executors.rst", "from collective import futures"):
        "two calls, not a program: render_pdf, data and fetch_rates are the "
        "reader's; the doctest below runs futures.promise with these "
        "options, tests/test_functional_executors.py the processes executor "
        "and shared promises with a ttl",
    ("docs/executors.rst", "import httpx"):
        "needs httpx, which is not a dependency (the reader installs it), "
        "and the reader's skus() in a view elided with '...'; HTTP calls "
        "on the asyncio executor are run by "
        "tests/test_functional_executors.py",
    ("docs/install.rst", "./scripts/demo    # set up and start a demo Zope: "
                         "http://localhost:8080/@@futures-demo"):
        "shell commands, not an example of the API: the scripts they name "
        "are the project's own (./scripts/test runs every test, "
        "tests/test_demo.py the demo)",
    ("docs/deployment.rst", "frontend www"):
        "haproxy excerpts (two blocks) showing where a rule on the path "
        "goes, not a configuration: the haproxy.cfg they discuss is run by "
        "tests/test_deployment.py",
    ("docs/deployment.rst", "backend zope"):
        "the wrong way, on purpose: tests/test_deployment.py puts its first "
        "rule into the shipped haproxy.cfg and checks that it never matches "
        "(test_haproxy_a_path_rule_after_the_rewrite_never_matches)",
    ("docs/operations.rst", "INFO [collective.futures.requests][waitress-1] "
                            "GET /@@weather: 200 after 2 passes in 1.012s; "
                            "promises: forecast [asyncio] 1.004s completed, "
                            "radar [threads] 1.010s FutureTimeoutError"):
        "a line of the request log (output, not code): "
        "tests/test_operations.py checks the line a real Zope writes",
    ("docs/benchmarks.rst", "docs/benchmark.txt"):
        "the benchmark suite's report as ./scripts/bench wrote it, with "
        "docs/benchmark.json (output, not code)",
}


# Reading the manual with docutils: Sphinx's directives and roles, which
# docutils does not know, replaced by stand-ins.

class _AnyOption(dict):
    """An option_spec that takes any option as text (a stand-in does not
    interpret them). True although empty: docutils looks for options only
    when a directive's option_spec is."""

    def __bool__(self):
        return True

    def __missing__(self, name):
        return directives.unchanged


def _where(directive):
    """(page, line) of a directive: the file that holds it (an included
    file's own), relative to the repository, and its line."""
    source, line = directive.state_machine.get_source_and_line(directive.lineno)
    return _relative(pathlib.Path(source)), line


def _relative(path):
    return path.resolve().relative_to(ROOT).as_posix()


class _Doctest(Directive):
    """Sphinx's ``doctest`` (sphinx.ext.doctest): a block of kind
    ``doctest``, its content the examples."""

    has_content = True
    optional_arguments = 1  # a group
    final_argument_whitespace = True
    option_spec = _AnyOption()

    def run(self):
        text = "\n".join(self.content)
        page, line = _where(self)
        return [docutils.nodes.literal_block(text, text, kind="doctest",
                                             page=page, line=line)]


class _LiteralInclude(Directive):
    """Sphinx's ``literalinclude``: a block of kind ``include``, its first
    line the included file's path (relative to the repository; in the
    directive, to the page)."""

    required_arguments = 1
    final_argument_whitespace = True
    option_spec = _AnyOption()

    def run(self):
        page, line = _where(self)
        path = _relative((ROOT / page).parent / self.arguments[0])
        return [docutils.nodes.literal_block(path, path, kind="include",
                                             page=page, line=line)]


class _Code(CodeBlock):
    """docutils' own ``code``, its block given the page and line of the
    directive (docutils gives it neither)."""

    def run(self):
        result = super().run()
        result[0]["page"], result[0]["line"] = _where(self)
        return result


class _Prose(Directive):
    """A directive of the manual's extensions whose content is
    reStructuredText (``bench-requires``, ``futures-options``): parsed,
    so that a block in it is found."""

    has_content = True
    optional_arguments = 1
    final_argument_whitespace = True

    def run(self):
        container = docutils.nodes.container()
        self.state.nested_parse(self.content, self.content_offset, container)
        return [container]


class _Generated(Directive):
    """A directive whose content is not reStructuredText (``toctree``: page
    names; ``bench-summary``: rows of a table it writes): no code."""

    has_content = True
    optional_arguments = 1
    final_argument_whitespace = True
    option_spec = _AnyOption()

    def run(self):
        return []


#: The directives of Sphinx and of docs/_ext that the manual uses (and
#: docutils' code, for its line). A directive that is not here (nor
#: docutils') is an error: add it, with what it holds.
SPHINX_DIRECTIVES = {
    "code": _Code,
    "doctest": _Doctest,
    "literalinclude": _LiteralInclude,
    "bench-requires": _Prose,
    "futures-options": _Prose,
    "toctree": _Generated,
    "bench-summary": _Generated,
    "bench-slow-requests": _Generated,
}


def _text_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    return [docutils.nodes.literal(rawtext, text)], []


#: The roles of Sphinx and of docs/_ext that the manual uses (their text
#: kept as it is).
SPHINX_ROLES = ("doc", "ref", "download", "bench", "bench-literal", "bench-range",
                "bench-strong", "bench-target", "bench-times")


@contextlib.contextmanager
def sphinx_stand_ins():
    """docutils knows SPHINX_DIRECTIVES and SPHINX_ROLES inside the block.
    docutils registers directives and roles in module globals only (no
    per-document registry), so they are restored on the way out, as
    Sphinx's own docutils_namespace() does: the README's test, which must
    fail on a Sphinx directive, sees plain docutils."""
    saved = dict(directives._directives), dict(roles._roles)
    try:
        for name, directive in SPHINX_DIRECTIVES.items():
            directives.register_directive(name, directive)
        for name in SPHINX_ROLES:
            roles.register_local_role(name, _text_role)
        yield
    finally:
        directives._directives.clear()
        directives._directives.update(saved[0])
        roles._roles.clear()
        roles._roles.update(saved[1])


#: One code block of the manual: its page (the file holding it, relative to
#: the repository), line, kind (``code`` for ``.. code::``, ``literal`` for
#: ``::``, ``doctest``, ``include``), language (``.. code::``'s), first line
#: (an included file's: its path) and snippet name (or None).
Block = collections.namedtuple("Block", "page line kind language first name")


def code_blocks(page, text=None):
    """Every code block of ``page`` (a path relative to the repository),
    as docutils reads it with the stand-ins: a ``.. code::`` block is a
    snippet when the node before it is the comment ``snippet: NAME``.
    ``text`` is the page's (its file's if not given). ValueError, naming
    the page and line, on any error docutils reports (a directive or role
    that it and the stand-ins do not know)."""
    path = ROOT / page
    if text is None:
        text = path.read_text(encoding="utf-8")
    try:
        with sphinx_stand_ins():
            document = docutils.core.publish_doctree(
                text, source_path=str(path),
                settings_overrides={"report_level": 5, "halt_level": 3})
    except docutils.utils.SystemMessage as exc:
        raise ValueError(f"{page} does not read without errors: {exc}") from exc
    blocks = []
    for node in document.findall(lambda node: isinstance(
            node, (docutils.nodes.literal_block, docutils.nodes.doctest_block))):
        text = node.astext()
        if isinstance(node, docutils.nodes.doctest_block):
            kind, language = "doctest", None  # Sphinx's doctest runs these too
        elif "kind" in node:
            kind, language = node["kind"], None
        else:
            classes = node.get("classes", [])
            kind = "code" if classes[:1] == ["code"] else "literal"
            language = classes[1] if kind == "code" and len(classes) > 1 else None
        name = None
        index = node.parent.index(node)
        before = node.parent[index - 1] if index else None
        if isinstance(before, docutils.nodes.comment):
            marker = before.astext().strip()
            if marker.startswith("snippet: "):
                name = marker[len("snippet: "):].strip()
        where = (node.get("page") or
                 (_relative(pathlib.Path(node.source)) if node.source else page))
        blocks.append(Block(where, node.get("line", node.line), kind, language,
                            (text.splitlines() or [""])[0].strip(), name))
    return blocks


def unaccounted(blocks, fragments, included=INCLUDED_BY):
    """The blocks of ``blocks`` that are neither doctests, nor snippets, nor
    includes of a file in ``included``, nor in ``fragments``."""
    return [block for block in blocks
            if block.kind != "doctest" and block.name is None
            and not (block.kind == "include" and block.first in included)
            and (block.page, block.first) not in fragments]


def runner_source(where):
    """The source of what RUN_BY names."""
    path, _, function = where.partition("::")
    if function:
        assert ROOT / path == pathlib.Path(__file__).resolve(), where
        return inspect.getsource(globals()[function])
    return (ROOT / path).read_text(encoding="utf-8")


@functools.cache
def manual_blocks():
    """The code blocks of every page of the manual (docs/*.rst)."""
    pages = sorted(_relative(path) for path in DOCS.glob("*.rst"))
    return [block for page in pages for block in code_blocks(page)]


def test_every_block_of_the_manual_is_run_or_a_listed_fragment():
    blocks = manual_blocks()
    kinds = collections.Counter(block.kind for block in blocks)
    # The reading finds them: the manual had 29 blocks when this was written.
    assert len(blocks) >= 29 and kinds["doctest"] >= 8 and kinds["include"] >= 6, kinds
    assert unaccounted(blocks, FRAGMENTS) == []
    # An entry for a block that is no longer in the manual is dropped.
    assert set(FRAGMENTS) <= {(block.page, block.first) for block in blocks}
    assert set(INCLUDED_BY) <= {block.first for block in blocks
                                if block.kind == "include"}


def test_every_snippet_of_the_manual_is_run_by_a_test():
    snippets = [block for block in manual_blocks() if block.name is not None]
    names = [block.name for block in snippets]
    assert len(names) == len(set(names)), names  # unique across the pages
    assert sorted(names) == sorted(RUN_BY)
    for block in snippets:
        # doc_snippets reads the block that docutils reads, in its language.
        assert block.kind == "code", block
        code = snippet(block.page, block.name, block.language)
        assert code.splitlines()[0].strip() == block.first, block
        runner = runner_source(RUN_BY[block.name])
        assert f'"{block.name}"' in runner and f'"{block.page}"' in runner, block
    # Positive control: a runner does not name what it does not run.
    assert '"docs/streams.rst"' not in runner_source(RUN_BY["api-example"])


def test_every_included_file_is_run_by_its_test():
    for path, test in INCLUDED_BY.items():
        assert (ROOT / path).is_file(), path
        # The test, or the harness it imports, reads the file by its name
        # (shipped("zeo.conf")).
        source = runner_source(test)
        harness = HARNESS.get(test)
        if harness is not None:
            assert f"from {pathlib.PurePath(harness).stem} import" in source
            source += runner_source(harness)
        assert f'"{pathlib.PurePath(path).name}"' in source, path
    assert '"other.conf"' not in runner_source("tests/test_deployment.py")
    assert '"other.conf"' not in runner_source("tests/deployment.py")


def test_the_doctest_blocks_are_run_by_the_manuals_build():
    doctests = [block for block in manual_blocks() if block.kind == "doctest"]
    # Each holds examples (a block without ">>>" would run nothing).
    for block in doctests:
        assert block.first.startswith(">>> "), block
    assert '"sphinx.ext.doctest"' in (DOCS / "conf.py").read_text()
    build = (ROOT / DOCTESTS_RUN_BY).read_text()
    assert '/bin/sphinx-build" -W -b doctest docs ' in build, build
    assert f"\n{DOCTESTS_RUN_BY}\n" in (ROOT / ".ci/run").read_text()


MADE_UP = "docs/made-up.rst"


def test_an_unmarked_block_is_found():
    # Positive control: a page (under docs/, for the include's path) with
    # a snippet, a fragment, a doctest, an include of a run file and one
    # of another file, and two blocks that are none of these.
    page = ("Title\n=====\n\n.. snippet: one\n\n.. code:: python\n\n    x = 1\n\n"
            ".. code:: xml\n\n    <configure />\n\nRun::\n\n    ./run --fast\n\n"
            "See :doc:`api`.\n\n.. doctest::\n\n    >>> 1 + 1\n    2\n\n"
            ".. literalinclude:: ../examples/deployment/zeo.conf\n   :language: none\n\n"
            ".. literalinclude:: ../examples/deployment/other.conf\n\n"
            ".. bench-requires:: overhead\n\n   In it::\n\n       nested\n")
    blocks = code_blocks(MADE_UP, page)
    assert [block[2:] for block in blocks] == [
        ("code", "python", "x = 1", "one"),
        ("code", "xml", "<configure />", None),
        ("literal", None, "./run --fast", None),
        ("doctest", None, ">>> 1 + 1", None),
        ("include", None, "examples/deployment/zeo.conf", None),
        ("include", None, "examples/deployment/other.conf", None),
        ("literal", None, "nested", None)]
    assert {block.page for block in blocks} == {MADE_UP}
    assert [block.first for block in unaccounted(
        blocks, {(MADE_UP, "./run --fast"): "a command"})] == [
        "<configure />", "examples/deployment/other.conf", "nested"]
    assert [block.first for block in unaccounted(blocks, {}, included={})] == [
        "<configure />", "./run --fast", "examples/deployment/zeo.conf",
        "examples/deployment/other.conf", "nested"]
    # A fragment is listed for its page only.
    assert len(unaccounted(blocks, {("docs/other.rst", "./run --fast"): "no"})) == 4


def test_an_unknown_directive_is_an_error():
    # Positive control: a directive that neither docutils nor the stand-ins
    # know might hold code; so might a bad option on a known one.
    with pytest.raises(ValueError, match=r"made-up.rst does not read without "
                                         r"errors: .*Unknown directive type"):
        code_blocks(MADE_UP, "Title\n=====\n\n.. testcode::\n\n   x = 1\n")
    with pytest.raises(ValueError, match="unknown option"):
        code_blocks(MADE_UP, ".. code:: python\n   :emphasize-lines: 1\n\n   x = 1\n")
    # The stand-ins are gone after the reading: plain docutils (as the
    # README's test renders it) still fails on them.
    with pytest.raises(docutils.utils.SystemMessage, match="doctest"):
        docutils.core.publish_doctree(".. doctest::\n\n   >>> 1\n   1\n",
                                      settings_overrides={"report_level": 5,
                                                          "halt_level": 3})


# The manual's upstreams, on 127.0.0.1; a real Zope that runs its examples.

@pytest.fixture(scope="module")
def upstream():
    """SlowUpstream answering at once: ``/feed.xml`` is an RSS feed (three
    stories), any other path ``{"delay": D}`` after D seconds (``?delay=D``,
    0 by default); HITS counts the requests by path."""
    service = SlowUpstream(delay=0.0).start()
    yield service
    service.stop()


#: The feed docs/templates.rst's template shows.
TEMPLATES_FEED = "https://example.org/news.xml"

#: The test's own registration of the template as a page.
FEED_PAGE = """\
<configure xmlns="http://namespaces.zope.org/zope"
           xmlns:browser="http://namespaces.zope.org/browser">
  <browser:page for="*" name="docs-feed" template="feed.pt"
                permission="zope2.View" />
</configure>
"""


def write_docs_files(directory, upstream):
    """docs/templates.rst's ZCML and template as files of the instance (the
    template's feed the local one); the ZCML files to include, in order."""
    directory.mkdir()
    template = snippet("docs/templates.rst", "named-promise-template", "html")
    files = {
        "named-promise.zcml": snippet("docs/templates.rst", "named-promise-zcml", "xml"),
        "feed.pt": substituted(template, TEMPLATES_FEED, upstream.url + "feed.xml"),
        "feed-page.zcml": FEED_PAGE,
    }
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return [directory / name for name in ("named-promise.zcml", "feed-page.zcml")]


def include_in_site(instance, zcml_files):
    """Include ``zcml_files`` in the instance's site.zcml, after its
    packages, with docs_app as their package: ``.feeds.fetch_feed`` is
    found there, ``feed.pt`` next to the file."""
    site = instance.home / "etc/site.zcml"
    text = site.read_text()
    assert text.count("</configure>") == 1, text
    includes = "".join(f'  <include package="docs_app" file="{path}" />\n'
                       for path in zcml_files)
    site.write_text(text.replace("</configure>", includes + "</configure>"))


@pytest.fixture(scope="module")
def zope(tmp_path_factory, upstream):
    home = tmp_path_factory.mktemp("zope")
    instance = ZopeInstance(home, threads=2, packages=("docs_app",)).create()
    include_in_site(instance, write_docs_files(home / "docs", upstream))
    # docs_app.views reads the local upstream's URL at import, in the Zope
    # process, which inherits this environment as it starts.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(UPSTREAM_VARIABLE, upstream.url.rstrip("/"))
        instance.start()
    yield instance
    instance.stop()


def collapsed(text):
    return " ".join(text.split())


def metrics(zope):
    status, _, body = zope.request("/@@futures-metrics", headers=zope.admin_headers())
    assert status == 200, body[:300]
    return json.loads(body)


def two_pass_requests(zope):
    return metrics(zope)["passes"].get("2", 0)


def form_post(zope, path, **form):
    """A ZMI form posted by the Manager (answered with a page or a
    redirect)."""
    body = urllib.parse.urlencode(form, doseq=True).encode()
    status, _, answer = zope.request(path, method="POST", body=body, headers={
        **zope.admin_headers(),
        "Content-Type": "application/x-www-form-urlencoded"})
    assert status in (200, 302), (path, status, answer[:500])


# docs/api.rst

@pytest.mark.functional
def test_the_api_example_renders_the_upstream_through_its_template(zope):
    passes, fetched = two_pass_requests(zope), HITS.get("/weather", 0)
    status, text = zope.get("/@@docs-weather")
    assert status == 200, text[:500]
    # The upstream's JSON, through the test's template.
    assert collapsed(text) == "<p>The upstream answered after 0.0 s.</p>"
    assert HITS.get("/weather", 0) == fetched + 1
    # Pass 1 gave the placeholder and was thrown away.
    assert two_pass_requests(zope) == passes + 1
    assert "placeholder" not in text


@pytest.mark.functional
def test_the_0_9_spelling_gives_the_result_in_pass_2(zope):
    passes = two_pass_requests(zope)
    status, text = zope.get("/@@docs-legacy-spelling")
    assert (status, text) == (200, "my_slow_function('arg', kwarg='value')")
    assert two_pass_requests(zope) == passes + 1  # "placeholder" thrown away


# docs/streams.rst

@pytest.fixture(scope="module")
def exports(zope, upstream):
    """The folder ``exports`` and its items, each a Folder whose string
    property ``remote_url`` is an upstream URL; the URLs' paths, in order.
    Their delays (in the answers) tell the answers apart."""
    paths = {"one": ("/one.json", 0.0), "two": ("/two.json", 0.01)}
    form_post(zope, "/manage_addProduct/OFSP/manage_addFolder", id="exports")
    for name, (path, delay) in paths.items():
        form_post(zope, "/exports/manage_addProduct/OFSP/manage_addFolder", id=name)
        form_post(zope, f"/exports/{name}/manage_addProperty", id="remote_url",
                  type="string", value=f"{upstream.url.rstrip('/')}{path}?delay={delay}")
    return list(paths.values())


@pytest.mark.functional
def test_the_zip_export_streams_one_member_per_item(zope, exports):
    complete = metrics(zope)["streams"].get("complete", 0)
    fetched = [HITS.get(path, 0) for path, _ in exports]
    status, headers, body = zope.request("/exports/@@docs-export")
    assert status == 200, body[:500]
    assert headers["Content-Type"] == "application/zip"
    assert headers["Content-Disposition"] == 'attachment; filename="export.zip"'
    archive = zipfile.ZipFile(io.BytesIO(body))
    assert archive.testzip() is None
    assert archive.namelist() == ["1.json", "2.json"]
    assert [json.loads(archive.read(name)) for name in archive.namelist()] == [
        {"delay": delay} for _, delay in exports]
    assert [HITS.get(path, 0) for path, _ in exports] == [n + 1 for n in fetched]
    # A stream that the server took over from the worker, complete (counted
    # once its last byte is written, maybe just after the client read it).
    wait_for(lambda: metrics(zope)["streams"].get("complete", 0) == complete + 1,
             message="the export counted as a complete stream")


# docs/templates.rst

@pytest.mark.functional
def test_the_named_promise_template_renders_the_feed_kept_for_later_visitors(zope):
    expected = [(f"https://example.org/{n}", f"Story {n}") for n in (1, 2, 3)]
    for visitor in ("first", "later"):
        fetched, passes = HITS.get("/feed.xml", 0), two_pass_requests(zope)
        status, text = zope.get("/@@docs-feed")
        assert status == 200, text[:500]
        page = ElementTree.fromstring(text)  # the template's div, no "Loading…"
        assert page.tag == "div" and page.find("p") is None, text
        assert [(link.get("href"), link.text) for link in page.iter("a")] == expected
        # shared="true" ttl="300": the first visitor's request fetches the
        # feed in two passes; a later one gets the kept feed in one.
        new_fetches, new_two_pass = (HITS.get("/feed.xml", 0) - fetched,
                                     two_pass_requests(zope) - passes)
        assert (new_fetches, new_two_pass) == ((1, 1) if visitor == "first" else (0, 0))


def test_the_periodic_tasks_lines_of_the_manual_are_valid():
    from collective.futures.settings import Settings
    page = (DOCS / "tasks.rst").read_text()
    lines = [line.strip() for line in page.splitlines()
             if line.strip().startswith("task_periodic.")]
    assert len(lines) == 2, lines
    mapping = dict(line.split(None, 1) for line in lines)
    settings = Settings.from_mapping(mapping)
    assert settings.periodic == (("nightly-report", "0 4 * * *", "/Plone/@@nightly-report"),
                                 ("sync", "off", ""))


def test_the_redis_settings_of_the_manual_are_valid():
    from collective.futures.settings import Settings, from_environment
    page = (DOCS / "deployment.rst").read_text()
    config = page.split("<product-config collective.futures>", 1)[1].split(
        "</product-config>", 1)[0]
    mapping = dict(line.split(None, 1) for line in map(str.strip, config.splitlines())
                   if line and not line.startswith("#"))
    settings = Settings.from_mapping(mapping)
    assert settings.task_backend.startswith("redis://") and settings.task_consumer
    variables = dict(line.strip().split("=", 1) for line in page.splitlines()
                     if line.strip().startswith("COLLECTIVE_FUTURES_"))
    assert from_environment(variables) == {
        "task_backend": "redis://:PASSWORD@redis:6379/0", "task_consumer": "on"}
