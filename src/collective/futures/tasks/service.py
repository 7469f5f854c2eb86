"""The process's background tasks: the configured backend, the queues, the
secret, and (in an instance that consumes) the consumer and its
housekeeping, and the periodic tasks.

Runs on: the thread that queues a task (``queue``), the main thread at
startup and shutdown (``start_consumer``, ``stop``), and its own
threads: ``collective.futures-task-housekeeping``, which every minute
(or every half of ``task_keep_done`` or ``task_keep_dead``, if shorter)
turns tasks left in doubt into dead letters (``ITaskBackend.recover``),
forgets tasks done longer ago than ``task_keep_done``, and dead ones
buried longer ago than ``task_keep_dead`` (``purge``), and runs the
``housekeepers`` (the ZODB's part);
``collective.futures-task-periodic``, which adds the task of
each periodic task's slot when it comes (consuming instances only).
"""

import logging
import os
import pathlib
import socket
import threading
import time

from ..core.metrics import Histogram
from ..exceptions import ConfigurationError, TaskQueueError
from .binding import bind
from .consumer import Consumer
from .model import new_task
from .schedule import merge_periodic, slot_task_id
from .redis import is_redis_url, public_url
from .sqlite import SQLiteBackend


logger = logging.getLogger("collective.futures.tasks")

#: How a task this instance ran was settled (consumer.py).
SETTLED = ("done", "retried", "dead", "lost")

#: Seconds between two looks of the periodic scheduler at the clock, and
#: how old a slot may be and still fire (an instance that starts fires the
#: slot it missed, if no instance did, within the hour).
PERIODIC_TICK = 1.0
PERIODIC_HORIZON = 3600.0

#: Seconds between two rounds of housekeeping.
HOUSEKEEPING_INTERVAL = 60.0

#: Seconds the metrics and the Control Panel wait for the backend's
#: figures: less than a scrape's timeout (Prometheus: 10 s), where a hung
#: Redis would hold the read for its socket timeout.
FIGURES_DEADLINE = 2.0


def backend_path(url, var_dir):
    """The file of a ``sqlite:PATH`` setting (relative: in ``var_dir``);
    None for a Redis URL."""
    if is_redis_url(url):
        return None
    path = pathlib.Path(url.partition(":")[2].strip()).expanduser()
    return path if path.is_absolute() else pathlib.Path(var_dir) / path


class TaskService:
    """See the module's docstring. ``settings``: the validated Settings;
    ``var_dir``: where a relative SQLite path lives."""

    def __init__(self, settings, var_dir, declared=()):
        self.settings = settings
        self.queues = tuple(settings.task_queues.split())
        #: The periodic tasks (PeriodicTask): ``declared`` in ZCML, with
        #: zope.conf's ``task_periodic.NAME`` over them.
        periodic, unknown = merge_periodic(declared, settings.periodic)
        self.periodic = tuple(periodic)
        for name in unknown:
            logger.warning("task_periodic.%s off: no periodic task of that name "
                           "is declared (in ZCML)", name)
        for task in self.periodic:
            if task.queue is not None and task.queue not in self.queues:
                raise ConfigurationError(
                    f"{task.origin}: queue {task.queue!r} is not one of task_queues "
                    f"({' '.join(self.queues)})")
        self.default_queue = self.queues[0]
        self.path = backend_path(settings.task_backend, var_dir)
        #: What the logs and the Control Panel name: the file, or the
        #: Redis URL without its password.
        self.where = (str(self.path) if self.path is not None
                      else public_url(settings.task_backend))
        self.consumer = None
        self._lock = threading.Lock()
        self._backend = None
        self._secret = settings.task_secret or None
        self._stopped = threading.Event()
        self._housekeeping = None
        #: Called with no argument in each round of housekeeping (the ZODB's
        #: part, zope/startup.py adds it).
        self.housekeepers = []
        #: (queue, outcome) -> count, and queue -> run times, of the tasks
        #: this instance ran.
        self.outcomes = {}
        self.durations = {}
        #: The read of the backend's figures under way on its own thread
        #: (snapshot with a deadline): (done Event, result dict), or None.
        self._figures_read = None

    @property
    def backend(self):
        """The backend, opened on first use (a bad path fails the first
        task's commit, or the consumer's start, naming the file)."""
        with self._lock:
            if self._backend is None:
                if self.path is None:
                    from .redis import RedisBackend
                    self._backend = RedisBackend(self.settings.task_backend)
                else:
                    self._backend = SQLiteBackend(self.path)
            return self._backend

    @property
    def secret(self):
        with self._lock:
            secret = self._secret
        if secret is None:
            secret = self.backend.secret()
            with self._lock:
                self._secret = secret
        return secret

    def check_queue(self, queue):
        if queue not in self.queues:
            raise TaskQueueError(
                f"queue: {queue!r} is not a configured queue (task_queues: "
                f"{' '.join(self.queues)})")
        return queue

    def queue(self, task, transaction_manager=None):
        """Bind ``task`` to the current transaction: queued if it commits."""
        self.check_queue(task["queue"])
        return bind(self.backend, task, transaction_manager, on_confirmed=self._wake)

    def _wake(self):
        consumer = self.consumer
        if consumer is not None:
            consumer.wake()

    # consuming

    def start_consumer(self, base_url):
        """Run tasks, sending their requests to ``base_url``."""
        settings = self.settings
        self.consumer = Consumer(
            self.backend, self.queues, base_url, self.secret,
            concurrency=settings.task_concurrency, lease_seconds=settings.task_lease,
            request_timeout=settings.task_timeout, poll_interval=settings.task_poll,
            # Unique across machines and containers (whose address and pid
            # may be the same in each): the host's name too.
            name=f"{socket.gethostname()} {base_url} ({os.getpid()})",
            on_settled=self._settled).start()
        self._housekeeping = threading.Thread(
            target=self._keep_house, name="collective.futures-task-housekeeping",
            daemon=True)
        self._housekeeping.start()
        if self.periodic:
            threading.Thread(target=self._fire_periodic, daemon=True,
                             name="collective.futures-task-periodic").start()
        logger.info("consuming background tasks of %s from %s: %d at once, "
                    "requests to %s", ", ".join(self.queues), self.where,
                    settings.task_concurrency, base_url)
        return self.consumer

    def _settled(self, task, outcome, seconds):
        key = (task["queue"], outcome)
        with self._lock:
            self.outcomes[key] = self.outcomes.get(key, 0) + 1
            self.durations.setdefault(task["queue"], Histogram()).observe(seconds)

    def snapshot(self, deadline=None):
        """The queues' figures (from the backend: the same on every
        instance sharing it) and this instance's consumer's, as plain
        data; ``unreachable`` says why the backend could not be read.
        ``deadline``: seconds to wait for the backend; a backend that has
        not answered by then is reported unreachable, while its read goes
        on, on ``collective.futures-task-figures`` (until the backend's own
        timeout): snapshots meanwhile wait for that read, never start
        another."""
        data = {"backend": self.where, "queues": {}, "unreachable": None,
                "consumer": None, "consumers": None}
        data.update(self._backend_figures() if deadline is None
                    else self._backend_figures_within(deadline))
        consumer = self.consumer
        with self._lock:
            settled = {}
            for (queue, outcome), count in self.outcomes.items():
                settled.setdefault(queue, dict.fromkeys(SETTLED, 0))[outcome] = count
            durations = {queue: histogram.as_dict()
                         for queue, histogram in self.durations.items()}
        if consumer is not None:
            data["consumer"] = {"concurrency": consumer.concurrency,
                                "running": consumer.running, "settled": settled,
                                "durations": durations}
        return data

    def _backend_figures(self):
        figures = {"queues": {}, "unreachable": None, "consumers": None}
        try:
            backend = self.backend
            for queue in self.queues:
                figures["queues"][queue] = backend.stats(queue)
            if hasattr(backend, "consumers"):
                # The instances that consume from this backend (Redis).
                figures["consumers"] = backend.consumers()
        except Exception as exc:
            figures = {"queues": {}, "consumers": None,
                       "unreachable": f"{type(exc).__name__}: {exc}"}
        return figures

    def _backend_figures_within(self, deadline):
        with self._lock:
            if self._figures_read is None:
                self._figures_read = (threading.Event(), {})
                threading.Thread(target=self._read_figures, args=self._figures_read,
                                 name="collective.futures-task-figures",
                                 daemon=True).start()
            done, result = self._figures_read
        if done.wait(deadline):
            return result["figures"]
        return {"queues": {}, "consumers": None,
                "unreachable": f"the task backend did not answer within {deadline:g} s"}

    def _read_figures(self, done, result):
        try:
            result["figures"] = self._backend_figures()
        finally:
            with self._lock:
                self._figures_read = None
            done.set()

    def dead_letters(self, limit=20):
        """The most recent dead tasks of every queue (for the Control
        Panel), or [] when the backend cannot be read."""
        try:
            backend = self.backend
            return [task for queue in self.queues
                    for task in backend.dead_letters(queue, limit)]
        except Exception:
            return []

    def _fire_periodic(self):
        """Adds the task of each periodic task's latest slot, once: its id
        is made from the name and the slot, so the queue keeps one task per
        slot however many instances add it (ITaskBackend.prepare)."""
        fired = {}
        # Why wait here: a second between looks at the clock; stop ends it.
        while not self._stopped.wait(PERIODIC_TICK):
            now = time.time()
            for periodic in self.periodic:
                name = periodic.name
                slot = periodic.schedule.latest(now, horizon=PERIODIC_HORIZON)
                if slot is None or fired.get(name) == slot:
                    continue
                try:
                    task = new_task(periodic.path, eta=slot, now=slot,
                                    queue=periodic.queue or self.default_queue,
                                    max_attempts=self.settings.task_attempts,
                                    backoff=self.settings.task_backoff)
                    task["id"] = slot_task_id(name, slot)
                    token = f"periodic-{task['id']}"
                    self.backend.prepare([task], token)
                    self.backend.confirm(token)
                    fired[name] = slot
                    self._wake()
                except Exception:
                    logger.exception("periodic task %s: could not add its task "
                                     "for %s", name, slot)

    def _keep_house(self):
        # Why wait here: a minute between rounds (less for a site that
        # keeps tasks briefly); stop ends the wait.
        settings = self.settings
        interval = max(1.0, min(HOUSEKEEPING_INTERVAL, settings.task_keep_done / 2,
                                settings.task_keep_dead / 2))
        while not self._stopped.wait(interval):
            try:
                self.keep_house()
            except Exception:
                logger.exception("background tasks: housekeeping failed")

    def keep_house(self, now=None):
        """One round of housekeeping (see the module's docstring)."""
        backend = self.backend
        # Prepared tasks older than two leases (and ten minutes): their
        # process died between vote and finish.
        buried = backend.recover(max(600.0, 2 * self.settings.task_lease), now=now)
        if buried:
            logger.error("%d background task(s) in doubt (queued by a "
                         "transaction whose outcome is not known) moved "
                         "to the dead letters", buried)
        purged = backend.purge(self.settings.task_keep_done, now=now,
                               dead_older_than=self.settings.task_keep_dead)
        for housekeeper in self.housekeepers:
            housekeeper()
        return purged

    def stop(self, timeout=10.0):
        """Stop consuming (the running tasks get ``timeout`` seconds; the
        others keep their lease until it expires, then run elsewhere or
        after the restart). Idempotent."""
        self._stopped.set()
        consumer = self.consumer
        ended = consumer.stop(timeout) if consumer is not None else True
        with self._lock:
            backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()
        return ended
