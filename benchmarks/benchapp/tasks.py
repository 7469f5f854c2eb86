"""The task benchmark's views: queue no-op tasks with collective.futures's
task queue or with Huey's SQLite storage (the engine of
collective.taskqueue2), and note when each was committed and when it
started. Loaded by the benchmark's instances only.

Huey runs here as collective.taskqueue2 runs it: a consumer thread inside
the Zope instance (one worker thread, its polling delays), a task that
opens a ZODB connection, traverses to the view with a made-up request,
calls it and commits. Its queue is written when ``enqueue`` returns: Huey
is not bound to the transaction, so that moment is its commit.
"""

import json
import threading
import time

import transaction


#: batch -> {task number: when the write that made it visible began
#: (epoch s): the commit of its transaction, or Huey's ``enqueue``}
COMMITTED = {}
#: batch -> [(task number, when its view was called)], for the calls
#: whose transaction committed (a call that a ConflictError retries is
#: called again: its effect counts once)
STARTED = {}
#: batch -> calls, retried ones included
CALLS = {}

_huey = {}
_huey_lock = threading.Lock()


class _View:
    def __init__(self, context, request):
        self.context = context
        self.request = request


class Noop(_View):
    """The task: notes when it was called, once its transaction commits."""

    def __call__(self):
        form = self.request.form
        batch, number, called = form["batch"], int(form["i"]), time.time()
        CALLS[batch] = CALLS.get(batch, 0) + 1

        def note(success):
            if success:
                STARTED.setdefault(batch, []).append((number, called))
        transaction.get().addAfterCommitHook(note)
        return "ok"


class Queue(_View):
    """Queues ``n`` tasks of ``batch``, numbered from ``first``, with
    ``engine`` (futures: in this request's transaction; huey: one
    ``enqueue`` each)."""

    def __call__(self):
        form = self.request.form
        batch, first = form["batch"], int(form.get("first", 0))
        numbers = range(first, first + int(form["n"]))
        committed = COMMITTED.setdefault(batch, {})
        if form["engine"] == "huey":
            task = _huey["task"]
            for i in numbers:
                committed[i] = time.time()
                task(batch, i)
        else:
            from collective.futures import taskqueue
            for i in numbers:
                taskqueue.add("/@@bench-task-noop", params={"batch": batch, "i": i})

            def note():
                # The commit begins: the ZODB's, then the queue's
                # confirmation, are part of the latency measured.
                now = time.time()
                committed.update((i, now) for i in numbers)
            transaction.get().addBeforeCommitHook(note)
        return str(len(numbers))


class Figures(_View):
    def __call__(self):
        batch = self.request.form["batch"]
        self.request.response.setHeader("Content-Type", "application/json")
        return json.dumps({"committed": COMMITTED.get(batch, {}),
                           "started": STARTED.get(batch, []),
                           "calls": CALLS.get(batch, 0)})


def _run_view(batch, i):
    """Huey's task, as collective.taskqueue2 runs one: a connection of its
    own, a made-up request, the view traversed and called, a commit."""
    import Zope2
    from Testing.makerequest import makerequest

    manager = transaction.manager
    manager.begin()
    app = makerequest(Zope2.app())
    try:
        app.REQUEST.form.update({"batch": batch, "i": str(i)})
        app.restrictedTraverse("@@bench-task-noop")()
        manager.commit()
    except BaseException:
        manager.abort()
        raise
    finally:
        app._p_jar.close()


class HueyStart(_View):
    """Starts Huey on the SQLite file ``db`` or the Redis of ``redis`` (a
    URL; queue ``name``), once; with ``consume=1``, its consumer thread
    too, with ``workers``, ``initial_delay``, ``backoff``, ``max_delay``."""

    def __call__(self):
        from huey import RedisHuey, SqliteHuey
        from huey.consumer import Consumer

        class ThreadConsumer(Consumer):
            # Signal handlers belong to the main thread, which is Zope's.
            def _set_signal_handlers(self):
                pass

        with _huey_lock:
            form = self.request.form
            if "task" not in _huey:
                if form.get("redis"):
                    huey = RedisHuey(form.get("name", "huey"), url=form["redis"],
                                     results=False)
                else:
                    huey = SqliteHuey(filename=form["db"], results=False)
                _huey["task"] = huey.task()(_run_view)
                _huey["huey"] = huey
            if "consumer" not in _huey and form.get("consume", "1") == "1":
                huey = _huey["huey"]
                # The options the benchmark passes: collective.taskqueue2's.
                consumer = ThreadConsumer(
                    huey, workers=int(form["workers"]), worker_type="thread",
                    periodic=False, initial_delay=float(form["initial_delay"]),
                    backoff=float(form["backoff"]), max_delay=float(form["max_delay"]),
                    scheduler_interval=1, check_worker_health=True,
                    health_check_interval=4)
                consumer.start()
                _huey["consumer"] = consumer
        return "started"
