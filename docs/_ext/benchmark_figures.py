"""The benchmark chapter's figures, read from ``docs/benchmark.json`` (the
report of one full ``./scripts/bench`` run) at build time, so the text
cannot quote a figure the run did not measure.

Every figure goes through ``benchmarks/figures.py``: a path of keys from
the top of the report down to one value, and a format (see its
docstring). Roles, for figures in prose (fields separated by ``|``; a
role's text may wrap over lines, each run of whitespace reads as one
space)::

    :bench:`PATH|FMT|SCALE`          the figure (FMT default "{}", SCALE none)
    :bench-strong:`PATH|FMT|SCALE`   the same, in bold
    :bench-literal:`PATH|FMT|SCALE`  the same, as code
    :bench-range:`PATH & PATH ...|FMT|SCALE`
                                     "LOW to HIGH" over several figures
                                     (one figure when both read the same)
    :bench-target:`PATH & ...|OP THRESHOLD|FMT|SCALE`
                                     "met" when every figure compares with
                                     THRESHOLD by OP (>=, <=, > or <), else
                                     "missed by X": X the largest shortfall,
                                     in FMT (default ".3g"; its significant
                                     digits if FMT would show it as zero).
                                     A lower bound that may or may not meet
                                     the target is an error, not a guess
    :bench-times:`PATH`              a count in words: "once", "twice",
                                     "3 times"

FMT is figures.py's format, or ``duration`` for a time in ms: seconds
from 1 s up ("1.05 s"), whole ms from 10 ms ("37 ms"), tenths below
("2.4 ms"); "≥" marks a lower bound. SCALE is a number or a fraction
(``1/1024``) the value is multiplied by first.

Directives, for the tables::

    .. bench-summary::

       stock, threads=2/16           one row per line: results/<config>/<C>
       futures, threads executor/256

    .. bench-slow-requests::         the slow_requests table, every configuration

    .. bench-requires:: slow_requests

       Text with figures under slow_requests.

A figure the report does not have is an error naming its path, which
fails the build (it runs with -W); the page would show the role's source
marked as an error, never a stand-in figure. The one exception is
``bench-requires``: a report written before the suite measured a part
(``LATER``: the commit, the failures, slow_requests, stream_memory,
executors, scale, soak, overhead, tasks, tasks_redis, fragments_plone) has no key for it at all, and the block then shows a note,
"Measured in the next full run", instead of its content. It only accepts
those keys, and only the top-level key's absence counts: a wrong path
inside a key that is there is an error as anywhere else.

The functions above the Sphinx glue need docutils only:
``tests/test_docs.py`` renders every figure of the chapter with them.
"""

import importlib.util
import json
import numbers
import operator
import pathlib
import re

from docutils import nodes
from docutils.parsers.rst import Directive


ROOT = pathlib.Path(__file__).resolve().parents[2]


def _load_figures():
    # benchmarks/ is a folder of scripts, not a package: load figures.py
    # by its path, under a name of its own.
    spec = importlib.util.spec_from_file_location(
        "_benchmark_figures_figures", ROOT / "benchmarks" / "figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


figures = _load_figures()
FigureError = figures.FigureError

#: Top-level keys written only by the suite since it also runs the other
#: benchmarks and records the commit: an older report lacks them.
LATER = ("commit", "failures", "slow_requests", "stream_memory", "executors",
         "scale", "soak", "overhead", "tasks", "tasks_redis", "fragments_plone")

#: The suite's summary table: (heading, key under results/<config>/<C>, FMT).
SUMMARY_COLUMNS = [
    ("req/s", "throughput_rps", "{:.1f}"),
    ("eff.", "efficiency", "{:.2f}"),
    ("p99", "slow_p99_ms", "duration"),
    ("plain p99", "plain_p99_ms", "duration"),
    ("RSS MiB", "rss_peak_mib", "{:.0f}"),
]

#: slow_requests' table: (heading, key under slow_requests/results/<config>, FMT).
SLOW_REQUESTS_COLUMNS = [
    ("total", "total_s", "{:.2f} s"),
    ("min", "min_s", "{:.2f}"),
    ("median", "median_s", "{:.2f}"),
    ("max", "max_s", "{:.2f}"),
    ("plain probes", "plain_probes", "{}"),
    ("plain median", "plain_median_ms", "duration"),
    ("plain max", "plain_max_ms", "duration"),
]

_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
        "≥": operator.ge, "≤": operator.le}
_AT_MOST = ("<=", "<", "≤")


# -- The figures (docutils only) -------------------------------------------

def fields(text):
    """A role's text as its ``|``-separated fields, whitespace collapsed."""
    return [field.strip() for field in " ".join(text.split()).split("|")]


def paths_of(field):
    """The paths of a field that names several, joined by `` & ``."""
    paths = [path.strip() for path in field.split(" & ")]
    if not all(paths):
        raise FigureError(f"an empty path in {field!r}")
    return paths


def parse_scale(text):
    """``""`` (none), a number (``0.001``) or a fraction (``1/1024``)."""
    if not text:
        return None
    try:
        if "/" in text:
            top, bottom = text.split("/")
            return float(top) / float(bottom)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise FigureError(f"bad scale {text!r}: a number or a fraction") from None


def number(report, path, scale=None):
    """The figure at ``path`` as a number (scaled)."""
    value = figures.lookup(report, path)
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise FigureError(f"{path!r} is {value!r}, not a number")
    return value if scale is None else value * scale


def figure(report, path, fmt="{}", scale=None):
    """figures.figure, and the ``duration`` format for a time in ms."""
    if fmt != "duration":
        return figures.figure(report, path, fmt or "{}", scale)
    if scale is not None:
        raise FigureError(f"{path!r}: a duration takes no scale (it is in ms)")
    value = number(report, path)
    if round(value) >= 1000:
        return figures.figure(report, path, "{bound}{:.2f} s", 0.001)
    if round(value, 1) >= 10:
        return figures.figure(report, path, "{bound}{:.0f} ms")
    return figures.figure(report, path, "{bound}{:.1f} ms")


def _figure_role(report, text):
    path, fmt, scale, *extra = fields(text) + ["", ""]
    if any(extra):
        raise FigureError(f"too many fields in {text!r}: PATH|FMT|SCALE")
    return figure(report, path, fmt or "{}", parse_scale(scale))


def _range_role(report, text):
    field, fmt, scale, *extra = fields(text) + ["", ""]
    if any(extra):
        raise FigureError(f"too many fields in {text!r}: PATHS|FMT|SCALE")
    scale = parse_scale(scale)
    paths = paths_of(field)
    ordered = sorted(paths, key=lambda path: number(report, path, scale))
    low, high = (figure(report, path, fmt or "{}", scale)
                 for path in (ordered[0], ordered[-1]))
    return low if low == high else f"{low} to {high}"


def target(report, text):
    """"met" or "missed by X" (see the module's docstring)."""
    field, comparison, fmt, scale, *extra = fields(text) + ["", "", ""]
    if not comparison or any(extra):
        raise FigureError(f"{text!r}: PATHS|OP THRESHOLD|FMT|SCALE")
    op, _, threshold = comparison.partition(" ")
    if op not in _OPS:
        raise FigureError(f"{text!r}: the comparison is one of {', '.join(_OPS)}, "
                          f"then a space and the threshold")
    try:
        threshold = float(threshold)
    except ValueError:
        raise FigureError(f"{text!r}: bad threshold {threshold!r}") from None
    scale = parse_scale(scale)
    compare, at_most = _OPS[op], op in _AT_MOST
    worst = None  # (shortfall, whether it is a lower bound)
    for path in paths_of(field):
        value = number(report, path, scale)
        met = compare(value, threshold)
        bound = figures.is_lower_bound(report, path)
        if bound and met == at_most:
            # The figure is at least ``value``: whether it meets the
            # target is not known, and no verdict is better than a guess.
            raise FigureError(f"{path!r} is a lower bound: whether it is "
                              f"{op} {threshold:g} is not known")
        if not met and (worst is None or abs(value - threshold) > worst[0]):
            worst = (abs(value - threshold), bound)
    if worst is None:
        return "met"
    template = fmt or ".3g"
    template = template if "{" in template else "{:" + template + "}"
    shortfall, bound = worst
    try:
        text_out = template.format(
            shortfall, value=shortfall, bound=figures.LOWER_BOUND if bound else "")
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise FigureError(f"{text!r}: the shortfall does not format: {exc}") from exc
    if shortfall and not re.search("[1-9]", text_out):
        # 3.04 against <= 3 in ".1f" would read "missed by 0.0": give the
        # shortfall its first significant digits instead.
        text_out = re.sub(r"\d+(?:\.\d+)?", f"{shortfall:.2g}", text_out, count=1)
    return "missed by " + text_out


def times(report, text):
    """A count in words."""
    (path,) = fields(text)
    value = figures.lookup(report, path)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise FigureError(f"{path!r} is {value!r}, not a count")
    return {1: "once", 2: "twice"}.get(value, f"{value:,} times")


#: What each role renders (a string), and the node it goes in.
ROLES = {
    "bench": (_figure_role, nodes.inline),
    "bench-strong": (_figure_role, nodes.strong),
    "bench-literal": (_figure_role, nodes.literal),
    "bench-range": (_range_role, nodes.inline),
    "bench-target": (target, nodes.inline),
    "bench-times": (times, nodes.inline),
}


def render(kind, text, report):
    """What the role ``kind`` renders for ``text``; FigureError if the
    report has no such figure or the text is malformed."""
    return ROLES[kind][0](report, text)


def role_paths(kind, text):
    """The paths a role's text names."""
    first = fields(text)[0]
    return paths_of(first) if kind in ("bench-range", "bench-target") else [first]


def _cells(report, prefix, row_keys, columns):
    return [[figure(report, prefix + tuple(keys) + (key,), fmt)
             for _, key, fmt in columns] for keys in row_keys]


def summary_rows(lines):
    """The rows of a bench-summary directive: (config, C) pairs."""
    rows = []
    for line in lines:
        if line.strip():
            keys = figures.parse(line.strip())
            if len(keys) != 2:
                raise FigureError(f"a row is CONFIGURATION/C, not {line.strip()!r}")
            rows.append(keys)
    if not rows:
        raise FigureError("bench-summary names no row")
    return rows


def summary_table(report, rows):
    """The suite's summary table: (headings, rows of cells)."""
    headings = ["configuration", "C"] + [heading for heading, _, _ in SUMMARY_COLUMNS]
    cells = _cells(report, ("results",), rows, SUMMARY_COLUMNS)
    return headings, [[config, c] + row for (config, c), row in zip(rows, cells)]


def slow_requests_table(report):
    """slow_requests' table, every configuration it measured."""
    part = report.get("slow_requests")
    results = part.get("results") if isinstance(part, dict) else None
    if not isinstance(results, dict) or not results:
        raise FigureError("slow_requests/results: no configuration in the report")
    headings = ["configuration"] + [heading for heading, _, _ in SLOW_REQUESTS_COLUMNS]
    configs = [(name,) for name in results]
    cells = _cells(report, ("slow_requests", "results"), configs, SLOW_REQUESTS_COLUMNS)
    return headings, [[name] + row for (name,), row in zip(configs, cells)]


def load_report(path):
    try:
        report = json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise FigureError(f"cannot read the benchmark report {path}: {exc}") from exc
    if not isinstance(report, dict):
        raise FigureError(f"{path} is not a benchmark report (a JSON object)")
    return report


# -- Sphinx glue -----------------------------------------------------------

_loaded = {}


def report_of(document):
    """The report of the project being built (the ``bench_report`` file
    in the source folder), a dependency of the page that quotes it."""
    env = document.settings.env
    path = pathlib.Path(env.srcdir) / env.config.bench_report
    env.note_dependency(str(path))
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as exc:
        raise FigureError(f"no benchmark report {path}: {exc}") from exc
    if _loaded.get(path, (None,))[0] != stamp:
        _loaded[path] = (stamp, load_report(path))
    return _loaded[path][1]


def _role(kind):
    make, node_class = ROLES[kind]

    def role(name, rawtext, text, lineno, inliner, options=None, content=None):
        try:
            text_out = make(report_of(inliner.document), text)
        except FigureError as exc:
            message = inliner.reporter.error(
                f":{kind}:`{' '.join(text.split())}`: {exc}", line=lineno)
            return [inliner.problematic(rawtext, rawtext, message)], [message]
        return [node_class(rawtext, text_out)], []
    return role


def table_node(headings, rows):
    table = nodes.table()
    group = nodes.tgroup(cols=len(headings))
    table += group
    for _ in headings:
        group += nodes.colspec(colwidth=1)

    def row_node(cells):
        row = nodes.row()
        for cell in cells:
            entry = nodes.entry()
            entry += nodes.paragraph(text=str(cell))
            row += entry
        return row
    head = nodes.thead()
    head += row_node(headings)
    body = nodes.tbody()
    for cells in rows:
        body += row_node(cells)
    group += head
    group += body
    return table


class _BenchDirective(Directive):

    def report(self):
        try:
            return report_of(self.state.document)
        except FigureError as exc:
            raise self.error(f"{self.name}: {exc}") from None


class BenchSummary(_BenchDirective):
    has_content = True

    def run(self):
        report = self.report()
        try:
            headings, rows = summary_table(report, summary_rows(self.content))
        except FigureError as exc:
            raise self.error(f"bench-summary: {exc}") from None
        return [table_node(headings, rows)]


class BenchSlowRequests(_BenchDirective):

    def run(self):
        report = self.report()
        try:
            headings, rows = slow_requests_table(report)
        except FigureError as exc:
            raise self.error(f"bench-slow-requests: {exc}") from None
        return [table_node(headings, rows)]


class BenchRequires(_BenchDirective):
    required_arguments = 1
    has_content = True

    def run(self):
        key = self.arguments[0]
        if key not in LATER:
            raise self.error(f"bench-requires: {key!r} is not one of the keys a "
                             f"report may lack ({', '.join(LATER)})")
        report = self.report()
        if key not in report:
            note = nodes.admonition(classes=["note"])
            note += nodes.title(text="Measured in the next full run")
            text = nodes.paragraph()
            text += [nodes.literal(text="docs/benchmark.json"),
                     nodes.Text(" predates the suite's "),
                     nodes.literal(text=key),
                     nodes.Text(" figures: the next full run ("),
                     nodes.literal(text="./scripts/bench --out docs"),
                     nodes.Text(") writes them.")]
            note += text
            return [note]
        container = nodes.container()
        self.state.nested_parse(self.content, self.content_offset, container)
        return container.children


def setup(app):
    app.add_config_value("bench_report", "benchmark.json", "env")
    for kind in ROLES:
        app.add_role(kind, _role(kind))
    app.add_directive("bench-summary", BenchSummary)
    app.add_directive("bench-slow-requests", BenchSlowRequests)
    app.add_directive("bench-requires", BenchRequires)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
