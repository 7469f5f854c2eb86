"""ZPublisher glue of background tasks: a task's request is recognised,
checked, and its work recorded.

Runs on: the Zope worker thread publishing a request.

* ``IPubStart`` (``task_started``): a request that carries task headers
  must carry a valid signature (tasks/signature.py) for its method and
  path, the lease it names must be the task's current one, and it must
  be the request of the task it names, as the queue stored it (method,
  path, query, user), whoever could sign it. Anything else is refused
  with a 403 (``@@futures-task-refused`` is published instead of its
  path) and logged: a visitor cannot pass for a task. A valid one is
  marked on the request (``TASK_ATTRIBUTE``).
  If the task's id is already recorded in the ZODB (its work committed
  by an earlier delivery, whose acknowledgement was lost with its
  instance), the request publishes ``@@futures-task-done`` instead of the
  task's path: nothing runs twice, and the consumer acknowledges it.
* ``IPubBeforeCommit`` (``task_before_commit``): a delivery whose lease
  is no longer the task's current one (its consumer gave up on it and
  the task was leased again) fails, its work aborted: only the current
  delivery commits. Then the task's id is
  recorded in the ZODB (``DONE_KEY`` in the root), in the same
  transaction as the task's work: both commit, or neither (a
  ConflictError retries both), unless the response is an error (400 or
  more, which the consumer never takes for done). That is what makes a
  task's effect on the ZODB happen once although its delivery is at
  least once. The consuming instances' housekeeping prunes the records
  once the queue can no longer deliver their tasks (``record_keep``), in
  transactions of its own (``prune_done_records``).
"""

import itertools
import logging
import time

from zExceptions import Forbidden
from zope.publisher.browser import BrowserView

from ..core.printable import printable
from ..exceptions import TaskLeaseLostError
from ..runtime import get_tasks
from ..tasks import signature


logger = logging.getLogger("collective.futures.tasks")

#: Where a verified task request keeps (task id, lease id, (user folder,
#: user id) or None).
TASK_ATTRIBUTE = "_collective_futures_task"
#: The ZODB root's key of the record of done tasks (an OOBTree: task id ->
#: the time its work committed).
DONE_KEY = "collective.futures.tasks.done"
#: ... and of its index by time (an OOBTree: the end of a slice of time,
#: in seconds since the epoch -> an OOTreeSet of the ids recorded in it),
#: by which old records are pruned a slice at a time. A slice is 1/24 of
#: the time records are kept (between 10 s and an hour: ``slice_width``);
#: the housekeeping makes each slice's set before it begins, so that
#: tasks only add to it (random ids spread their writes over the set's
#: buckets, as over the record's: concurrent tasks' writes resolve instead
#: of conflicting, once a set has grown past its first bucket).
DONE_BY_TIME_KEY = "collective.futures.tasks.done-by-time"
#: Records pruned per transaction of the housekeeping (prune_done).
PRUNE_BATCH = 1000
#: What a task whose work is recorded publishes instead of its path.
DONE_VIEW = "/@@futures-task-done"
#: What a refused task request publishes instead of its path (a 403).
REFUSED_VIEW = "/@@futures-task-refused"


def task_of(request):
    """(task id, lease id, (user folder, user id) or None) of a verified
    task request, or None."""
    return getattr(request, TASK_ATTRIBUTE, None)


def task_started(event):
    request = event.request
    environ = request.environ
    if not any(key in environ for key in signature.ENVIRON_KEYS.values()):
        return
    # A retry (ConflictError) or a later pass of the same request: done.
    if task_of(request) is not None:
        return
    service = get_tasks()
    try:
        verified = signature.verify(service.secret, environ)
        # A signature captured earlier (a replay) names a lease that is
        # over: only the current delivery's request passes.
        if not service.backend.holds(verified[:2]):
            raise signature.InvalidSignature("its lease is not the task's current one")
        # And the request is the stored task's: its method, path, query
        # and user, not only what was signed (whoever could sign could
        # sign anything; the queue's records say what was queued).
        stored = service.backend.status(verified[0])
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        if stored is None or (
                stored["method"] != environ.get("REQUEST_METHOD")
                or signature.as_received(stored["path"]) != (
                    path, environ.get("QUERY_STRING", ""))
                or signature.user_record(signature.user_string(stored["user"]))
                != verified[2]):
            raise signature.InvalidSignature("it is not the request of the task it names")
    except signature.InvalidSignature as exc:
        logger.warning(
            "refused a request claiming to be a task's: %s (%s %s from %s)",
            exc, printable(environ.get("REQUEST_METHOD")),
            printable(environ.get("PATH_INFO")), printable(environ.get("REMOTE_ADDR")))
        # Not raised here: an exception at IPubStart comes before
        # ZPublisher's transaction context has yielded, and a site whose
        # exception views handle it (Plone) then fails with a 500. The
        # refusal view raises Forbidden where ZPublisher expects it.
        _publish_instead(request, REFUSED_VIEW)
        return
    setattr(request, TASK_ATTRIBUTE, verified)
    if _recorded(verified[0]):
        logger.info("task %s was already done (its work committed by an earlier "
                    "delivery): acknowledged without running again", verified[0])
        _publish_instead(request, DONE_VIEW)


def _publish_instead(request, path):
    """Publish ``path`` instead of the request's own: IPubStart comes before
    traversal, and this is the one way to publish something else (the
    request's own path must not run)."""
    request.environ["PATH_INFO"] = path
    request.environ["QUERY_STRING"] = ""
    request.other.pop("PATH_INFO", None)


def _recorded(task_id):
    import Zope2
    connection = Zope2.DB.open()
    try:
        done = connection.root().get(DONE_KEY)
        return done is not None and task_id in done
    finally:
        connection.close()


def task_before_commit(event):
    request = event.request
    task = task_of(request)
    if task is None or request.environ.get("PATH_INFO") == DONE_VIEW:
        return
    if request.response.getStatus() >= 400:
        # The consumer takes an error status for a failure and retries:
        # the task is not done, whatever the view let commit.
        return
    # The fence: only the task's current delivery may commit. An older one
    # (its consumer gave up on it, or vanished, and the task was leased
    # again) still running here would commit the work a second time.
    if not get_tasks().backend.holds(task[:2]):
        logger.warning("task %s: this delivery lost its lease before it "
                       "committed; its work is aborted (the current delivery "
                       "does it)", task[0])
        raise TaskLeaseLostError(
            f"task {task[0]}: this delivery lost its lease before it committed")
    parents = request.get("PARENTS") or ()
    jar = getattr(parents[-1], "_p_jar", None) if parents else None
    if jar is None:
        return
    record_done(jar.root(), task[0], time.time(),
                slice_width(record_keep(get_tasks().settings)))


def slice_width(keep):
    """Seconds of one slice of the record's index, for records kept
    ``keep`` seconds: a 24th of it, between 10 s and an hour."""
    return int(min(3600, max(10, keep // 24)))


def _slice(index, now, width):
    """The set of the slice of ``index`` that holds ``now`` (made if
    needed)."""
    from BTrees.OOBTree import OOTreeSet
    end = (int(now) // width + 1) * width
    ids = index.get(end)
    if ids is None:
        ids = index[end] = OOTreeSet()
    return ids


def _structures(root):
    from BTrees.OOBTree import OOBTree
    done = root.get(DONE_KEY)
    if done is None:
        done = root[DONE_KEY] = OOBTree()
    index = root.get(DONE_BY_TIME_KEY)
    if index is None:
        index = root[DONE_BY_TIME_KEY] = OOBTree()
    return done, index


def record_done(root, task_id, now, width):
    """Record in ``root`` (the ZODB's) that the work of ``task_id``
    committed at ``now``, in the transaction of that work, in the index
    slice (``width`` seconds) that holds ``now``."""
    done, index = _structures(root)
    done[task_id] = now
    _slice(index, now, width).add(task_id)


def record_keep(settings):
    """Seconds a task's record must outlive its work: as long as the
    queue could still deliver the task again. A done task's status is
    kept ``task_keep_done``, a dead one (which an operator may re-queue,
    its work perhaps committed by a last delivery whose acknowledgement
    was lost) ``task_keep_dead``, and a lease may expire after that."""
    return (max(settings.task_keep_done, settings.task_keep_dead)
            + 2 * settings.task_lease)


def prune_done(root, cutoff, limit=PRUNE_BATCH):
    """Forget at most ``limit`` records of the slices that ended at or
    before ``cutoff`` (seconds since the epoch). Returns how many."""
    index = root.get(DONE_BY_TIME_KEY)
    done = root.get(DONE_KEY)
    if index is None or done is None:
        return 0
    count = 0
    for end in list(index.keys(max=int(cutoff))):
        ids = index[end]
        for task_id in list(itertools.islice(ids.keys(), limit - count)):
            ids.remove(task_id)
            done.pop(task_id, None)
            count += 1
        if not ids:
            del index[end]
        if count >= limit:
            break
    return count


def prune_done_records(db, keep, now=None, limit=PRUNE_BATCH):
    """The housekeeping's part in the ZODB (``db``): forget the records
    older than ``keep`` seconds, ``limit`` per transaction, until none is
    left, and make the sets of the current and the next slice of the
    index. A conflict (another instance does the same) ends the round;
    the next one goes on. Returns how many were forgotten."""
    import transaction
    from ZODB.POSException import ConflictError
    now = time.time() if now is None else now
    width = slice_width(keep)
    manager = transaction.TransactionManager()
    connection = db.open(transaction_manager=manager)
    total = 0
    try:
        while True:
            manager.begin()
            try:
                root = connection.root()
                count = prune_done(root, now - keep, limit)
                if count < limit:
                    _, index = _structures(root)
                    for at in (now, now + width):
                        _slice(index, at, width)
                manager.get().note("collective.futures: prune the record of done tasks")
                manager.commit()
            except ConflictError:
                manager.abort()
                break
            total += count
            if count < limit:
                break
    finally:
        manager.abort()
        connection.close()
    return total


class TaskRefused(BrowserView):
    """What a request that claims to be a task's, and is not, publishes."""

    def __call__(self):
        raise Forbidden("not a valid task request")


class TaskDone(BrowserView):
    """What a task whose work is already recorded publishes."""

    def __call__(self):
        if task_of(self.request) is None:
            raise Forbidden("only for task requests")
        self.request.response.setHeader("Content-Type", "text/plain; charset=utf-8")
        return "already done\n"
