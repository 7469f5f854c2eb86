"""The ZODB's record of done tasks (zope/tasks.py): written with the
task's work, indexed by slices of time, pruned by the housekeeping in
transactions of its own once the queue can no longer deliver the task
again. On a real ZODB (FileStorage)."""

import pytest
import transaction
from ZODB import DB
from ZODB.FileStorage import FileStorage

from collective.futures.settings import Settings
from collective.futures.zope import tasks as glue

W = 10  # the slice width of these tests


@pytest.fixture
def db(tmp_path):
    made = DB(FileStorage(str(tmp_path / "Data.fs")))
    yield made
    made.close()


def opened(db, read):
    connection = db.open()
    try:
        return read(connection.root())
    finally:
        connection.close()


def records(db):
    return opened(db, lambda root: sorted(root.get(glue.DONE_KEY, {}).keys()))


def slices(db):
    return opened(db, lambda root: list(root[glue.DONE_BY_TIME_KEY].keys()))


def record(db, *pairs, width=W):
    connection = db.open()
    try:
        for task_id, at in pairs:
            glue.record_done(connection.root(), task_id, at, width)
        transaction.commit()
    finally:
        connection.close()


def test_records_of_slices_that_ended_before_the_cutoff_are_forgotten(db):
    record(db, ("a", 1000 * W), ("b", 1000 * W + W - 1), ("c", 1001 * W), ("d", 1005 * W))
    # keep 24 W: slices of W. Cutoff inside the slice of c: the slice of
    # a and b (ending at 1001 W) ended before it; c's not.
    assert glue.prune_done_records(db, keep=24 * W, now=1001 * W + 1 + 24 * W) == 2
    assert records(db) == ["c", "d"]
    assert glue.prune_done_records(db, keep=24 * W, now=1001 * W + 1 + 24 * W) == 0
    assert glue.prune_done_records(db, keep=24 * W, now=1005 * W + 24 * W) == 1  # c
    assert records(db) == ["d"]


def test_the_housekeeping_makes_the_current_and_next_slices_sets(db):
    # Tasks then only add to a set: no two of them make the same one.
    assert glue.prune_done_records(db, keep=24 * W, now=2000 * W + 3) == 0
    assert slices(db) == [2001 * W, 2002 * W]


def test_pruning_goes_on_in_batches_until_nothing_old_is_left(db):
    record(db, *[(f"old-{n:05}", 1000 * W + n / 1000) for n in range(2500)],
           ("new", 5000 * W))
    assert glue.prune_done_records(db, keep=24 * W, now=4000 * W, limit=1000) == 2500
    assert records(db) == ["new"]


def test_slices_widths_follow_the_keep_and_mixed_widths_prune_alike(db):
    assert glue.slice_width(3) == 10 and glue.slice_width(24 * 600) == 600
    assert glue.slice_width(30 * 86400) == 3600
    # Settings changed between two records: each slice keyed by its end.
    record(db, ("hourly", 7200 * 100 + 5), width=3600)
    record(db, ("tenly", 7200 * 100 + 5), width=10)
    assert glue.prune_done_records(db, keep=100, now=7200 * 100 + 200) == 1
    assert records(db) == ["hourly"]  # its slice ends an hour later
    assert glue.prune_done_records(db, keep=100, now=7200 * 100 + 3700) == 1


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
