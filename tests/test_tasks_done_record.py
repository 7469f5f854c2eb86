"""The ZODB's record of done tasks (zope/tasks.py, record_done): written
with the task's work, pruned by age in small batches. On a real ZODB
(MappingStorage)."""

import pytest
import transaction
from ZODB import DB
from ZODB.MappingStorage import MappingStorage

from collective.futures.zope import tasks as glue


@pytest.fixture
def root():
    db = DB(MappingStorage())
    connection = db.open()
    yield connection.root()
    transaction.abort()
    connection.close()
    db.close()


def test_records_older_than_keep_are_forgotten_newer_ones_kept(root):
    assert glue.record_done(root, "a", 1000.0, keep=50, prune=True) == 0
    glue.record_done(root, "b", 1040.0, keep=50, prune=False)
    glue.record_done(root, "c", 1060.0, keep=50, prune=False)
    transaction.commit()
    # At 1100: a (100 s old) goes; b (60 s) goes; c (40 s) stays.
    assert glue.record_done(root, "d", 1100.0, keep=50, prune=True) == 2
    transaction.commit()
    assert sorted(root[glue.DONE_KEY].keys()) == ["c", "d"]
    assert sorted(root[glue.DONE_BY_TIME_KEY].keys()) == [(1060, "c"), (1100, "d")]


def test_without_prune_nothing_is_forgotten(root):
    glue.record_done(root, "a", 1000.0, keep=50, prune=False)
    assert glue.record_done(root, "b", 9000.0, keep=50, prune=False) == 0
    assert sorted(root[glue.DONE_KEY].keys()) == ["a", "b"]


def test_one_transaction_prunes_at_most_a_batch(root):
    for number in range(glue.PRUNE_BATCH + 20):
        glue.record_done(root, f"old-{number:04}", 1000.0 + number / 1000, keep=50,
                         prune=False)
    transaction.commit()
    assert glue.record_done(root, "new", 5000.0, keep=50) == glue.PRUNE_BATCH
    assert glue.record_done(root, "newer", 5001.0, keep=50) == 20
    assert sorted(root[glue.DONE_KEY].keys()) == ["new", "newer"]


def test_pruning_is_due_once_per_interval_per_process(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(glue.time, "monotonic", lambda: clock[0])
    monkeypatch.setitem(glue._pruned, "at", None)
    assert glue._prune_due(keep=3600) is True  # the first record prunes
    assert glue._prune_due(keep=3600) is False
    clock[0] += glue.PRUNE_INTERVAL
    assert glue._prune_due(keep=3600) is True
    # A keep shorter than the interval: due as often as that.
    clock[0] += 5
    assert glue._prune_due(keep=5) is True
