"""Tasks bound to the transaction (collective.futures.tasks.binding), with
the real transaction package, a real ZODB (MappingStorage) and the real
SQLite backend: nothing queued when the transaction aborts, everything
when it commits, a backend that cannot take the tasks fails the
transaction before anything commits."""

import logging
import sqlite3

import pytest
import transaction
import transaction.interfaces
import ZODB
from ZODB.MappingStorage import MappingStorage
from zope.interface.verify import verifyObject
from transaction.interfaces import ISavepointDataManager

from collective.futures.exceptions import TaskQueueUnavailableError
from collective.futures.tasks.binding import Binding, bind
from collective.futures.tasks.memory import MemoryBackend
from collective.futures.tasks.model import new_task
from collective.futures.tasks.sqlite import SQLiteBackend


@pytest.fixture
def manager():
    """A transaction manager of the test's own (explicit: no thread-local
    state leaks between tests)."""
    tm = transaction.TransactionManager(explicit=True)
    yield tm
    try:
        tm.abort()
    except transaction.interfaces.NoTransaction:
        pass


@pytest.fixture
def backend(tmp_path):
    backend = SQLiteBackend(tmp_path / "tasks.db", timeout=0.5)
    yield backend
    backend.close()


@pytest.fixture
def db():
    database = ZODB.DB(MappingStorage())
    yield database
    database.close()


def job(name="job"):
    return new_task(f"/site/@@{name}", queue="default")


def states(backend):
    figures = backend.stats("default")
    return {state: count for state, count in figures.items()
            if state != "oldest_queued_age" and count}


def test_the_data_manager_keeps_the_contract(backend, manager):
    manager.begin()
    binding = bind(backend, job(), manager)
    assert verifyObject(ISavepointDataManager, binding)
    # After the ZODB's storages, whose keys are names and addresses.
    assert binding.sortKey() > "MappingStorage" and binding.sortKey() > "127.0.0.1:8100"


def test_nothing_is_queued_when_the_transaction_aborts(backend, manager):
    manager.begin()
    bind(backend, job(), manager)
    manager.abort()
    assert states(backend) == {}
    # The control: the same, committed.
    manager.begin()
    bind(backend, job(), manager)
    manager.commit()
    assert states(backend) == {"queued": 1}


def test_committed_tasks_are_queued_with_the_zodb_write(backend, manager, db):
    connection = db.open(manager)
    manager.begin()
    connection.root()["written"] = "yes"
    first, second = job("one"), job("two")
    bind(backend, first, manager)
    binding = bind(backend, second, manager)
    assert binding.tasks == [first, second]  # one data manager per backend
    manager.commit()
    assert backend.status(first["id"])["state"] == "queued"
    assert backend.status(second["id"])["state"] == "queued"
    connection.close()
    with db.transaction() as other:
        assert other.root()["written"] == "yes"


def test_a_backend_that_cannot_take_the_tasks_fails_the_commit_before_the_zodb(
        backend, manager, db, tmp_path):
    # Another process's connection holds the write lock past the backend's
    # timeout (0.5 s): the vote fails.
    blocker = sqlite3.connect(str(tmp_path / "tasks.db"), isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    connection = db.open(manager)
    try:
        manager.begin()
        connection.root()["written"] = "no"
        task = job()
        bind(backend, task, manager)
        with pytest.raises(TaskQueueUnavailableError, match="tasks.db.*could not store tasks"):
            manager.commit()
        manager.abort()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        connection.close()
    # Nothing half-done: the ZODB did not commit, the task is nowhere.
    with db.transaction() as other:
        assert "written" not in other.root()
    assert backend.status(task["id"]) is None
    assert states(backend) == {}


class FailingVote:
    """A resource that votes after the tasks' binding and fails."""

    def sortKey(self):
        return "~~after the tasks"

    def abort(self, txn):
        pass

    tpc_begin = commit = tpc_finish = tpc_abort = abort

    def tpc_vote(self, txn):
        raise RuntimeError("this resource cannot commit")


def test_tasks_prepared_by_a_transaction_that_then_aborts_are_removed(backend, manager):
    manager.begin()
    task = job()
    bind(backend, task, manager)
    manager.get().join(FailingVote())
    with pytest.raises(RuntimeError, match="cannot commit"):
        manager.commit()
    manager.abort()
    assert backend.status(task["id"]) is None
    assert states(backend) == {}


def test_a_savepoint_rolled_back_forgets_the_tasks_bound_since(backend, manager, db):
    connection = db.open(manager)
    manager.begin()
    kept, dropped = job("kept"), job("dropped")
    bind(backend, kept, manager)
    connection.root()["x"] = 1  # the ZODB's data manager joins too
    savepoint = manager.savepoint()
    bind(backend, dropped, manager)
    savepoint.rollback()
    manager.commit()
    connection.close()
    assert backend.status(kept["id"])["state"] == "queued"
    assert backend.status(dropped["id"]) is None


def test_tasks_bound_after_rolling_back_a_savepoint_older_than_the_binding_are_queued(
        backend, manager):
    # A savepoint taken before the first task: rolling back to it drops
    # the binding from the transaction (the transaction package aborts
    # it); the next task must join it again.
    manager.begin()
    savepoint = manager.savepoint()
    dropped = job("dropped")
    bind(backend, dropped, manager)
    savepoint.rollback()
    kept = job("kept")
    bind(backend, kept, manager)
    manager.commit()
    assert backend.status(dropped["id"]) is None
    assert backend.status(kept["id"])["state"] == "queued"


class UnconfirmedBackend(MemoryBackend):
    """The memory backend whose confirm always fails (a file that stays
    locked after the vote)."""

    def confirm(self, token):
        raise TaskQueueUnavailableError("locked")


def test_a_confirmation_that_fails_leaves_the_tasks_in_doubt_never_lost(
        manager, caplog, monkeypatch):
    monkeypatch.setattr("collective.futures.tasks.binding.CONFIRM_PAUSE", 0.0)
    backend = UnconfirmedBackend()
    manager.begin()
    task = job()
    bind(backend, task, manager)
    with caplog.at_level(logging.CRITICAL, logger="collective.futures.tasks"):
        manager.commit()  # tpc_finish does not raise: the transaction committed
    assert "could not confirm its 1 task(s)" in caplog.text
    assert backend.status(task["id"])["state"] == "prepared"
    # Not run, not dropped: a dead letter that says why.
    assert backend.recover(60, now=backend.status(task["id"])["created"] + 3600) == 1
    dead = backend.status(task["id"])
    assert dead["state"] == "dead" and dead["last_error"].startswith("in doubt")


def test_bindings_are_per_backend_and_per_transaction(tmp_path, manager):
    one, two = SQLiteBackend(tmp_path / "one.db"), SQLiteBackend(tmp_path / "two.db")
    try:
        manager.begin()
        first = bind(one, job(), manager)
        second = bind(two, job(), manager)
        assert first is not second and isinstance(second, Binding)
        manager.commit()
        manager.begin()
        third = bind(one, job(), manager)
        assert third is not first  # a new transaction, a new binding
        manager.commit()
        assert states(one) == {"queued": 2} and states(two) == {"queued": 1}
    finally:
        one.close()
        two.close()


class LostAnswerBackend(MemoryBackend):
    """Stores the tasks, then fails as if the answer were lost on the way
    back (a socket timeout after the server did the work)."""

    def prepare(self, tasks, token, now=None):
        super().prepare(tasks, token, now)
        raise TaskQueueUnavailableError("no answer: timed out reading from the socket")


def test_a_prepare_whose_answer_was_lost_is_discarded_by_the_abort(manager):
    backend = LostAnswerBackend()
    manager.begin()
    task_id = bind(backend, job(), manager).tasks[0]["id"]
    with pytest.raises(TaskQueueUnavailableError, match="timed out"):
        manager.commit()
    # The transaction aborted: what the backend stored all the same is
    # gone, not left to become a dead letter in doubt.
    assert backend.status(task_id) is None
    assert backend.recover(0, now=10**10) == 0
