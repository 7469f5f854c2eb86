"""The ZODB's record of done tasks (zope/tasks.py): written with the
task's work, indexed by time slices, pruned by the housekeeping in
transactions of its own once the queue can no longer deliver the task
again. On a real ZODB (FileStorage)."""

import pytest
import transaction
from ZODB import DB
from ZODB.FileStorage import FileStorage

from collective.futures.settings import Settings
from collective.futures.zope import tasks as glue

S = glue.DONE_SLICE


@pytest.fixture
def db(tmp_path):
    made = DB(FileStorage(str(tmp_path / "Data.fs")))
    yield made
    made.close()


def records(db):
    connection = db.open()
    try:
        return sorted(connection.root().get(glue.DONE_KEY, {}).keys())
    finally:
        connection.close()


def record(db, *pairs):
    connection = db.open()
    try:
        for task_id, at in pairs:
            glue.record_done(connection.root(), task_id, at)
        transaction.commit()
    finally:
        connection.close()


def test_records_of_slices_that_ended_before_the_cutoff_are_forgotten(db):
    record(db, ("a", 1000 * S), ("b", 1000 * S + S - 1), ("c", 1001 * S), ("d", 1005 * S))
    # Cutoff inside slice 1001: slice 1000 (a, b) ended before it; 1001 not.
    assert glue.prune_done_records(db, keep=0, now=1001 * S + 1) == 2
    assert records(db) == ["c", "d"]
    assert glue.prune_done_records(db, keep=0, now=1001 * S + 1) == 0
    assert glue.prune_done_records(db, keep=3 * S, now=1008 * S) == 1  # c
    assert records(db) == ["d"]


def test_pruning_goes_on_in_batches_until_nothing_old_is_left(db):
    record(db, *[(f"old-{n:05}", 1000 * S + n / 1000) for n in range(2500)],
           ("new", 5000 * S))
    assert glue.prune_done_records(db, keep=S, now=4000 * S, limit=1000) == 2500
    assert records(db) == ["new"]
    connection = db.open()
    try:
        assert list(connection.root()[glue.DONE_BY_TIME_KEY].keys()) == [5000]
    finally:
        connection.close()


def test_a_record_outlives_every_delivery_the_queue_could_still_make():
    settings = Settings.from_mapping({"task_keep_done": "3600", "task_keep_dead": "86400",
                                      "task_lease": "300"})
    # A dead task may be re-queued until task_keep_dead: its record is
    # kept that long, and a lease more.
    assert glue.record_keep(settings) == 86400 + 600
    settings = Settings.from_mapping({"task_keep_done": "7200", "task_keep_dead": "60"})
    assert glue.record_keep(settings) >= 7200 + 2 * settings.task_lease


def test_the_consuming_instances_housekeeping_prunes_the_zodb():
    # zope/startup.py gives the service its ZODB housekeeper when it
    # consumes (the functional test runs it on a real instance).
    from collective.futures.zope import startup

    class Service:
        housekeepers = []

        def start_consumer(self, url):
            pass

    service = Service()
    startup._start_consuming(Settings.from_mapping({"task_url": "http://127.0.0.1:1"}),
                             service, drain=None)
    assert service.housekeepers == [startup._prune_done_records]
