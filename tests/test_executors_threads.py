"""executors/threads.py (and the BoundedPool of executors/base.py it is):
named daemon threads on demand up to a bound, a queue with its own bound,
idle threads retired, a bounded shutdown. Real threads: every wait is
bounded (an Event, a future's result, wait_for), none is a bare sleep."""

import concurrent.futures
import threading

import pytest
from zope.interface.verify import verifyObject

from collective import futures
from collective.futures.executors.base import BoundedPool
from collective.futures.executors.threads import ThreadExecutor
from collective.futures.interfaces import IBoundedExecutor

from conftest import wait_for


@pytest.fixture
def make_pool():
    made = []

    def make(*args, **kwargs):
        pool = ThreadExecutor(*args, **kwargs)
        made.append(pool)
        return pool

    yield make
    for pool in made:
        pool.shutdown()


def test_the_thread_executor_provides_its_interface():
    assert verifyObject(IBoundedExecutor, ThreadExecutor(1))


def test_the_thread_executor_reports_its_bounds():
    pool = ThreadExecutor(3, max_queue=4)
    assert (pool.runs_in, pool.capacity, pool.max_queue) == ("threads", 3, 4)
    assert (pool.queued, pool.running, pool.threads) == (0, 0, 0)


def test_side_pool_runs_concurrently_with_named_daemon_threads():
    pool = ThreadExecutor(4)
    try:
        # The barrier opens only when 4 calls wait at it at the same time:
        # with fewer threads it breaks (BrokenBarrierError after 5 s).
        barrier = threading.Barrier(4, timeout=5)
        met = []  # (name, alive, daemon, threads of the pool) at the barrier

        def meet():
            me = threading.current_thread()
            met.append((me.name, me.is_alive(), me.daemon))
            barrier.wait()
            return pool.threads

        seen = [f.result(5) for f in [pool.submit(meet) for _ in range(4)]]
        names = sorted(name for name, _, _ in met)
        assert names == [f"collective.futures-worker-{n}" for n in (1, 2, 3, 4)]
        assert all(alive and daemon for _, alive, daemon in met)
        # Every call saw the 4 workers alive together, and no fifth.
        assert seen == [4] * 4
    finally:
        pool.shutdown()


def test_side_pool_is_bounded_and_queued_work_can_be_cancelled():
    pool = ThreadExecutor(1)
    try:
        release = threading.Event()
        running = pool.submit(release.wait, 5)
        queued = pool.submit(lambda: "never")
        wait_for(lambda: pool.queued == 1, message="the first call to be taken")
        assert pool.threads == 1 and pool.queued == 1
        assert queued.cancel()
        release.set()
        assert running.result(5) is True
    finally:
        pool.shutdown()


def test_side_pool_survives_base_exceptions():
    pool = ThreadExecutor(1)
    try:
        def exit_():
            raise SystemExit("promise called sys.exit")

        with pytest.raises(SystemExit):
            pool.submit(exit_).result(5)
        assert pool.submit(lambda: "still alive").result(5) == "still alive"
        assert pool.threads == 1
    finally:
        pool.shutdown()


def test_side_pool_idle_threads_retire():
    pool = ThreadExecutor(2, idle_seconds=0.05)
    try:
        pool.submit(lambda: None).result(5)
        wait_for(lambda: pool.threads == 0, message="the idle thread to retire")
        assert pool.submit(lambda: 7).result(5) == 7
    finally:
        pool.shutdown()


def test_side_pool_after_shutdown():
    pool = ThreadExecutor(1)
    pool.shutdown()
    pool.shutdown()  # idempotent
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(lambda: None)


def test_a_queue_bound_of_zero_still_uses_idle_capacity():
    pool = ThreadExecutor(2, max_queue=0)
    try:
        assert pool.submit(lambda: 1).result(5) == 1
        release = threading.Event()
        held = [pool.submit(release.wait, 5) for _ in range(2)]
        wait_for(lambda: pool.running == 2 and pool.queued == 0,
                 message="both calls to be taken")
        with pytest.raises(futures.ExecutorFullError):
            pool.submit(lambda: 2)
        release.set()
        for future in held:
            future.result(5)
    finally:
        pool.shutdown()


def test_workers_start_on_demand_up_to_the_bound_and_the_rest_queue(make_pool):
    pool = make_pool(2, max_queue=3)
    assert pool.threads == 0  # nothing started before the first submit
    release = threading.Event()
    held = [pool.submit(release.wait, 5)]
    wait_for(lambda: pool.queued == 0, message="the first call to be taken")
    held.append(pool.submit(release.wait, 5))
    wait_for(lambda: pool.queued == 0, message="the second call to be taken")
    held.extend(pool.submit(release.wait, 5) for _ in range(3))
    assert (pool.threads, pool.running, pool.queued) == (2, 2, 3)
    with pytest.raises(futures.ExecutorFullError,
                       match=r"is full: 2 running, 3 waiting \(max_queue\)"):
        pool.submit(lambda: None)
    release.set()
    assert [f.result(5) for f in held] == [True] * 5
    assert pool.threads == 2  # never more than max_workers


class ColdPool(BoundedPool):
    """A BoundedPool whose workers never take anything: the state right
    after submit() started a worker, before that thread took its item."""

    def _start_worker(self, number):
        return object(), "a worker that has not taken its item yet"


def test_a_burst_within_capacity_is_accepted():
    # A worker started for a queued item, that has not taken it yet, is
    # spare, not busy: with max_queue 0 (the stream pool) a second submit
    # right after a first one to a cold pool is not refused.
    pool = ColdPool(2, "cold", max_queue=0)
    pool.submit(lambda: 1)
    pool.submit(lambda: 2)  # capacity 2: this one must not wait, nor fail
    assert pool.threads == 2


def test_a_cold_pool_refuses_past_capacity_plus_queue():
    # The positive control of the test above: past the bound it refuses.
    pool = ColdPool(1, "cold", max_queue=1)
    pool.submit(lambda: 1)  # for the one worker
    pool.submit(lambda: 2)  # the one queue place
    with pytest.raises(futures.ExecutorFullError):
        pool.submit(lambda: 3)
    assert pool.threads == 1 and pool.queued == 2


def test_an_idle_worker_takes_new_work_before_another_starts(make_pool):
    pool = make_pool(4)
    for _ in range(3):
        assert pool.submit(threading.current_thread).result(5).name == (
            "collective.futures-worker-1")
        wait_for(lambda: pool.running == 0, message="the worker to be idle")
    assert pool.threads == 1


def started_and_held(pool):
    """Submit a call that holds its worker; return (future, release) once
    the call runs."""
    started, release = threading.Event(), threading.Event()

    def hold():
        started.set()
        return release.wait(5)

    future = pool.submit(hold)
    assert started.wait(5)
    return future, release


def test_shutdown_can_cancel_queued_work(make_pool):
    pool = make_pool(1)
    running, release = started_and_held(pool)
    queued = pool.submit(lambda: "never")
    pool.shutdown(wait=False, cancel_futures=True)
    assert queued.cancelled()
    release.set()
    assert running.result(5) is True  # what ran finishes
    wait_for(lambda: pool.threads == 0, message="the worker to stop")
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(lambda: None)


def test_shutdown_waits_for_running_work(make_pool):
    pool = make_pool(1)
    running, release = started_and_held(pool)
    threading.Timer(0.01, release.set).start()
    pool.shutdown(wait=True)
    assert running.done() and pool.threads == 0


def test_shutdown_without_cancel_runs_queued_work(make_pool):
    # As concurrent.futures does: accepted work is done, not left pending.
    pool = make_pool(1)
    running, release = started_and_held(pool)
    queued = pool.submit(lambda: "ran")
    pool.shutdown(wait=False)
    release.set()
    assert running.result(5) is True
    assert queued.result(5) == "ran"
    wait_for(lambda: pool.threads == 0, message="the worker to stop")


# The thread really dies, which pytest reports: that is the point here.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_worker_that_dies_gives_its_place_back(make_pool):
    # Whatever ends a worker thread (here: something outside fn's
    # catch-all), it no longer counts as running or alive, so the pool's
    # capacity is not lost for good.
    pool = make_pool(1, max_queue=0)

    class Dying(concurrent.futures.Future):
        def set_running_or_notify_cancel(self):
            raise SystemExit("the worker dies")

    original = concurrent.futures.Future
    before = set(threading.enumerate())
    concurrent.futures.Future = Dying
    try:
        pool.submit(lambda: 1)
    finally:
        concurrent.futures.Future = original
    wait_for(lambda: pool.threads == 0, message="the dead worker to be gone")
    # The pool counts it gone before the thread has ended: join it here, so
    # that its death is reported during this test (which expects it), not
    # during whichever test runs next.
    for thread in set(threading.enumerate()) - before:
        thread.join(5)
        assert not thread.is_alive(), thread
    assert pool.running == 0
    assert pool.submit(lambda: 2).result(5) == 2


def test_threads_cannot_be_interrupted(make_pool):
    pool = make_pool(1)
    future = pool.submit(lambda: 1)
    assert pool.interrupt(future) is False
    assert future.result(5) == 1


def test_a_bad_bound():
    with pytest.raises(ValueError, match="max_workers must be 1 or more"):
        ThreadExecutor(0)


def test_cancelled_queued_work_does_not_count_against_the_bound(make_pool):
    # A cancelled item stays in the queue until a worker would take it: it
    # counted as waiting, and a soak saw spurious 503s for work nobody
    # wanted any more.
    pool = make_pool(1, max_queue=2)
    running, release = started_and_held(pool)
    queued = [pool.submit(lambda: 1) for _ in range(2)]
    with pytest.raises(futures.ExecutorFullError):  # the control: full
        pool.submit(lambda: 2)
    for future in queued:
        assert future.cancel()
    assert pool.queued == 0
    accepted = pool.submit(lambda: 3)
    release.set()
    assert accepted.result(5) == 3 and running.result(5) is True
