"""benchmarks/figures.py: one figure of a benchmark report, by path, on
made-up reports."""

import json
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "benchmarks"))

from figures import FigureError, figure, is_lower_bound, lookup, parse, paths  # noqa: E402


REPORT = {
    "machine": {"python": "3.11.7", "cpus": 2},
    "results": {
        "futures, threads executor": {
            "256": {"throughput_rps": 252.84, "efficiency": 0.988,
                    "slow_p99_ms": 1050.0, "slow_p99_censored": False,
                    "plain_p99_ms": None, "plain_p99_censored": False},
        },
        "stock, threads=2": {
            "16": {"throughput_rps": 1.8, "slow_p99_ms": 5213.4,
                   "slow_p99_censored": True},
        },
    },
    "ratios": {"overhead (plain page, C=16)": 1.03,
               "efficiency C=64: stock, threads=2": 0.028},
    "slow_requests": {"results": {"collective.futures": {
        "statuses": [200], "total_s": 1.084}}},
    "executors": {"asyncio": {"promises": 1000, "answer": {"ok": 1000, "n": 1000}},
                  "process_crash": {"page": "square=49; died"}},
    "stream_memory": {"intact": True, "bytes": 1073741824},
    "a/b": {"c": 7},
}


def test_a_path_is_keys_separated_by_slashes_taken_as_written():
    assert lookup(REPORT, "results/futures, threads executor/256/throughput_rps") \
        == 252.84
    assert lookup(REPORT, "ratios/overhead (plain page, C=16)") == 1.03
    assert lookup(REPORT, "ratios/efficiency C=64: stock, threads=2") == 0.028
    assert parse("results/stock, threads=2/16") == ("results", "stock, threads=2", "16")
    # Nothing is stripped: a space is part of a key.
    with pytest.raises(FigureError):
        lookup(REPORT, "results/ stock, threads=2/16/throughput_rps")


def test_a_tuple_of_keys_reaches_a_key_with_a_slash_and_numbers_name_json_keys():
    assert lookup(REPORT, ("a/b", "c")) == 7
    with pytest.raises(FigureError):
        lookup(REPORT, "a/b/c")
    assert lookup(REPORT, ("results", "stock, threads=2", 16, "throughput_rps")) == 1.8


def test_a_list_element_by_its_index():
    assert lookup(REPORT, "slow_requests/results/collective.futures/statuses/0") == 200
    for index in ("1", "-1", "01", "x"):
        with pytest.raises(FigureError, match="list of 1"):
            lookup(REPORT, f"slow_requests/results/collective.futures/statuses/{index}")


def test_a_missing_key_says_where_the_path_stopped_and_what_is_there():
    with pytest.raises(FigureError) as info:
        lookup(REPORT, "results/futures, threads executor/512/throughput_rps")
    assert "results/futures, threads executor has no key '512'" in str(info.value)
    assert "'256'" in str(info.value)


@pytest.mark.parametrize("path, why", [
    ("results/futures, threads executor/256/plain_p99_ms", "did not measure"),
    ("results/futures, threads executor", "not one figure"),
    ("slow_requests/results/collective.futures/statuses", "not one figure"),
    ("machine/cpus/more", "single value"),
    ("machine//cpus", "empty key"),
    ("", "empty key"),
    ((), "empty key"),
])
def test_only_a_single_measured_value_is_a_figure(path, why):
    with pytest.raises(FigureError, match=why):
        lookup(REPORT, path)


@pytest.mark.parametrize("path, fmt, scale, text", [
    ("results/futures, threads executor/256/throughput_rps", ".1f", None, "252.8"),
    ("results/futures, threads executor/256/throughput_rps", "{:.1f} req/s", None,
     "252.8 req/s"),
    ("results/futures, threads executor/256/efficiency", "{value:.3f}", None, "0.988"),
    ("executors/asyncio/promises", ",", None, "1,000"),
    ("executors/asyncio/promises", "{}", None, "1000"),
    ("stream_memory/bytes", "{:.0f} MiB", 2**-20, "1024 MiB"),
    ("results/stock, threads=2/16/slow_p99_ms", "{bound}{:.1f}s", 0.001, "≥5.2s"),
    ("results/futures, threads executor/256/slow_p99_ms", "{bound}{:.2f}s", 0.001,
     "1.05s"),
    ("executors/process_crash/page", "{}", None, "square=49; died"),
    ("stream_memory/intact", "{}", None, "True"),
])
def test_figure_formats_the_value(path, fmt, scale, text):
    assert figure(REPORT, path, fmt, scale=scale) == text


def test_the_default_format_is_the_value_as_it_prints():
    assert figure(REPORT, "slow_requests/results/collective.futures/total_s") == "1.084"


def test_a_lower_bound_is_told_by_the_censored_neighbour():
    assert is_lower_bound(REPORT, "results/stock, threads=2/16/slow_p99_ms")
    assert not is_lower_bound(REPORT, "results/futures, threads executor/256/slow_p99_ms")
    # No neighbour, or not a latency: never a lower bound.
    assert not is_lower_bound(REPORT, "results/stock, threads=2/16/throughput_rps")
    assert not is_lower_bound(REPORT, "slow_requests/results/collective.futures/total_s")


@pytest.mark.parametrize("path, fmt, scale", [
    ("executors/process_crash/page", ".2f", None),
    ("executors/process_crash/page", "{}", 2),
    ("stream_memory/intact", "{}", 2),
    ("executors/asyncio/promises", "{1}", None),
    ("executors/asyncio/promises", "{other}", None),
])
def test_a_format_that_does_not_fit_the_value_is_a_figure_error(path, fmt, scale):
    with pytest.raises(FigureError):
        figure(REPORT, path, fmt, scale=scale)


def test_paths_lists_every_single_value_and_each_one_resolves():
    listed = list(paths(json.loads(json.dumps({k: v for k, v in REPORT.items()
                                               if k != "a/b"}))))
    assert "results/futures, threads executor/256/throughput_rps" in listed
    assert "slow_requests/results/collective.futures/statuses/0" in listed
    assert "executors/asyncio/answer/ok" in listed
    assert len(listed) == 21
    for path in listed:
        if path != "results/futures, threads executor/256/plain_p99_ms":
            lookup(REPORT, path)
