"""Tasks bound to the transaction that queues them.

Runs on: the thread that commits (or aborts) the transaction.

``bind(backend, task)`` joins the current transaction with one data
manager per backend, which holds the transaction's tasks until it ends:

* abort (before the two-phase commit): the tasks are forgotten; nothing
  was written anywhere;
* ``tpc_vote``, the last moment the transaction package lets a resource
  fail: the tasks are written to the backend, durably, as *prepared*
  (invisible to consumers). A backend that cannot take them raises
  TaskQueueUnavailableError here, and the whole transaction aborts:
  nothing committed, nothing queued;
* ``tpc_finish``: the prepared tasks become *queued*;
* ``tpc_abort`` after the vote (another resource failed its vote): the
  prepared tasks are removed.

``sortKey`` puts this data manager after the ZODB's (``~`` sorts after
the storages' keys): it votes when the ZODB already has, so a ZODB that
cannot commit never leaves prepared tasks behind, and it finishes after
the ZODB did.

Where the transaction package's contract cannot be kept: ``tpc_finish``
must not fail, and confirming writes to a file. A confirm that fails
(the file locked past its timeout, a full disk) is retried, then logged
at CRITICAL and left to ``ITaskBackend.recover``: the tasks stay
prepared, then become dead letters *in doubt* that an operator requeues.
Likewise a process that dies between the vote and the finish. So a task
is never run for a transaction that did not commit, and a committed
transaction's task is never silently lost: at worst it waits in the dead
letters, saying why.
"""

import logging
import time
import uuid

import transaction
from transaction.interfaces import IDataManagerSavepoint, ISavepointDataManager
from zope.interface import implementer

from ..exceptions import TaskQueueUnavailableError


logger = logging.getLogger("collective.futures.tasks")

#: How often, and how far apart, tpc_finish tries to confirm.
CONFIRM_TRIES = 3
CONFIRM_PAUSE = 0.2


def bind(backend, task, transaction_manager=None, on_confirmed=None):
    """Queue ``task`` in ``backend`` when the current transaction of
    ``transaction_manager`` (default: the thread's) commits; nothing if
    it aborts. ``on_confirmed()`` is called once the tasks are queued
    (a local consumer looks at once)."""
    manager = transaction_manager or transaction.manager
    current = manager.get()
    try:
        bindings = current.data(Binding)  # this transaction's, by backend
    except KeyError:
        bindings = {}
        current.set_data(Binding, bindings)
    data_manager = bindings.get(id(backend))
    if data_manager is None:
        data_manager = bindings[id(backend)] = Binding(backend, manager, on_confirmed)
    if not data_manager.joined:
        # New, or unjoined by the rollback of a savepoint taken before it
        # joined (the transaction package aborts and drops it then): join
        # (again), or the tasks bound from now on would never be voted.
        current.join(data_manager)
        data_manager.joined = True
    data_manager.tasks.append(task)
    return data_manager


@implementer(ISavepointDataManager)
class Binding:
    """The data manager of one transaction's tasks for one backend (see
    the module's docstring)."""

    def __init__(self, backend, transaction_manager, on_confirmed=None):
        self.backend = backend
        self.transaction_manager = transaction_manager
        self.on_confirmed = on_confirmed
        self.tasks = []
        #: Names this transaction's prepared tasks in the backend.
        self.token = uuid.uuid4().hex
        self.prepared = False
        #: Joined to its transaction (``abort`` unjoins it).
        self.joined = False

    def __repr__(self):
        return f"<tasks Binding {len(self.tasks)} tasks for {self.backend!r}>"

    def sortKey(self):
        # After the ZODB's storages (their keys are names and addresses):
        # this votes and finishes last.
        return f"~collective.futures.tasks:{id(self.backend)}"

    def abort(self, txn):
        # Before the two-phase commit (the transaction's abort, or the
        # rollback of a savepoint older than this join, which also drops
        # it from the transaction): nothing was written.
        self.tasks = []
        self.joined = False

    def tpc_begin(self, txn):
        pass

    def commit(self, txn):
        pass

    def tpc_vote(self, txn):
        if not self.tasks:
            return
        # Before the call: a prepare that failed may have stored its tasks
        # all the same (its answer lost on the way back): the abort that
        # follows discards whatever the token has (discard is idempotent).
        self.prepared = True
        try:
            self.backend.prepare(self.tasks, self.token)
        except TaskQueueUnavailableError:
            raise
        except Exception as exc:
            # Whatever a backend raised, the transaction fails here with
            # the one error that says what happened.
            raise TaskQueueUnavailableError(
                f"{self.backend!r} could not take {len(self.tasks)} task(s): "
                f"{exc!r}") from exc

    def tpc_finish(self, txn):
        if not self.prepared:
            return
        for attempt in range(1, CONFIRM_TRIES + 1):
            try:
                self.backend.confirm(self.token)
            except Exception:
                if attempt == CONFIRM_TRIES:
                    # tpc_finish must not raise: the transaction committed.
                    logger.critical(
                        "the transaction committed, but %r could not confirm its "
                        "%d task(s) (token %s): they stay prepared and become "
                        "dead letters in doubt; requeue them",
                        self.backend, len(self.tasks), self.token, exc_info=True)
                    return
                time.sleep(CONFIRM_PAUSE * attempt)
                continue
            if self.on_confirmed is not None:
                try:
                    self.on_confirmed()
                except Exception:
                    logger.exception("on_confirmed failed (the tasks are queued)")
            return

    def tpc_abort(self, txn):
        self.tasks = []
        if not self.prepared:
            return
        self.prepared = False
        try:
            self.backend.discard(self.token)
        except Exception:
            logger.error(
                "the transaction aborted, but %r could not remove its prepared "
                "task(s) (token %s): they become dead letters in doubt, never "
                "run", self.backend, self.token, exc_info=True)

    def savepoint(self):
        return _Savepoint(self)


@implementer(IDataManagerSavepoint)
class _Savepoint:
    """Rolling back to it forgets the tasks bound since."""

    def __init__(self, binding):
        self.binding = binding
        self.count = len(binding.tasks)

    def rollback(self):
        del self.binding.tasks[self.count:]
