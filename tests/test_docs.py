"""The README, the changelog and the manual in docs/: they render, the
manual documents every option with its default, and the measured figures
agree with docs/benchmark.json.

Sphinx itself is not imported here (``./scripts/docs`` builds the manual
with warnings as errors); the manual's option list comes from a docutils
directive that these tests run without Sphinx.
"""

import importlib.util
import json
import pathlib
import re

import docutils.core
import pytest

from collective.futures.settings import OPTIONS


ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def render(text):
    docutils.core.publish_string(
        text, writer="null",
        settings_overrides={"report_level": 2, "halt_level": 2})


@pytest.mark.parametrize("name", ["README.rst", "CHANGES.rst"])
def test_renders_without_warnings(name):
    render((ROOT / name).read_text())


def test_readme_gives_the_commands_and_names_the_chapters_that_exist():
    readme = (ROOT / "README.rst").read_text()
    for command in ("./scripts/demo", "./scripts/test", "./scripts/docs"):
        assert command in readme, command
    named = set(re.findall(r"``([a-z]\w*)\.rst``", readme))
    chapters = {path.stem for path in DOCS.glob("*.rst")} - {"index"}
    assert named, "the README names no chapter of the manual"
    assert named - chapters == set(), "named but missing from docs/"
    assert chapters - named == set(), "in docs/ but not named by the README"


# The options: configuration.rst lists them with the futures-options
# directive (docs/_ext/futures_options.py), which writes them from OPTIONS.

def options_extension():
    spec = importlib.util.spec_from_file_location(
        "futures_options", DOCS / "_ext" / "futures_options.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def documented(option):
    """How the manual must name ``option`` and its default."""
    default = option.default
    if isinstance(default, bool):
        default = "on" if default else "off"
    elif isinstance(default, float) and default.is_integer():
        default = int(default)
    return (f"``{option.name}`` (no default)" if default == "" else
            f"``{option.name}`` (default ``{default}``)")


def directive_content(chapter):
    """The content lines of the futures-options directive in ``chapter``."""
    lines = chapter.splitlines()
    start = lines.index(".. futures-options::")
    content = []
    for line in lines[start + 1:]:
        if line and not line[:1].isspace():
            break
        content.append(line[3:])
    return content


def test_configuration_chapter_documents_every_option_with_its_default():
    chapter = (DOCS / "configuration.rst").read_text()
    assert ".. futures-options::" in chapter.splitlines()
    extension = options_extension()
    # What the directive writes for the chapter, its notes included.
    generated = "\n".join(extension.options_rst(
        extension.parse_notes(directive_content(chapter))))
    for option in OPTIONS:
        assert documented(option) in generated, option.name
    # The options' own text is valid reStructuredText.
    render("\n".join(extension.options_rst()))


def test_every_note_of_the_configuration_chapter_names_an_option():
    extension = options_extension()
    chapter = (DOCS / "configuration.rst").read_text()
    notes = extension.parse_notes(directive_content(chapter))
    assert notes and set(notes) <= {option.name for option in OPTIONS}
    # Positive control: a note for an option that does not exist fails
    # (the Sphinx build turns this into an error).
    with pytest.raises(ValueError, match="max_worker"):
        extension.options_rst({"max_worker": "a typo"})


# The measured figures: the suite's tables and the figures written in
# prose, in the README's headline and in docs/benchmarks.rst, agree with
# docs/benchmark.json (written by ./scripts/bench) to the digits printed.

BENCHMARK = json.loads((DOCS / "benchmark.json").read_text())


def agrees(printed, actual):
    """``printed`` ("252.8", "2,700", "37") is ``actual`` rounded to the
    digits it shows (trailing zeros of a whole number are not digits)."""
    digits = printed.replace(",", "")
    if "." in digits:
        tolerance = 0.5 * 10 ** -len(digits.split(".")[1])
    else:
        tolerance = 0.5 * 10 ** (len(digits) - len(digits.rstrip("0")))
    return abs(float(digits) - actual) <= tolerance + 1e-9 * abs(actual)


def time_agrees(printed, figures, prefix):
    """``≥5.2s`` / ``37 ms`` against ``{prefix}_ms`` and whether it is a
    lower bound (``{prefix}_censored``)."""
    match = re.fullmatch(r"(≥?)(\d+(?:\.\d+)?) ?(ms|s)", printed)
    assert match, printed
    scale = 1000.0 if match.group(3) == "s" else 1.0
    return (bool(match.group(1)) == figures[f"{prefix}_censored"]
            and agrees(match.group(2), figures[f"{prefix}_ms"] / scale))


ROW = re.compile(
    r"^(?P<config>\S.*?\S)\s{2,}(?P<c>\d+)\s+(?P<rps>[\d.]+)\s+"
    r"(?P<eff>[\d.]+)\s+(?P<p99>≥?[\d.]+ ?m?s)\s+(?P<plain>≥?[\d.]+ ?m?s)\s+"
    r"(?P<rss>\d+)\s*$")


def suite_rows(text):
    """The rows of the suite's tables (configuration, C, req/s, eff., p99,
    plain p99, RSS MiB) in ``text``."""
    rows = []
    for line in text.splitlines():
        for config in BENCHMARK["results"]:
            if re.match(re.escape(config) + r"\s{2,}\d+\s", line):
                match = ROW.match(line)
                assert match and match["config"] == config, line
                rows.append(match)
    return rows


@pytest.mark.parametrize("name, at_least", [("README.rst", 5),
                                            ("docs/benchmarks.rst", 11)])
def test_suite_tables_agree_with_benchmark_json(name, at_least):
    rows = suite_rows((ROOT / name).read_text())
    assert len(rows) >= at_least
    for row in rows:
        figures = BENCHMARK["results"][row["config"]][row["c"]]
        line = row.group(0)
        assert agrees(row["rps"], figures["throughput_rps"]), line
        assert agrees(row["eff"], figures["efficiency"]), line
        assert time_agrees(row["p99"], figures, "slow_p99"), line
        assert time_agrees(row["plain"], figures, "plain_p99"), line
        assert agrees(row["rss"], figures["rss_peak_mib"]), line


def result(config, concurrency, key):
    return lambda report: report["results"][config][str(concurrency)][key]


def ratio(name):
    return lambda report: report["ratios"][name]


def fairness_range(configs, concurrencies, pick):
    return lambda report: pick(
        report["results"][config][str(c)]["fairness"]
        for config in configs for c in concurrencies)


FUTURES = "futures, threads executor"
STREAMS = "stream iterator"
ASYNCIO = "futures, asyncio executor"
STOCK2, STOCK64 = "stock, threads=2", "stock, threads=64"

# Figures in prose: the sentence as it reads (whitespace collapsed), with
# {} for each figure, and where each figure comes from.
PROSE = [
    ("``benchmarks/suite.py``, {} s here", [lambda r: r["suite_seconds"]]),
    ("against that trivial service: {} req/s",
     [lambda r: r["loadgen_ceiling_rps"]]),
    ("met by all three: futures {} and {}, streams {} and {}, asyncio {} and "
     "{}. Stock Zope: {} and {} with 2 threads; {} and {} with 64.",
     [ratio(f"efficiency C={c}: {config}")
      for config in (FUTURES, STREAMS, ASYNCIO, STOCK2, STOCK64)
      for c in (64, 256)]),
    ("met at C ≤ 16 ({} to {}), missed above: at C = 64, {} (futures), {} "
     "(streams), {} (asyncio); at C = 256, {} (futures, {} ms), {} (streams, "
     "{} ms), {} (asyncio, {} ms).",
     [fairness_range((FUTURES, STREAMS, ASYNCIO), (1, 16), min),
      fairness_range((FUTURES, STREAMS, ASYNCIO), (1, 16), max),
      result(FUTURES, 64, "fairness"), result(STREAMS, 64, "fairness"),
      result(ASYNCIO, 64, "fairness"),
      result(FUTURES, 256, "fairness"), result(FUTURES, 256, "plain_p99_ms"),
      result(STREAMS, 256, "fairness"), result(STREAMS, 256, "plain_p99_ms"),
      result(ASYNCIO, 256, "fairness"), result(ASYNCIO, 256, "plain_p99_ms")]),
    ("against seconds for stock Zope ({} to {} with 2 threads, {} with 64 at "
     "C = 256)",
     [fairness_range((STOCK2,), (16, 64, 256), min),
      fairness_range((STOCK2,), (16, 64, 256), max),
      result(STOCK64, 256, "fairness")]),
    ("(without it, {} ms at C = 256; with it, {} ms)",
     [result("futures, threads, no fairness gate", 256, "plain_p99_ms"),
      result(FUTURES, 256, "plain_p99_ms")]),
    ("**≥ 0.97**: {} ({} against {} req/s at C = 16",
     [ratio("overhead (plain page, C=16)"),
      lambda r: r["plain_page_rps_c16"][FUTURES],
      lambda r: r["plain_page_rps_c16"][STOCK2]]),
    ("{} KiB with asyncio, {} KiB with the thread executor (mostly its 512 "
     "threads' stacks), {} KiB for streams at C = 512 (missed by {} KiB). "
     "Stock Zope with 64 threads holding 64 blocked requests: {} MiB in all, "
     "{} KiB per request; the futures instance holding 512 suspended "
     "requests: {} to {} MiB.",
     [ratio(f"KiB per suspended request, C=512: {ASYNCIO}"),
      ratio(f"KiB per suspended request, C=512: {FUTURES}"),
      ratio(f"KiB per suspended request, C=512: {STREAMS}"),
      lambda r: r["ratios"][f"KiB per suspended request, C=512: {STREAMS}"] - 64,
      ratio("RSS MiB, threads=64 holding 64 blocked requests"),
      ratio("KiB per blocked request, threads=64, C=64"),
      lambda r: min(v for k, v in r["ratios"].items()
                    if k.startswith("RSS MiB, futures") or k.startswith(
                        "RSS MiB, stream")),
      lambda r: max(v for k, v in r["ratios"].items()
                    if k.startswith("RSS MiB, futures") or k.startswith(
                        "RSS MiB, stream"))]),
    ("{} ms of CPU per request for a futures page with L = 0, against {} ms "
     "for the same page rendered once: {} times, the price of rendering pass "
     "1 (CPU ceiling {} against {} req/s).",
     [ratio("CPU ms per request, two passes (futures, L=0)"),
      ratio("CPU ms per request, rendered once (stock, L=0)"),
      ratio("two-pass cost (CPU ratio)"),
      lambda r: r["ceilings"][FUTURES]["throughput_rps"],
      lambda r: r["ceilings"][STOCK2]["throughput_rps"]]),
]


@pytest.mark.parametrize("sentence, figures", PROSE,
                         ids=[sentence[:30] for sentence, _ in PROSE])
def test_figures_in_prose_agree_with_benchmark_json(sentence, figures):
    text = " ".join((DOCS / "benchmarks.rst").read_text().split())
    pattern = r"([\d,]+(?:\.\d+)?)".join(
        re.escape(part) for part in sentence.split("{}"))
    match = re.search(pattern, text)
    assert match, f"not found in docs/benchmarks.rst: {sentence}"
    assert len(match.groups()) == len(figures)
    for printed, figure in zip(match.groups(), figures):
        assert agrees(printed, figure(BENCHMARK)), (printed, sentence)


def test_figure_check_fails_on_a_wrong_figure():
    # Positive control: the checks above can fail.
    assert agrees("252.8", 252.8) and agrees("2,700", 2746.89)
    assert not agrees("252.9", 252.8) and not agrees("2,800", 2746.89)
    row = suite_rows("futures, threads executor             256  252.9  "
                     "0.99   1.05s  37 ms       73")[0]
    assert not agrees(row["rps"], BENCHMARK["results"][FUTURES]["256"][
        "throughput_rps"])
    assert not time_agrees("1.05s", {"slow_p99_ms": 1049.2,
                                     "slow_p99_censored": True}, "slow_p99")
