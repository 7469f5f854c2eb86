"""core/shared.py: one execution for every concurrent request of a key
(single flight, with a placeholder registered under the lock and the
submit outside it), and results kept for a time-to-live (LRU-bounded)."""

import concurrent.futures
import threading

import pytest

from collective.futures.core.promise import Promise
from collective.futures.core.shared import SharedFutures

from fakes import FakeClock, bounded


def test_single_flight_and_time_to_live():
    clock = [0.0]
    shared = SharedFutures(max_entries=2, clock=lambda: clock[0])
    started = []
    release = threading.Event()
    import concurrent.futures as cf
    pool = cf.ThreadPoolExecutor(2)
    try:
        def submit():
            started.append(1)
            return pool.submit(lambda: release.wait(5) and "value")

        promise = Promise("k", str, shared=True, ttl=10)
        futures_ = [shared.run(promise, submit) for _ in range(100)]
        assert len(set(map(id, futures_))) == 1 and len(started) == 1
        release.set()
        assert futures_[0].result(5) == "value"
        assert shared.cached("k").value == "value"
        assert (shared.executions, shared.joined) == (1, 99)
        clock[0] = 11.0
        assert shared.cached("k") is None  # expired
    finally:
        pool.shutdown()


def test_errors_are_not_kept_and_the_cache_is_bounded():
    import concurrent.futures as cf
    shared = SharedFutures(max_entries=2)

    def done(value=None, error=None):
        future = cf.Future()
        future.set_exception(error) if error else future.set_result(value)
        return lambda: future

    shared.run(Promise("bad", str, shared=True, ttl=10), done(error=ValueError()))
    assert shared.cached("bad") is None
    for key in "abc":
        shared.run(Promise(key, str, shared=True, ttl=10), done(key))
    assert shared.cached("a") is None  # evicted: least recently used
    assert shared.cached("c").value == "c"


def test_a_shared_execution_older_than_the_timeout_is_not_joined():
    import concurrent.futures as cf
    clock = [0.0]
    shared = SharedFutures(clock=lambda: clock[0], stale_after=5)
    hung = cf.Future()
    promise = Promise("k", str, shared=True)
    first = shared.run(promise, lambda: hung)
    clock[0] = 4.0
    assert shared.run(promise, lambda: cf.Future()) is first  # joined
    clock[0] = 6.0
    fresh = cf.Future()
    second = shared.run(promise, lambda: fresh)  # hung: started anew
    assert second is not first
    assert shared.executions == 2
    fresh.set_result("fresh")
    assert second.result(0) == "fresh" and not first.done()


# single flight with a placeholder

def shared_promise(key="k", ttl=0.0, shared_key=None):
    return Promise(key, str, shared=True, ttl=ttl, shared_key=shared_key)


def test_submit_runs_outside_the_lock_and_joiners_get_its_error():
    shared = SharedFutures()
    promise = shared_promise()
    joined = []

    def submit():
        # Runs outside the lock: concurrent requests join the placeholder
        # meanwhile (with the lock held here, this would deadlock).
        joined.extend(shared.run(promise, pytest.fail) for _ in range(3))
        raise RuntimeError("the executor's queue is full")

    first = bounded(lambda: shared.run(promise, submit))
    assert all(f is first for f in joined)
    for future in [first] + joined:
        with pytest.raises(RuntimeError, match="queue is full"):
            future.result(0)
    # Refused by its executor: it never ran, so it is not counted as an
    # execution (the joiners are).
    assert (shared.executions, shared.joined) == (0, 3)
    # The failed execution is over: the next request starts anew.
    again = concurrent.futures.Future()
    assert shared.run(promise, lambda: again) is not first
    assert shared.executions == 1


def test_a_base_exception_from_submit_fails_the_placeholder_and_propagates():
    shared = SharedFutures()
    promise = shared_promise()
    joined = []

    def submit():
        joined.append(shared.run(promise, pytest.fail))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        shared.run(promise, submit)
    # Nobody waits on it until it goes stale: the joiner has the error.
    assert isinstance(joined[0].exception(0), KeyboardInterrupt)
    assert shared.run(promise, concurrent.futures.Future) is not joined[0]


def test_the_placeholder_copies_the_result():
    shared = SharedFutures()
    execution = concurrent.futures.Future()
    placeholder = shared.run(shared_promise(), lambda: execution)
    assert placeholder is not execution and not placeholder.done()
    execution.set_result("value")
    assert placeholder.result(0) == "value"


def test_the_placeholder_copies_the_exception():
    shared = SharedFutures()
    execution = concurrent.futures.Future()
    placeholder = shared.run(shared_promise(), lambda: execution)
    error = LookupError("upstream")
    execution.set_exception(error)
    assert placeholder.exception(0) is error


def test_the_placeholder_copies_a_cancellation():
    shared = SharedFutures()
    execution = concurrent.futures.Future()
    placeholder = shared.run(shared_promise(ttl=10), lambda: execution)
    assert execution.cancel()
    assert placeholder.cancelled()
    assert shared.cached("k") is None  # nothing kept
    # Over: a new request starts a new execution.
    assert shared.run(shared_promise(), concurrent.futures.Future) is not placeholder


def test_a_placeholder_cancelled_by_a_joiner_ignores_the_late_result():
    shared = SharedFutures()
    execution = concurrent.futures.Future()
    placeholder = shared.run(shared_promise(ttl=10), lambda: execution)
    assert placeholder.cancel()
    execution.set_result("late")  # _copy leaves a settled placeholder alone
    assert placeholder.cancelled() and shared.cached("k") is None


def test_a_shared_key_other_than_the_key_identifies_the_execution():
    shared = SharedFutures()
    first = shared.run(shared_promise("a", shared_key="same"),
                       concurrent.futures.Future)
    assert shared.run(shared_promise("b", shared_key="same"), pytest.fail) is first
    assert shared.run(shared_promise("same"), pytest.fail) is first
    assert shared.run(shared_promise("a"), concurrent.futures.Future) is not first


def test_concurrent_requests_share_one_execution_across_threads():
    shared = SharedFutures()
    submits = []
    barrier = threading.Barrier(8, timeout=5)
    execution = concurrent.futures.Future()

    def submit():
        submits.append(1)
        return execution

    def request():
        barrier.wait()
        return shared.run(shared_promise(), submit)

    threads_results = []
    workers = [threading.Thread(target=lambda: threads_results.append(request()))
               for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(5)
    assert len(threads_results) == 8 and len(submits) == 1
    assert len({id(f) for f in threads_results}) == 1


# the time-to-live cache

def finished(value=None, error=None):
    future = concurrent.futures.Future()
    future.set_exception(error) if error else future.set_result(value)
    return lambda: future


def test_a_kept_result_expires_at_its_ttl():
    clock = FakeClock(100.0)
    shared = SharedFutures(clock=clock)
    shared.run(shared_promise(ttl=10), finished("v"))
    clock.advance(9.99)
    assert shared.cached("k").value == "v"
    assert shared.cache_hits == 1
    clock.advance(0.01)
    assert shared.cached("k") is None  # expired at exactly its ttl
    assert shared.cached("k") is None and shared.cache_hits == 1


def test_without_a_ttl_nothing_is_kept():
    shared = SharedFutures()
    shared.run(shared_promise(ttl=0), finished("v"))
    assert shared.cached("k") is None


def test_the_cache_keeps_the_most_recently_used():
    clock = FakeClock()
    shared = SharedFutures(max_entries=2, clock=clock)
    for key in "ab":
        shared.run(shared_promise(key, ttl=60), finished(key))
    assert shared.cached("a").value == "a"  # a is now the most recently used
    shared.run(shared_promise("c", ttl=60), finished("c"))
    assert shared.cached("b") is None  # the least recently used went
    assert shared.cached("a").value == "a" and shared.cached("c").value == "c"


def test_a_new_result_for_a_kept_key_replaces_it():
    clock = FakeClock()
    shared = SharedFutures(max_entries=2, clock=clock)
    shared.run(shared_promise(ttl=5), finished("old"))
    clock.advance(6)
    shared.run(shared_promise(ttl=5), finished("new"))
    assert shared.cached("k").value == "new"


def test_a_result_kept_since_the_request_looked_at_the_cache_is_used():
    # A request looks at the cache in pass 1, before the first execution
    # ends; by the time its round starts that execution has ended and its
    # result is kept: it must not run the function a second time.
    import concurrent.futures as cf
    shared = SharedFutures()
    promise = Promise("feed", str, shared=True, ttl=300)
    ran = []

    def submit():
        ran.append(1)
        future = cf.Future()
        future.set_result("items")
        return future

    assert shared.cached("feed") is None  # pass 1 of both requests
    assert shared.run(promise, submit).result(0) == "items"
    assert shared.run(promise, submit).result(0) == "items"
    assert ran == [1] and shared.executions == 1
    # Positive control: without a ttl nothing is kept, so it runs again.
    again = Promise("other", str, shared=True)
    shared.run(again, submit).result(0)
    shared.run(again, submit).result(0)
    assert ran == [1, 1, 1]
