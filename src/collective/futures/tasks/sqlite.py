"""The embedded backend: one SQLite file (WAL), no service.

Runs on: any thread (one connection per backend object, behind a lock);
any number of processes on one machine may open the same file (Zope
instances on ZEO or RelStorage sharing a machine): SQLite's write lock
serializes their writes, ``BEGIN IMMEDIATE`` takes it before a read that
decides a write (a lease, a dedup check), so two consumers never lease the
same task.

Durability: ``synchronous = FULL`` in WAL mode, so what ``prepare``
returned from survives a crash of the process and of the machine.
Every wait has a deadline: SQLite's ``busy_timeout`` (``timeout``
seconds) bounds the wait for another process's write lock; past it the
call raises TaskQueueUnavailableError.

See ITaskBackend (interfaces.py) for what each method promises.
"""

import json
import os
import pathlib
import secrets
import sqlite3
import threading
import time
import uuid

from zope.interface import implementer

from ..exceptions import TaskQueueUnavailableError
from ..interfaces import ITaskBackend


SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    state TEXT NOT NULL,
    token TEXT,
    prepared REAL,
    eta REAL NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    dedup TEXT,
    lease_id TEXT,
    lease_until REAL,
    consumer TEXT,
    last_error TEXT,
    finished REAL,
    request TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (queue, state, eta);
CREATE INDEX IF NOT EXISTS tasks_token ON tasks (token) WHERE token IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_dedup ON tasks (queue, dedup) WHERE dedup IS NOT NULL;
-- purge: the done and dead tasks finished long ago, without a scan.
CREATE INDEX IF NOT EXISTS tasks_finished ON tasks (state, finished);
"""

#: The states in which a dedup key is taken.
_ACTIVE = ("prepared", "queued", "running")

#: The task fields kept as JSON in the ``request`` column (the rest are
#: columns of their own, or the payload's blob).
_REQUEST_FIELDS = ("method", "path", "headers", "user", "backoff")

_COLUMNS = ("id, queue, state, eta, created, attempts, max_attempts, dedup, "
            "lease_until, consumer, last_error, finished, request, payload")


def _task(row):
    (task_id, queue, state, eta, created, attempts, max_attempts, dedup,
     lease_until, consumer, last_error, finished, request, payload) = row
    task = json.loads(request)
    task.update(id=task_id, queue=queue, state=state, eta=eta, created=created,
                attempts=attempts, max_attempts=max_attempts, dedup=dedup,
                lease_until=lease_until, consumer=consumer,
                last_error=last_error, finished=finished, payload=bytes(payload))
    return task


@implementer(ITaskBackend)
class SQLiteBackend:
    """See ITaskBackend. ``path``: the database file (created readable by
    its owner only); ``timeout``: seconds to wait for another process's
    write lock."""

    def __init__(self, path, timeout=10.0):
        self.path = pathlib.Path(path)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._connection = None
        with self._lock:
            self._connection = self._connect()
            try:
                # executescript commits as it goes: outside a transaction.
                self._connection.executescript(SCHEMA)
            except sqlite3.Error as exc:
                self._drop_connection()
                raise TaskQueueUnavailableError(
                    f"the task queue's SQLite file {str(self.path)!r} cannot "
                    f"hold the queue's table: {exc}") from exc

    def __repr__(self):
        return f"<SQLiteBackend {str(self.path)!r}>"

    # the connection

    def _connect(self):
        try:
            # Readable by this user only: the file holds the secret that
            # signs task requests, the leases, and the tasks' requests.
            # (WAL and shared-memory files SQLite creates next to it take
            # the file's permissions.)
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            connection = sqlite3.connect(
                str(self.path), timeout=self.timeout, isolation_level=None,
                check_same_thread=False)
            # WAL: readers do not block the writer, nor the writer them.
            # FULL: a commit is on disk when it returns (prepare's promise).
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise sqlite3.OperationalError(f"journal_mode is {mode}, not wal")
            connection.execute("PRAGMA synchronous = FULL")
        except (sqlite3.Error, OSError) as exc:
            raise TaskQueueUnavailableError(
                f"the task queue's SQLite file {str(self.path)!r} cannot be "
                f"opened: {exc}") from exc
        return connection

    class _Transaction:
        def __init__(self, backend, what, immediate):
            self.backend, self.what, self.immediate = backend, what, immediate

        def __enter__(self):
            backend = self.backend
            # One connection per backend object: its lock makes the calls
            # of this process's threads take turns (SQLite would serialize
            # their writes anyway); other processes wait on SQLite's lock.
            backend._lock.acquire()
            try:
                if backend._connection is None:
                    backend._connection = backend._connect()
                self.db = backend._connection
                self.db.execute("BEGIN IMMEDIATE" if self.immediate else "BEGIN")
            except sqlite3.Error as exc:
                backend._lock.release()
                raise self.unavailable(exc) from exc
            except BaseException:
                backend._lock.release()
                raise
            return self.db

        def __exit__(self, kind, exc, tb):
            try:
                if kind is None:
                    try:
                        self.db.execute("COMMIT")
                        return False
                    except sqlite3.Error as error:
                        self._rollback()
                        raise self.unavailable(error) from error
                self._rollback()
                if isinstance(exc, sqlite3.Error):
                    raise self.unavailable(exc) from exc
                return False
            finally:
                self.backend._lock.release()

        def _rollback(self):
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                # No transaction left to roll back (SQLite ended it on the
                # error), or the connection is broken: open a new one next.
                self.backend._drop_connection()

        def unavailable(self, exc):
            return TaskQueueUnavailableError(
                f"the task queue's SQLite file {str(self.backend.path)!r} "
                f"could not {self.what}: {exc}")

    def _transaction(self, what, immediate=True):
        return self._Transaction(self, what, immediate)

    def _drop_connection(self):
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except sqlite3.Error:  # pragma: no cover - closing a broken file
                pass

    def close(self):
        with self._lock:
            self._drop_connection()

    # writing tasks (the transaction's data manager)

    def prepare(self, tasks, token, now=None):
        now = time.time() if now is None else now
        stored = []
        with self._transaction("store tasks") as db:
            for task in tasks:
                if db.execute("SELECT 1 FROM tasks WHERE id = ?",
                              (task["id"],)).fetchone() is not None:
                    stored.append(task["id"])
                    continue
                if task.get("dedup") is not None:
                    existing = db.execute(
                        "SELECT id FROM tasks WHERE queue = ? AND dedup = ? AND state "
                        "IN (?, ?, ?) LIMIT 1",
                        (task["queue"], task["dedup"], *_ACTIVE)).fetchone()
                    if existing is not None:
                        stored.append(existing[0])
                        continue
                request = json.dumps({name: task[name] for name in _REQUEST_FIELDS})
                db.execute(
                    "INSERT INTO tasks (id, queue, state, token, prepared, eta, "
                    "created, attempts, max_attempts, dedup, request, payload) VALUES "
                    "(?, ?, 'prepared', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (task["id"], task["queue"], token, now, task["eta"], task["created"],
                     task["attempts"], task["max_attempts"], task["dedup"],
                     request, sqlite3.Binary(task["payload"])))
                stored.append(task["id"])
        return stored

    def find(self, queue, dedup):
        with self._transaction("find a task", immediate=False) as db:
            row = db.execute(
                "SELECT id FROM tasks WHERE queue = ? AND dedup = ? AND state "
                "IN (?, ?, ?) LIMIT 1", (queue, dedup, *_ACTIVE)).fetchone()
        return None if row is None else row[0]

    def confirm(self, token):
        with self._transaction("confirm tasks") as db:
            return db.execute(
                "UPDATE tasks SET state = 'queued', token = NULL "
                "WHERE token = ? AND state = 'prepared'", (token,)).rowcount

    def discard(self, token):
        with self._transaction("discard tasks") as db:
            return db.execute("DELETE FROM tasks WHERE token = ? AND state = 'prepared'",
                              (token,)).rowcount

    # consuming

    def lease(self, queue, consumer, limit, lease_seconds, now=None):
        now = time.time() if now is None else now
        leased = []
        # IMMEDIATE: the write lock before the read, so that no other
        # consumer (thread or process) picks the same rows meanwhile.
        with self._transaction("lease tasks") as db:
            rows = db.execute(
                "SELECT id FROM tasks WHERE queue = ? AND ("
                "(state = 'queued' AND eta <= ?) OR (state = 'running' AND lease_until <= ?)) "
                "ORDER BY CASE state WHEN 'queued' THEN eta ELSE lease_until END, created "
                "LIMIT ?", (queue, now, now, int(limit))).fetchall()
            for (task_id,) in rows:
                lease_id = uuid.uuid4().hex
                db.execute(
                    "UPDATE tasks SET state = 'running', lease_id = ?, lease_until = ?, "
                    "consumer = ?, attempts = attempts + 1 WHERE id = ?",
                    (lease_id, now + lease_seconds, consumer, task_id))
                row = db.execute(f"SELECT {_COLUMNS} FROM tasks WHERE id = ?",
                                 (task_id,)).fetchone()
                leased.append(((task_id, lease_id), _task(row)))
        return leased

    def _settle(self, lease, what, assignments, values):
        task_id, lease_id = lease
        with self._transaction(what) as db:
            return db.execute(
                f"UPDATE tasks SET {assignments} WHERE id = ? AND lease_id = ? "
                f"AND state = 'running'", (*values, task_id, lease_id)).rowcount == 1

    def holds(self, lease):
        task_id, lease_id = lease
        with self._transaction("read a lease", immediate=False) as db:
            return db.execute(
                "SELECT 1 FROM tasks WHERE id = ? AND lease_id = ? AND state = 'running'",
                (task_id, lease_id)).fetchone() is not None

    def extend(self, lease, lease_seconds, now=None):
        now = time.time() if now is None else now
        return self._settle(lease, "extend a lease", "lease_until = ?",
                            (now + lease_seconds,))

    def ack(self, lease, now=None):
        now = time.time() if now is None else now
        return self._settle(lease, "acknowledge a task",
                            "state = 'done', lease_id = NULL, lease_until = NULL, "
                            "finished = ?", (now,))

    def retry(self, lease, error, eta):
        return self._settle(lease, "retry a task",
                            "state = 'queued', lease_id = NULL, lease_until = NULL, "
                            "eta = ?, last_error = ?", (eta, str(error)))

    def bury(self, lease, error, now=None):
        now = time.time() if now is None else now
        return self._settle(lease, "bury a task",
                            "state = 'dead', lease_id = NULL, lease_until = NULL, "
                            "last_error = ?, finished = ?", (str(error), now))

    # looking

    def status(self, task_id):
        with self._transaction("read a task", immediate=False) as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM tasks WHERE id = ?",
                             (task_id,)).fetchone()
        return None if row is None else _task(row)

    def stats(self, queue, now=None):
        now = time.time() if now is None else now
        figures = {"prepared": 0, "queued": 0, "scheduled": 0, "running": 0,
                   "done": 0, "dead": 0}
        with self._transaction("count tasks", immediate=False) as db:
            for state, due, count in db.execute(
                    "SELECT state, eta <= ?, COUNT(*) FROM tasks WHERE queue = ? "
                    "GROUP BY state, eta <= ?", (now, queue, now)):
                key = "scheduled" if state == "queued" and not due else state
                figures[key] += count
            oldest = db.execute(
                "SELECT MIN(eta) FROM tasks WHERE queue = ? AND state = 'queued' "
                "AND eta <= ?", (queue, now)).fetchone()[0]
        figures["oldest_queued_age"] = 0.0 if oldest is None else max(0.0, now - oldest)
        return figures

    def queues(self):
        with self._transaction("list queues", immediate=False) as db:
            return [name for (name,) in db.execute(
                "SELECT DISTINCT queue FROM tasks ORDER BY queue")]

    def dead_letters(self, queue, limit=100):
        with self._transaction("list dead tasks", immediate=False) as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM tasks WHERE queue = ? AND state = 'dead' "
                f"ORDER BY finished DESC, id LIMIT ?", (queue, int(limit))).fetchall()
        return [_task(row) for row in rows]

    def requeue(self, task_id, now=None):
        now = time.time() if now is None else now
        with self._transaction("requeue a task") as db:
            return db.execute(
                "UPDATE tasks SET state = 'queued', eta = ?, attempts = 0, "
                "finished = NULL, consumer = NULL WHERE id = ? AND state = 'dead'",
                (now, task_id)).rowcount == 1

    def delete(self, task_id):
        with self._transaction("delete a task") as db:
            return db.execute("DELETE FROM tasks WHERE id = ? AND state IN ('dead', 'done')",
                              (task_id,)).rowcount == 1

    def next_eta(self, queue):
        with self._transaction("read the next due time", immediate=False) as db:
            return db.execute(
                "SELECT MIN(CASE state WHEN 'queued' THEN eta ELSE lease_until END) "
                "FROM tasks WHERE queue = ? AND state IN ('queued', 'running')",
                (queue,)).fetchone()[0]

    def secret(self):
        with self._transaction("keep the secret") as db:
            # INSERT OR IGNORE under the write lock: the first process's
            # secret is everyone's.
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('secret', ?)",
                       (secrets.token_hex(32),))
            return db.execute("SELECT value FROM meta WHERE key = 'secret'").fetchone()[0]

    # housekeeping

    def recover(self, older_than, now=None):
        now = time.time() if now is None else now
        with self._transaction("recover tasks in doubt") as db:
            return db.execute(
                "UPDATE tasks SET state = 'dead', token = NULL, finished = ?, "
                "last_error = ? WHERE state = 'prepared' AND prepared < ?",
                (now, IN_DOUBT, now - older_than)).rowcount

    def purge(self, older_than, now=None, dead_older_than=None):
        now = time.time() if now is None else now
        with self._transaction("purge done tasks") as db:
            count = db.execute("DELETE FROM tasks WHERE state = 'done' AND finished < ?",
                               (now - older_than,)).rowcount
            if dead_older_than is not None:
                count += db.execute(
                    "DELETE FROM tasks WHERE state = 'dead' AND finished < ?",
                    (now - dead_older_than,)).rowcount
            return count


#: The last error of a task found prepared but never confirmed.
IN_DOUBT = ("in doubt: the process that queued this task ended (or failed) "
            "between its transaction's vote and its confirmation, so whether "
            "that transaction committed is not known; requeue it if its "
            "work was committed")
