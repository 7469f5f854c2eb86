"""core/descriptors.py: the descriptor budget admission checks, with a fake
count and limit and the fake clock; and the soft limit raised for real."""

import resource

from collective.futures.core.descriptors import (
    PER_REQUEST, Budget, raise_soft_limit, soft_limit)
from collective.futures.core.runtime import Runtime
from collective.futures.settings import Settings

from fakes import FakeClock


class Counter:
    def __init__(self, value):
        self.value = value
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.value


def budget(open_now, limit=1000, reserve=100, clock=None):
    counter = Counter(open_now)
    return Budget(reserve, limit=lambda: limit, count=counter,
                  clock=clock or FakeClock()), counter


def test_admits_while_the_reserve_stays_free():
    b, _ = budget(open_now=800)
    assert b.refusal(0) is None  # 800 + 2 + 100 <= 1000


def test_refuses_naming_the_figures_once_the_reserve_would_be_touched():
    b, _ = budget(open_now=899)
    assert b.refusal(0) == ("899 of 1000 file descriptors are open "
                            "(ulimit -n; descriptor_reserve 100)")


def test_counts_once_per_interval_and_estimates_in_between():
    clock = FakeClock()
    b, counter = budget(open_now=500, clock=clock)
    for _ in range(100):  # 200 more estimated: still far from the limit
        assert b.refusal(0) is None
    assert counter.calls == 1
    clock.advance(1.0)
    assert b.refusal(0) is None and counter.calls == 2


def test_near_the_limit_it_counts_again_before_refusing():
    clock = FakeClock()
    b, counter = budget(open_now=880, clock=clock)
    # 880 + 2 + 100 = 982: room for 9 more at 2 each by the estimate.
    admitted = sum(b.refusal(0) is None for _ in range(20))
    assert admitted == (1000 - 100 - 880) // PER_REQUEST
    assert counter.calls == 1  # refusals within min_interval: no recount
    counter.value = 700  # descriptors were closed meanwhile
    clock.advance(0.05)
    assert b.refusal(0) is None and counter.calls == 2  # a fresh count


def test_without_a_count_the_in_flight_estimate_decides():
    b = Budget(100, limit=lambda: 1000, count=lambda: None, clock=FakeClock())
    assert b.refusal(449) is None       # 898 + 2 + 100 = 1000
    b = Budget(100, limit=lambda: 1000, count=lambda: None, clock=FakeClock())
    assert b.refusal(450) is not None


def test_no_limit_no_refusal():
    b = Budget(100, limit=lambda: None, count=lambda: 10**9)
    assert b.refusal(10**6) is None


def test_the_real_count_and_limit():
    b = Budget(0)
    assert b.refusal(0) is None  # this test process is far from its limit
    assert isinstance(soft_limit(), int)


def test_raise_soft_limit_goes_to_the_hard_limit_capped():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        before, after = raise_soft_limit(cap=512)
        assert before == 256
        assert after == min(512, hard) if hard != resource.RLIM_INFINITY else 512
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == after
        assert raise_soft_limit(cap=512) == (after, after)  # already there
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_admission_refuses_suspension_past_the_budget_and_may_wait():
    runtime = Runtime(Settings(descriptor_reserve=100))
    runtime.descriptors = Budget(100, limit=lambda: 1000, count=lambda: 950,
                                 clock=FakeClock())
    reason, may_wait = runtime.admission({}, suspending=True)
    assert "950 of 1000 file descriptors are open" in reason and may_wait
    # A request that does not suspend (wait mode) holds no extra descriptor.
    assert runtime.admission({}, suspending=False) == (None, True)
    # Nor may a new stream open.
    assert "file descriptors" in runtime.open_stream()
    assert runtime.open_streams == 0
    runtime.shutdown()


def test_the_connection_bound_keeps_the_reserve_but_at_least_half():
    from collective.futures.core.descriptors import connection_bound
    assert connection_bound(256, limit=lambda: 65536) == 65280
    assert connection_bound(256, limit=lambda: 400) == 200
    assert connection_bound(256, limit=lambda: None) is None
