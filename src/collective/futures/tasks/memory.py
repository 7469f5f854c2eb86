"""An in-memory backend, for unit tests only: nothing survives the
process, nothing is shared with another one (so ``prepare`` is not
durable, which ITaskBackend asks; the configuration never offers it).

Runs on: any thread (one lock). See ITaskBackend (interfaces.py).
"""

import copy
import secrets
import threading
import time
import uuid

from zope.interface import implementer

from ..interfaces import ITaskBackend
from .sqlite import IN_DOUBT


@implementer(ITaskBackend)
class MemoryBackend:
    """See ITaskBackend."""

    def __init__(self):
        self._lock = threading.Lock()
        #: task id -> the stored task, plus "_token", "_prepared", "_lease"
        self._tasks = {}
        self._secret = None

    def __repr__(self):
        return f"<MemoryBackend {len(self._tasks)} tasks>"

    @staticmethod
    def _public(task):
        return {name: copy.copy(value) for name, value in task.items()
                if not name.startswith("_")}

    def prepare(self, tasks, token, now=None):
        now = time.time() if now is None else now
        with self._lock:
            stored = []
            for task in tasks:
                if task["id"] in self._tasks:
                    stored.append(task["id"])
                    continue
                existing = self._active_dedup(task)
                if existing is not None:
                    stored.append(existing)
                    continue
                record = dict(copy.deepcopy(task), state="prepared", lease_until=None,
                              consumer=None, last_error=None, finished=None,
                              _token=token, _prepared=now, _lease=None)
                self._tasks[task["id"]] = record
                stored.append(task["id"])
            return stored

    def _active_dedup(self, task):
        if task.get("dedup") is None:
            return None
        for other in self._tasks.values():
            if other["queue"] == task["queue"] and other["dedup"] == task["dedup"] \
                    and other["state"] in ("prepared", "queued", "running"):
                return other["id"]
        return None

    def find(self, queue, dedup):
        with self._lock:
            return self._active_dedup({"queue": queue, "dedup": dedup})

    def confirm(self, token):
        with self._lock:
            count = 0
            for task in self._tasks.values():
                if task["_token"] == token and task["state"] == "prepared":
                    task["state"], task["_token"] = "queued", None
                    count += 1
            return count

    def discard(self, token):
        with self._lock:
            doomed = [task_id for task_id, task in self._tasks.items()
                      if task["_token"] == token and task["state"] == "prepared"]
            for task_id in doomed:
                del self._tasks[task_id]
            return len(doomed)

    @staticmethod
    def _due_at(task):
        return task["eta"] if task["state"] == "queued" else task["lease_until"]

    def lease(self, queue, consumer, limit, lease_seconds, now=None):
        now = time.time() if now is None else now
        with self._lock:
            due = [task for task in self._tasks.values() if task["queue"] == queue and (
                (task["state"] == "queued" and task["eta"] <= now)
                or (task["state"] == "running" and task["lease_until"] <= now))]
            due.sort(key=lambda task: (self._due_at(task), task["created"]))
            leased = []
            for task in due[:max(0, int(limit))]:
                lease_id = uuid.uuid4().hex
                task.update(state="running", lease_until=now + lease_seconds,
                            consumer=consumer, attempts=task["attempts"] + 1,
                            _lease=lease_id)
                leased.append(((task["id"], lease_id), self._public(task)))
            return leased

    def _held(self, lease):
        task_id, lease_id = lease
        task = self._tasks.get(task_id)
        if task is None or task["state"] != "running" or task["_lease"] != lease_id:
            return None
        return task

    def holds(self, lease):
        with self._lock:
            return self._held(lease) is not None

    def extend(self, lease, lease_seconds, now=None):
        now = time.time() if now is None else now
        with self._lock:
            task = self._held(lease)
            if task is None:
                return False
            task["lease_until"] = now + lease_seconds
            return True

    def _end_lease(self, lease, **changes):
        with self._lock:
            task = self._held(lease)
            if task is None:
                return False
            task.update(lease_until=None, _lease=None, **changes)
            return True

    def ack(self, lease, now=None):
        now = time.time() if now is None else now
        return self._end_lease(lease, state="done", finished=now)

    def retry(self, lease, error, eta):
        return self._end_lease(lease, state="queued", eta=eta, last_error=str(error))

    def bury(self, lease, error, now=None):
        now = time.time() if now is None else now
        return self._end_lease(lease, state="dead", last_error=str(error), finished=now)

    def status(self, task_id):
        with self._lock:
            task = self._tasks.get(task_id)
            return None if task is None else self._public(task)

    def stats(self, queue, now=None):
        now = time.time() if now is None else now
        figures = {"prepared": 0, "queued": 0, "scheduled": 0, "running": 0,
                   "done": 0, "dead": 0}
        oldest = None
        with self._lock:
            for task in self._tasks.values():
                if task["queue"] != queue:
                    continue
                state = task["state"]
                if state == "queued" and task["eta"] > now:
                    state = "scheduled"
                elif state == "queued":
                    oldest = task["eta"] if oldest is None else min(oldest, task["eta"])
                figures[state] += 1
        figures["oldest_queued_age"] = 0.0 if oldest is None else max(0.0, now - oldest)
        return figures

    def queues(self):
        with self._lock:
            return sorted({task["queue"] for task in self._tasks.values()})

    def dead_letters(self, queue, limit=100):
        with self._lock:
            dead = [task for task in self._tasks.values()
                    if task["queue"] == queue and task["state"] == "dead"]
            dead.sort(key=lambda task: task["id"])
            dead.sort(key=lambda task: task["finished"], reverse=True)
            return [self._public(task) for task in dead[:max(0, int(limit))]]

    def requeue(self, task_id, now=None):
        now = time.time() if now is None else now
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or task["state"] != "dead":
                return False
            task.update(state="queued", eta=now, attempts=0, finished=None,
                        consumer=None)
            return True

    def delete(self, task_id):
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or task["state"] not in ("dead", "done"):
                return False
            del self._tasks[task_id]
            return True

    def next_eta(self, queue):
        with self._lock:
            times = [self._due_at(task) for task in self._tasks.values()
                     if task["queue"] == queue and task["state"] in ("queued", "running")]
            return min(times) if times else None

    def recover(self, older_than, now=None):
        now = time.time() if now is None else now
        with self._lock:
            count = 0
            for task in self._tasks.values():
                if task["state"] == "prepared" and task["_prepared"] < now - older_than:
                    task.update(state="dead", _token=None, finished=now,
                                last_error=IN_DOUBT)
                    count += 1
            return count

    def purge(self, older_than, now=None, dead_older_than=None):
        now = time.time() if now is None else now
        keep = {"done": older_than, "dead": dead_older_than}
        with self._lock:
            old = [task_id for task_id, task in self._tasks.items()
                   if keep.get(task["state"]) is not None
                   and task["finished"] < now - keep[task["state"]]]
            for task_id in old:
                del self._tasks[task_id]
            return len(old)

    def secret(self):
        with self._lock:
            if self._secret is None:
                self._secret = secrets.token_hex(32)
            return self._secret

    def close(self):
        pass
