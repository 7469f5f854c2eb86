"""The contract every task-queue backend must pass: each test checks
sentences of ITaskBackend's docstrings (interfaces.py), on every backend
unchanged, the clock driven by ``now=`` (T0 plus offsets). The SQLite-only
tests at the end check what only a file shared by processes can."""

import json
import os
import subprocess
import sys
import threading
import time
import uuid

import pytest
from zope.interface.verify import verifyObject

from collective.futures.exceptions import TaskQueueUnavailableError
from collective.futures.interfaces import TASK_STATES, ITaskBackend

T0 = 1_800_000_000.0
STORED_FIELDS = ("state", "lease_until", "consumer", "last_error", "finished")
COUNTED = TASK_STATES + ("scheduled",)  # what stats counts


def task(**overrides):
    """A new task as plain data: every field ITaskBackend lists."""
    fields = {"id": uuid.uuid4().hex, "queue": "default", "method": "GET",
              "path": "/site/@@job", "headers": [], "payload": b"", "user": None,
              "created": T0, "eta": T0, "attempts": 0, "max_attempts": 5,
              "backoff": 1.0, "dedup": None}
    fields.update(overrides)
    return fields


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend(request, tmp_path):
    if request.param == "memory":
        from collective.futures.tasks.memory import MemoryBackend
        made = MemoryBackend()
    elif request.param == "redis":
        from collective.futures.tasks.redis import RedisBackend
        server = request.getfixturevalue("redis_server")
        # Each test its own keys.
        made = RedisBackend(f"{server.url}?prefix=test-{uuid.uuid4().hex}:")
    else:
        from collective.futures.tasks.sqlite import SQLiteBackend
        made = SQLiteBackend(tmp_path / "tasks.db")
    yield made
    made.close()


def add(backend, *tasks, token=None):
    """Prepare and confirm ``tasks`` (now queued); return their ids."""
    token = token or uuid.uuid4().hex
    ids = backend.prepare(list(tasks), token)
    assert backend.confirm(token) == len(set(ids))
    return ids


def lease_one(backend, now=T0, consumer="c1", lease_seconds=30, queue="default"):
    """Lease exactly one task: (lease, task)."""
    got = backend.lease(queue, consumer, 1, lease_seconds, now=now)
    assert len(got) == 1, got
    return got[0]


def state(backend, task_id):
    return backend.status(task_id)["state"]


def test_backend_provides_its_interface(backend):
    assert verifyObject(ITaskBackend, backend)


def test_status_has_every_field_of_a_stored_task(backend):
    """A returned task has the new task's fields plus state, lease_until,
    consumer, last_error and finished; an unknown id is None."""
    new = task()
    assert backend.prepare([new], "t") == [new["id"]]
    stored = backend.status(new["id"])
    assert set(new) | set(STORED_FIELDS) <= set(stored)
    assert {k: stored[k] for k in new} == new
    assert stored["state"] == "prepared" and stored["state"] in TASK_STATES
    assert (stored["consumer"], stored["last_error"], stored["finished"]) == (None, None, None)
    assert backend.status(uuid.uuid4().hex) is None


def test_prepared_tasks_are_invisible_until_confirmed(backend):
    ids = backend.prepare([task(), task()], "t")
    assert backend.lease("default", "c1", 10, 30, now=T0 + 1) == []
    assert backend.confirm("t") == 2
    assert [state(backend, i) for i in ids] == ["queued", "queued"]
    leased = backend.lease("default", "c1", 10, 30, now=T0 + 1)
    assert sorted(t["id"] for _, t in leased) == sorted(ids)


def test_confirm_and_discard_are_idempotent_count_and_keep_to_their_token(backend):
    committed = backend.prepare([task(), task(), task()], "committed")
    dropped = backend.prepare([task(), task()], "aborted")
    kept = backend.prepare([task()], "other")
    assert (backend.confirm("committed"), backend.confirm("committed")) == (3, 0)
    assert (backend.discard("aborted"), backend.discard("aborted")) == (2, 0)
    assert backend.confirm("nobody") == 0 and backend.discard("nobody") == 0
    assert {state(backend, i) for i in committed} == {"queued"}
    assert [backend.status(i) for i in dropped] == [None, None]  # removed
    assert state(backend, kept[0]) == "prepared"
    assert backend.discard("committed") == 0  # confirmed tasks stay
    assert {state(backend, i) for i in committed} == {"queued"}
    assert backend.confirm("aborted") == 0
    assert backend.stats("default", now=T0)["prepared"] == 1


def test_dedup_returns_the_existing_id_while_prepared_queued_or_running(backend):
    original = task(dedup="k", eta=T0 - 10)  # leased first
    assert backend.prepare([original], "first") == [original["id"]]
    for step in ("prepared", "queued", "running"):
        if step == "queued":
            backend.confirm("first")
        elif step == "running":
            lease_one(backend, now=T0 + 1)
        assert state(backend, original["id"]) == step
        copy, other = task(dedup="k"), task()
        token = "again-" + step
        # Returned in order, the existing id in place of the duplicate.
        assert backend.prepare([copy, other], token) == [original["id"], other["id"]]
        assert backend.status(copy["id"]) is None
        assert backend.confirm(token) == 1


def test_dedup_within_one_call_keeps_the_first(backend):
    first, again, other = task(dedup="k"), task(dedup="k"), task(dedup="other")
    assert backend.prepare([first, again, other], "t") == [first["id"], first["id"], other["id"]]
    assert backend.status(again["id"]) is None
    assert backend.confirm("t") == 2


def test_find_gives_the_active_task_of_a_dedup_key(backend):
    original = task(dedup="nightly")
    backend.prepare([original], "t")
    assert backend.find("default", "nightly") == original["id"]  # prepared
    backend.confirm("t")
    assert backend.find("default", "nightly") == original["id"]  # queued
    assert backend.find("other", "nightly") is None
    assert backend.find("default", "weekly") is None
    ((lease, _),) = backend.lease("default", "c", 1, 10, now=T0)
    assert backend.find("default", "nightly") == original["id"]  # running
    backend.ack(lease, now=T0 + 1)
    assert backend.find("default", "nightly") is None  # done: the key is free


def test_a_task_whose_id_is_stored_is_not_stored_again(backend):
    first = task()
    backend.prepare([first], "t")
    backend.confirm("t")
    ((lease, _),) = backend.lease("default", "c", 1, 10, now=T0)
    backend.ack(lease, now=T0 + 1)
    again = dict(task(), id=first["id"], path="/other")
    assert backend.prepare([again], "u") == [first["id"]]
    assert backend.confirm("u") == 0
    stored = backend.status(first["id"])
    assert stored["state"] == "done" and stored["path"] == "/site/@@job"


def test_dedup_is_per_queue_and_ignores_finished_tasks(backend):
    original = task(dedup="k")
    add(backend, original)
    elsewhere = task(queue="other", dedup="k")
    assert add(backend, elsewhere) == [elsewhere["id"]]
    lease, _ = lease_one(backend, now=T0 + 1)
    assert backend.ack(lease, now=T0 + 2)
    after_done = task(dedup="k")  # the done original does not dedup
    assert add(backend, after_done) == [after_done["id"]]
    lease, _ = lease_one(backend, now=T0 + 3)
    assert backend.bury(lease, "bad", now=T0 + 4)
    after_dead = task(dedup="k")  # nor does a dead one
    assert add(backend, after_dead) == [after_dead["id"]]
    # Nor a discarded one; and no key, no dedup.
    backend.prepare([task(queue="third", dedup="k")], "aborted")
    backend.discard("aborted")
    fresh, a, b = task(queue="third", dedup="k"), task(), task()
    assert add(backend, fresh, a, b) == [fresh["id"], a["id"], b["id"]]


def test_lease_gives_due_tasks_of_its_queue_earliest_eta_first_within_limit(backend):
    late, early, middle = task(eta=T0 + 3), task(eta=T0 + 1), task(eta=T0 + 2)
    future, other = task(eta=T0 + 100), task(queue="other", eta=T0)
    add(backend, late, early, middle, future, other)
    first = backend.lease("default", "c1", 2, 30, now=T0 + 10)
    assert [t["id"] for _, t in first] == [early["id"], middle["id"]]
    rest = backend.lease("default", "c1", 10, 30, now=T0 + 10)
    assert [t["id"] for _, t in rest] == [late["id"]]  # not future, not other
    assert state(backend, future["id"]) == "queued"
    assert state(backend, other["id"]) == "queued"


def test_lease_marks_the_task_running_and_counts_the_attempt(backend):
    new = task()
    add(backend, new)
    lease, leased = lease_one(backend, now=T0 + 5, consumer="worker-1", lease_seconds=30)
    assert lease[0] == new["id"]  # a lease is (task id, lease id)
    assert leased["state"] == "running" and leased["attempts"] == 1
    assert leased["lease_until"] == pytest.approx(T0 + 35)
    assert leased["consumer"] == "worker-1"
    assert backend.status(new["id"]) == leased  # the task as stored
    assert backend.lease("default", "c2", 10, 30, now=T0 + 20) == []  # held


def test_an_expired_lease_is_delivered_again_and_the_old_one_is_lost(backend):
    add(backend, task())
    old, _ = lease_one(backend, now=T0, consumer="c1", lease_seconds=30)
    assert backend.lease("default", "c2", 10, 30, now=T0 + 29) == []
    new, again = lease_one(backend, now=T0 + 31, consumer="c2", lease_seconds=30)
    assert new[0] == old[0] and new != old
    assert again["attempts"] == 2 and again["consumer"] == "c2"
    assert again["lease_until"] == pytest.approx(T0 + 61)
    # The old lease's every operation answers False and changes nothing.
    before = backend.status(old[0])
    assert backend.extend(old, 600, now=T0 + 32) is False
    assert backend.ack(old, now=T0 + 33) is False
    assert backend.retry(old, "late", T0 + 500) is False
    assert backend.bury(old, "late", now=T0 + 34) is False
    assert backend.status(old[0]) == before
    assert backend.ack(new, now=T0 + 35)  # the live lease still works
    assert state(backend, old[0]) == "done"


def test_extend_prolongs_the_lease(backend):
    add(backend, task())
    lease, _ = lease_one(backend, now=T0, lease_seconds=30)
    assert backend.extend(lease, 60, now=T0 + 20)
    assert backend.status(lease[0])["lease_until"] == pytest.approx(T0 + 80)
    assert backend.lease("default", "c2", 10, 30, now=T0 + 50) == []
    assert backend.ack(lease, now=T0 + 55)  # still ours past the first term


def test_ack_marks_the_task_done_and_bury_dead(backend):
    add(backend, task(), task())
    (acked, _), (buried, _) = backend.lease("default", "c1", 2, 30, now=T0)
    assert backend.ack(acked, now=T0 + 5)
    done = backend.status(acked[0])
    assert done["state"] == "done" and done["finished"] == pytest.approx(T0 + 5)
    assert backend.bury(buried, "bad input", now=T0 + 6)
    dead = backend.status(buried[0])
    assert dead["state"] == "dead" and dead["last_error"] == "bad input"
    assert backend.lease("default", "c1", 10, 30, now=T0 + 1000) == []  # neither again


def test_retry_requeues_with_its_error_at_the_new_eta(backend):
    add(backend, task())
    lease, _ = lease_one(backend, now=T0)
    assert backend.retry(lease, "boom", T0 + 60)
    retried = backend.status(lease[0])
    assert retried["state"] == "queued" and retried["last_error"] == "boom"
    assert retried["eta"] == pytest.approx(T0 + 60)
    assert backend.lease("default", "c1", 10, 30, now=T0 + 59) == []
    _, again = lease_one(backend, now=T0 + 61)
    assert again["attempts"] == 2


def test_stats_count_each_state_of_the_queue(backend):
    empty = backend.stats("default", now=T0)
    assert {k: empty[k] for k in COUNTED} == dict.fromkeys(COUNTED, 0)
    assert empty["oldest_queued_age"] == 0.0
    add(backend, task(eta=T0 - 100), task(eta=T0 - 100), task(eta=T0 - 100))
    (running, _), (acked, _), (buried, _) = backend.lease("default", "c1", 3, 1000, now=T0)
    backend.ack(acked, now=T0)
    backend.bury(buried, "bad", now=T0)
    # Due: waited 40 s and 0 s at T0 + 10 (eta == now has come); scheduled: later.
    add(backend, task(eta=T0 - 30), task(eta=T0 + 10), task(eta=T0 + 100),
        task(queue="other", eta=T0 - 500))
    backend.prepare([task()], "pending")
    stats = backend.stats("default", now=T0 + 10)
    assert {k: stats[k] for k in COUNTED} == {
        "prepared": 1, "queued": 2, "scheduled": 1, "running": 1, "done": 1, "dead": 1}
    assert stats["oldest_queued_age"] == pytest.approx(40.0)


def test_queues_lists_the_queues_holding_tasks_sorted(backend):
    assert list(backend.queues()) == []
    add(backend, task(queue="b"), task(queue="a"), task(queue="a"))
    assert list(backend.queues()) == ["a", "b"]
    lease, _ = lease_one(backend, queue="b")
    backend.ack(lease, now=T0 + 1)
    assert backend.delete(lease[0])
    assert list(backend.queues()) == ["a"]


def test_dead_letters_most_recently_finished_first_per_queue(backend):
    ids = add(backend, task(), task(), task(), task())
    leases = dict(backend.lease("default", "c1", 4, 30, now=T0))
    by_id = {lease[0]: lease for lease in leases}
    for task_id, when in zip(ids[:3], (T0 + 1, T0 + 3, T0 + 2)):
        backend.bury(by_id[task_id], "bad", now=when)
    backend.ack(by_id[ids[3]], now=T0 + 9)  # done: not a dead letter
    other = task(queue="other")
    add(backend, other)
    backend.bury(lease_one(backend, queue="other")[0], "bad", now=T0 + 1)
    assert [t["id"] for t in backend.dead_letters("default")] == [ids[1], ids[2], ids[0]]
    assert [t["id"] for t in backend.dead_letters("default", limit=2)] == [ids[1], ids[2]]
    assert [t["id"] for t in backend.dead_letters("other")] == [other["id"]]
    assert all(t["state"] == "dead" for t in backend.dead_letters("default"))


def test_requeue_runs_a_dead_task_again_from_zero_attempts(backend):
    add(backend, task())
    lease, _ = lease_one(backend, now=T0)
    backend.bury(lease, "bad", now=T0 + 1)
    assert backend.requeue(lease[0], now=T0 + 50)
    requeued = backend.status(lease[0])
    assert requeued["state"] == "queued" and requeued["attempts"] == 0
    assert requeued["eta"] == pytest.approx(T0 + 50)
    assert requeued["last_error"] == "bad"  # kept
    assert backend.requeue(lease[0], now=T0 + 51) is False  # queued: not dead
    again, leased = lease_one(backend, now=T0 + 51)
    assert leased["attempts"] == 1
    assert backend.requeue(lease[0], now=T0 + 52) is False  # running
    backend.ack(again, now=T0 + 53)
    assert backend.requeue(lease[0], now=T0 + 54) is False  # done
    assert state(backend, lease[0]) == "done"
    assert backend.requeue(uuid.uuid4().hex) is False


def test_delete_removes_only_dead_or_done_tasks(backend):
    queued = add(backend, task(eta=T0 - 3), task(eta=T0 - 2), task(eta=T0 - 1), task())[3]
    (dead, _), (done, _), (running, _) = backend.lease("default", "c1", 3, 30, now=T0)
    backend.bury(dead, "bad", now=T0)
    backend.ack(done, now=T0)
    prepared = backend.prepare([task()], "pending")[0]
    assert backend.delete(dead[0]) and backend.status(dead[0]) is None
    assert backend.delete(done[0]) and backend.status(done[0]) is None
    for task_id in (running[0], queued, prepared):
        assert backend.delete(task_id) is False
        assert backend.status(task_id) is not None
    assert backend.delete(uuid.uuid4().hex) is False


def test_next_eta_is_the_earliest_eta_or_lease_end(backend):
    assert backend.next_eta("default") is None
    backend.prepare([task(eta=T0 - 5)], "pending")
    assert backend.next_eta("default") is None  # prepared tasks do not count
    add(backend, task(eta=T0 + 20), task(eta=T0 + 50), task(queue="other", eta=T0))
    assert backend.next_eta("default") == pytest.approx(T0 + 20)
    first, _ = lease_one(backend, now=T0 + 30, lease_seconds=100)  # until T0+130
    assert backend.next_eta("default") == pytest.approx(T0 + 50)
    second, _ = lease_one(backend, now=T0 + 60, lease_seconds=5)  # until T0+65
    assert backend.next_eta("default") == pytest.approx(T0 + 65)
    backend.ack(first, now=T0 + 61)
    backend.bury(second, "bad", now=T0 + 61)
    assert backend.next_eta("default") is None  # done and dead do not count
    assert backend.next_eta("other") == pytest.approx(T0)


def test_recover_buries_old_prepared_tasks_as_in_doubt(backend):
    # On the real clock: whether a prepared task's age counts from its
    # ``created`` or from its prepare is not said; with created = now, both agree.
    base = time.time()
    doubtful = backend.prepare([task(created=base, eta=base)], "in-doubt")
    queued = add(backend, task(created=base - 1000, eta=base))
    assert backend.recover(60, now=base + 10) == 0  # young: untouched
    assert state(backend, doubtful[0]) == "prepared"
    assert backend.recover(60, now=base + 120) == 1
    dead = backend.status(doubtful[0])
    assert dead["state"] == "dead"
    assert any(w in dead["last_error"].lower() for w in ("unknown", "not known", "doubt"))
    assert state(backend, queued[0]) == "queued"
    # Never run silently nor dropped: the late token changes nothing.
    assert backend.confirm("in-doubt") == 0 and backend.discard("in-doubt") == 0
    assert state(backend, doubtful[0]) == "dead"
    assert [t["id"] for t in backend.dead_letters("default")] == doubtful
    assert backend.recover(60, now=base + 200) == 0


def test_purge_removes_done_tasks_finished_long_ago(backend):
    ids = add(backend, task(eta=T0 - 3), task(eta=T0 - 2), task(eta=T0 - 1), task())
    old, young, dead, queued = ids
    leases = {lease[0]: lease for lease, _ in backend.lease("default", "c1", 3, 30, now=T0)}
    backend.ack(leases[old], now=T0)
    backend.ack(leases[young], now=T0 + 100)
    backend.bury(leases[dead], "bad", now=T0)
    assert backend.purge(50, now=T0 + 120) == 1
    assert backend.status(old) is None
    assert [state(backend, i) for i in (young, dead, queued)] == ["done", "dead", "queued"]
    assert backend.purge(50, now=T0 + 120) == 0


def test_purge_removes_dead_tasks_buried_long_ago_when_asked(backend):
    ids = add(backend, task(eta=T0 - 3), task(eta=T0 - 2), task(eta=T0 - 1))
    old, young, done = ids
    leases = {lease[0]: lease for lease, _ in backend.lease("default", "c1", 3, 30, now=T0)}
    backend.bury(leases[old], "bad", now=T0)
    backend.bury(leases[young], "bad", now=T0 + 100)
    backend.ack(leases[done], now=T0 + 100)
    # Without dead_older_than, the dead letters stay (the control).
    assert backend.purge(50, now=T0 + 120) == 0
    assert backend.purge(50, now=T0 + 120, dead_older_than=60) == 1
    assert backend.status(old) is None
    assert [state(backend, i) for i in (young, done)] == ["dead", "done"]
    assert [t["id"] for t in backend.dead_letters("default")] == [young]


def test_payload_headers_and_user_round_trip(backend):
    payload = b"\x00\xff\xfe{\"a\": 1}\xc3\x28\r\n"  # not UTF-8
    headers = [["Content-Type", "application/json"], ["X-Trace", "a b; c"]]
    user = {"id": "alice", "roles": ["Member"]}
    new = task(method="POST", payload=payload, headers=headers, user=user)
    add(backend, new)
    for got in (backend.status(new["id"]), lease_one(backend)[1]):
        assert type(got["payload"]) is bytes and got["payload"] == payload
        assert [list(h) for h in got["headers"]] == headers
        assert got["user"] == user and got["method"] == "POST"


def test_threads_never_hold_the_same_lease(backend):
    ids = add(backend, *[task(eta=T0 + i / 100) for i in range(60)])
    acked, errors = [], []

    def consume(name):
        try:
            while leases := backend.lease("default", name, 3, 600, now=T0 + 1):
                for lease, leased in leases:
                    assert backend.ack(lease, now=T0 + 2)
                    acked.append(leased["id"])
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=consume, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(acked) == sorted(ids)  # each exactly once
    assert backend.stats("default", now=T0 + 3)["done"] == 60


def test_holds_is_true_for_the_current_lease_only(backend):
    backend.prepare([task(eta=T0)], "t")
    backend.confirm("t")
    ((first, _),) = backend.lease("default", "a", 1, 10, now=T0)
    assert backend.holds(first)
    assert not backend.holds((first[0], "another lease"))
    ((second, _),) = backend.lease("default", "b", 1, 10, now=T0 + 20)  # expired
    assert backend.holds(second) and not backend.holds(first)
    backend.ack(second, now=T0 + 21)
    assert not backend.holds(second)  # done: no lease is current


def test_the_secret_is_made_once_and_kept(backend):
    secret = backend.secret()
    assert len(secret) == 64 and int(secret, 16) >= 0
    assert backend.secret() == secret


def test_close_is_idempotent(backend):
    backend.close()
    backend.close()


# ---------------------------------------------------------------------------
# SQLite only: a file shared by processes (durability, exclusivity, errors).

def python(code, *args):
    """Arguments to run ``code`` in a new interpreter that imports this
    module (its ``task``, ``T0``) and the package as this one does."""
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([here] + sys.path))
    return dict(args=[sys.executable, "-c", code, *map(str, args)], env=env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


CRASH = """
import os, sys
from test_tasks_backends import task
from collective.futures.tasks.sqlite import SQLiteBackend
backend = SQLiteBackend(sys.argv[1])
backend.prepare([task(id=i) for i in sys.argv[2].split(",")], "committed")
backend.confirm("committed")
backend.prepare([task(id=sys.argv[3])], "in-flight")
os._exit(0)  # no close, no flush: a crash right after
"""


def test_sqlite_tasks_survive_a_crash_right_after_prepare_and_confirm(tmp_path):
    from collective.futures.tasks.sqlite import SQLiteBackend
    path = tmp_path / "tasks.db"
    backend = SQLiteBackend(path)  # open before the other process writes
    try:
        queued = [uuid.uuid4().hex for _ in range(5)]
        prepared = uuid.uuid4().hex
        child = subprocess.run(**python(CRASH, path, ",".join(queued), prepared), timeout=60)
        assert child.returncode == 0, child.stderr
        assert [state(backend, i) for i in queued] == ["queued"] * 5
        assert state(backend, prepared) == "prepared"
        assert backend.stats("default", now=T0 + 1)["queued"] == 5
    finally:
        backend.close()


CONSUME = """
import importlib, json, os, sys, time
from test_tasks_backends import T0
module, kind, where, name, go = sys.argv[1:6]
backend = getattr(importlib.import_module(module), kind)(where)
open(go + "." + name, "w").close()  # ready
while not os.path.exists(go):
    time.sleep(0.001)
got = []
while leases := backend.lease("default", name, 5, 600, now=T0 + 1):
    time.sleep(0.002)  # the work: lets the other processes lease meanwhile
    for lease, leased in leases:
        got.append(leased["id"])
        if not backend.ack(lease, now=T0 + 2):
            sys.exit("ack refused for " + leased["id"])
backend.close()
print(json.dumps(got))
"""


def processes_share_without_overlap(backend, kind, where, tmp_path, n=200, processes=4):
    """``processes`` processes (each its own ``kind`` backend, made from
    ``where``) lease and ack the ``n`` tasks queued in ``backend``: each
    task once, none twice; returns how many each got."""
    from conftest import wait_for
    go = tmp_path / "go"
    ids = add(backend, *[task(eta=T0 - i) for i in range(n)])
    module = type(backend).__module__
    children = [subprocess.Popen(**python(CONSUME, module, kind, where, f"p{i}", go))
                for i in range(processes)]
    try:
        wait_for(lambda: all((tmp_path / f"go.p{i}").exists() for i in range(processes)),
                 timeout=60, message=f"the {processes} consumers ready")
        go.touch()  # all start leasing at once
        got = []
        for child in children:
            out, err = child.communicate(timeout=60)
            assert child.returncode == 0, err
            got.append(json.loads(out))
        everything = [i for ids_of_one in got for i in ids_of_one]
        assert sorted(everything) == sorted(ids)  # all acked, none twice
        assert all(backend.status(i)["attempts"] == 1 for i in ids)
        stats = backend.stats("default", now=T0 + 3)
        assert (stats["done"], stats["queued"], stats["running"]) == (n, 0, 0)
        return [len(one) for one in got]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.communicate()


def test_sqlite_processes_never_hold_the_same_lease(tmp_path):
    from collective.futures.tasks.sqlite import SQLiteBackend
    path = tmp_path / "tasks.db"
    backend = SQLiteBackend(path)
    try:
        processes_share_without_overlap(backend, "SQLiteBackend", path, tmp_path)
    finally:
        backend.close()


@pytest.mark.parametrize("where", ["path is a directory", "parent is a file"])
def test_sqlite_unwritable_file_raises_unavailable_naming_it(tmp_path, where):
    """Raised when the backend is made, or at the latest at prepare (the
    vote); the message names the file."""
    from collective.futures.tasks.sqlite import SQLiteBackend
    (tmp_path / "tasks.db").mkdir()
    (tmp_path / "plain").write_text("not a directory")
    path = tmp_path / ("tasks.db" if where == "path is a directory" else "plain/tasks.db")
    with pytest.raises(TaskQueueUnavailableError) as raised:
        backend = SQLiteBackend(path)
        try:
            backend.prepare([task()], "t")
        finally:
            backend.close()
    assert str(path) in str(raised.value)


def test_sqlite_every_opener_of_the_file_gets_the_same_secret(tmp_path):
    from collective.futures.tasks.sqlite import SQLiteBackend
    first = SQLiteBackend(tmp_path / "shared.db")
    second = SQLiteBackend(tmp_path / "shared.db")
    try:
        assert first.secret() == second.secret()
        # The control: another file, another secret.
        other = SQLiteBackend(tmp_path / "other.db")
        assert other.secret() != first.secret()
        other.close()
    finally:
        first.close()
        second.close()


def test_sqlite_the_file_is_readable_by_its_owner_only(tmp_path):
    # It holds the secret that signs task requests, and the leases.
    from collective.futures.tasks.sqlite import SQLiteBackend
    backend = SQLiteBackend(tmp_path / "private.db")
    try:
        backend.prepare([task()], "t")  # the WAL file exists now
        for name in ("private.db", "private.db-wal", "private.db-shm"):
            assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
    finally:
        backend.close()


def test_housekeeping_purges_by_task_keep_done_and_task_keep_dead(tmp_path):
    # The service's round passes both settings to the backend (SQLite).
    from collective.futures.settings import Settings
    from collective.futures.tasks.service import TaskService
    service = TaskService(Settings.from_mapping(
        {"task_keep_done": "100", "task_keep_dead": "1000"}), tmp_path)
    backend = service.backend
    ids = add(backend, task(eta=T0 - 2), task(eta=T0 - 1))
    done, dead = ids
    leases = {lease[0]: lease for lease, _ in backend.lease("default", "c1", 2, 30, now=T0)}
    backend.ack(leases[done], now=T0)
    backend.bury(leases[dead], "bad", now=T0)
    assert service.keep_house(now=T0 + 500) == 1  # the done one only
    assert backend.status(done) is None and state(backend, dead) == "dead"
    assert service.keep_house(now=T0 + 1500) == 1
    assert backend.status(dead) is None
    backend.close()


def test_a_snapshot_waits_for_a_hung_backend_only_until_its_deadline(tmp_path):
    # Pure code with a stand-in: a backend whose reads hang (a Redis that
    # never answers waits for its socket timeout).
    from collective.futures.settings import Settings
    from collective.futures.tasks.service import TaskService
    from conftest import wait_for
    service = TaskService(Settings.from_mapping({}), tmp_path)
    release, calls = threading.Event(), []

    class Hanging:
        def stats(self, queue):
            calls.append(queue)
            release.wait(30)
            return {"queued": 1}

    service._backend = Hanging()
    started = time.monotonic()
    data = service.snapshot(deadline=0.2)
    assert time.monotonic() - started < 2
    assert data["unreachable"] == "the task backend did not answer within 0.2 s"
    assert data["queues"] == {}
    # The next snapshot waits for the same read: no second one piles up.
    assert service.snapshot(deadline=0.2)["unreachable"]
    assert calls == ["default"]
    readers = [t for t in threading.enumerate()
               if t.name == "collective.futures-task-figures"]
    assert len(readers) == 1
    release.set()
    readers[0].join(5)
    # Positive control: a backend that answers in time is read.
    data = service.snapshot(deadline=5)
    assert data["unreachable"] is None and data["queues"] == {"default": {"queued": 1}}
    assert calls == ["default", "default"]
    wait_for(lambda: service._figures_read is None, message="the read over")


def test_among_tasks_due_at_the_same_time_the_first_created_is_leased_first(backend):
    # Ids in the other order than creation: no backend may order by id.
    ids = add(backend, task(id="c" * 32, created=T0 - 3), task(id="a" * 32, created=T0 - 1),
              task(id="b" * 32, created=T0 - 2))
    order = [lease_one(backend, now=T0)[1]["id"] for _ in ids]
    assert order == ["c" * 32, "b" * 32, "a" * 32]


def test_purge_and_recover_reach_every_old_task_however_many(backend):
    # More than a backend may handle in one step (Redis: BATCH per call).
    many = [task(eta=T0) for _ in range(1200)]
    leases = []
    add(backend, *many)
    for lease, _ in backend.lease("default", "c1", 1200, 30, now=T0):
        leases.append(lease)
    for lease in leases:
        backend.ack(lease, now=T0)
    backend.prepare([task() for _ in range(700)], "lost", now=T0)
    assert backend.recover(60, now=T0 + 120) == 700
    assert backend.purge(60, now=T0 + 200, dead_older_than=10) == 1200 + 700
    stats = backend.stats("default", now=T0 + 200)
    assert (stats["done"], stats["dead"], stats["prepared"]) == (0, 0, 0)
