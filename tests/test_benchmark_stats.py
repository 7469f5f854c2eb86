"""The benchmark's statistics, on made-up samples."""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "benchmarks"))

from loadgen import Sample  # noqa: E402
from suite import percentile, throughput  # noqa: E402


def sample(user, start, end, status=200, censored=False):
    s = Sample(user, start)
    s.end, s.status, s.censored = end, status, censored
    return s


def test_closed_loop_throughput_is_exact_despite_the_window_edges():
    # One user, 1 s per request, from t = 0 to 6.2: 1 req/s, although a
    # fixed window [1.5, 6.2] would count 4 completions in 4.7 s.
    samples = [sample(0, t, t + 1.0) for t in range(6)]
    assert throughput(samples, 0.0, 6.2, 1.5) == pytest.approx(1.0)


def test_overloaded_users_count_their_completions_over_the_window():
    samples = [sample(u, 0.0, 3.0 + u) for u in range(2)] + [
        sample(u, 0.0, 6.0, censored=True, status=0) for u in range(2, 10)]
    assert throughput(samples, 0.0, 6.0, 1.0) == pytest.approx(2 / 5.0)


def test_errors_are_not_throughput():
    samples = [sample(0, t, t + 1.0, status=500) for t in range(6)]
    assert throughput(samples, 0.0, 6.0, 1.0) == 0


def test_percentiles_say_when_they_are_a_lower_bound():
    samples = [sample(0, 0, 0.1)] * 98 + [sample(1, 0, 5.0, censored=True)] * 2
    assert percentile(samples, 0.5) == (pytest.approx(0.1), False)
    value, censored = percentile(samples, 0.99)
    assert value == pytest.approx(5.0) and censored
    assert percentile([], 0.5) == (None, False)


def test_a_cycle_that_fits_two_and_a_half_times_in_the_window_is_not_undercounted():
    # The scale run's shape: 4,096 users staggered over 10 s, a cycle of
    # 11.8 s, a 40 s run measured after 10.5 s: each user completes two or
    # three requests in the window. The server sustains C / cycle (Little's
    # law); estimating the two-completion users by their count over the
    # window said about 10 % less.
    cycle, users, stagger, duration, warm = 11.8, 4096, 10.0, 40.0, 10.5
    samples = []
    for user in range(users):
        t = stagger * user / users
        while t + cycle <= duration:
            samples.append(sample(user, t, t + cycle))
            t += cycle
    assert throughput(samples, 0.0, duration, warm) == pytest.approx(users / cycle, rel=0.01)
