"""The consumer: leases tasks and has them published, one HTTP request
each, by a Zope instance (its own, over the loopback), then settles them.

Runs on: its own threads, ``collective.futures-task-N`` (at most
``concurrency`` tasks at once, one per thread, so a flood of tasks takes
at most that many of the instance's worker threads) and
``collective.futures-task-leases`` (the heartbeat that extends the
leases of the tasks running). No Zope here: the request goes through
waitress and ZPublisher as a visitor's does (transaction, ConflictError
retries, error views and logs), which is what makes a task a request.

Delivery, in words:

* **at least once**: a task is leased for ``lease_seconds`` and the
  heartbeat extends the lease while its request runs. A consumer that
  dies (its process killed) stops extending; the lease expires and the
  next ``lease`` anywhere delivers the task again. So a task can run
  twice: when its instance died after the task's work committed and
  before the ack. (The Zope side records a task's id in the ZODB with
  its work, so that the second delivery is acknowledged without running
  again: exactly once in effect on the ZODB.)
* **retries**: a 5xx answer (which includes ConflictErrors Zope gave up
  retrying), 408, 409, 425, 429, and a connection that fails or times
  out are retried after ``retry_delay`` (exponential, full jitter), until
  the task's ``max_attempts``; then it is buried (dead letters).
* **no retry storm**: any other 4xx (404, 403, 400) buries the task at
  once: asking again would get the same answer.
* a task redelivered past its ``max_attempts`` (its lease expired that
  many times: the request hangs or kills its instance) is buried.

Every wait has a deadline: the HTTP request's (``request_timeout``), the
idle wait's (``poll_interval``), ``stop``'s.
"""

import http.client
import logging
import random
import threading
import time
import urllib.parse

from . import signature
from .model import retry_delay


logger = logging.getLogger("collective.futures.tasks")

#: Statuses worth asking again: the server may answer otherwise later.
RETRIED_STATUSES = frozenset((408, 409, 425, 429))


class Consumer:
    """Leases tasks of ``queues`` from ``backend`` and requests each from
    ``base_url`` (``http://127.0.0.1:8080``), signed with ``secret``.

    ``on_settled(task, outcome, seconds)`` (optional) is called after each
    task with ``"done"``, ``"retried"``, ``"dead"`` or ``"lost"`` (the
    lease was lost meanwhile: another delivery owns the task now).
    """

    def __init__(self, backend, queues, base_url, secret, *, concurrency=1,
                 lease_seconds=300.0, request_timeout=3600.0, poll_interval=1.0,
                 max_backoff=3600.0, name="consumer", on_settled=None,
                 clock=time.time, rng=random.random):
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"base_url: {base_url!r} is not an http:// URL")
        self.backend = backend
        self.queues = list(queues)
        self.host, self.port = parts.hostname, parts.port or 80
        self.secret = secret
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.request_timeout = request_timeout
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.name = name
        self.on_settled = on_settled
        self.clock = clock
        self.rng = rng
        #: Why a Condition: workers idle on it, and ``wake`` (a commit in
        #: this process) or ``stop`` ends their wait at once.
        self._condition = threading.Condition()
        self._stopping = False
        self._wakeups = 0
        #: lease -> task, the tasks running now (for the heartbeat).
        self._running = {}
        self._threads = []
        self._next_queue = 0

    # control (any thread)

    def start(self):
        for number in range(1, self.concurrency + 1):
            thread = threading.Thread(
                target=self._work, name=f"collective.futures-task-{number}", daemon=True)
            self._threads.append(thread)
        self._threads.append(threading.Thread(
            target=self._heartbeat, name="collective.futures-task-leases", daemon=True))
        for thread in self._threads:
            thread.start()
        return self

    def wake(self):
        """Tasks were queued (in this process): look now, not at the next
        poll."""
        with self._condition:
            self._wakeups += 1
            self._condition.notify_all()

    def stop(self, timeout=10.0):
        """Take no new task; wait up to ``timeout`` for the running ones.
        A task still running after that keeps its lease until it expires,
        and is then delivered again (at least once). Idempotent. True if
        every thread ended."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    @property
    def running(self):
        with self._condition:
            return len(self._running)

    # the workers

    def _work(self):
        while True:
            with self._condition:
                if self._stopping:
                    return
                wakeups = self._wakeups
            failed = False
            try:
                leased = self._lease_one()
            except Exception:
                # The backend is unreachable (or broken): log, wait a whole
                # poll (not the next eta, which may be past: a spin), try
                # again; the thread lives on.
                logger.exception("%s: could not lease a task", self.name)
                leased, failed = None, True
            if leased is None:
                wait = self.poll_interval if failed else self._idle_wait()
                if not failed and self._blocking_wait(wait):
                    continue
                with self._condition:
                    # Why wait here: nothing is due; a commit in this
                    # process (wake) or stop ends the wait early, other
                    # processes' commits are seen at the next poll.
                    if not self._stopping and (failed or self._wakeups == wakeups):
                        self._condition.wait(wait)
                continue
            lease, task = leased
            try:
                self._run(lease, task)
            except Exception:
                # Settling failed (the backend went away mid-task): the
                # lease expires and the task is delivered again.
                logger.exception("%s: task %s could not be settled", self.name, task["id"])
            finally:
                with self._condition:
                    self._running.pop(lease, None)

    def _blocking_wait(self, wait):
        """Wait on the backend itself, if it can block until any process
        queues a task (Redis): True when it did (woken or timed out)."""
        waiter = getattr(self.backend, "wait_for_tasks", None)
        if waiter is None:
            return False
        with self._condition:
            if self._stopping:
                return True
        try:
            # Why wait here: nothing is due; a task queued by any instance
            # (a commit here too) ends the wait, or ``wait`` (at most a
            # poll) does; stop is seen within it.
            waiter(self.queues, wait)
        except Exception:
            logger.exception("%s: could not wait for tasks", self.name)
            with self._condition:
                if not self._stopping:
                    self._condition.wait(self.poll_interval)
        return True

    def _idle_wait(self):
        wait = self.poll_interval
        try:
            etas = [self.backend.next_eta(queue) for queue in self.queues]
        except Exception:
            return wait
        etas = [eta for eta in etas if eta is not None]
        if etas:
            wait = min(wait, max(0.0, min(etas) - self.clock()))
        return max(wait, 0.01)

    def _lease_one(self):
        # Round robin over the queues: one busy queue does not starve the
        # others.
        for offset in range(len(self.queues)):
            queue = self.queues[(self._next_queue + offset) % len(self.queues)]
            leased = self.backend.lease(queue, self.name, 1, self.lease_seconds,
                                        now=self.clock())
            if leased:
                self._next_queue = (self._next_queue + offset + 1) % len(self.queues)
                lease, task = leased[0]
                with self._condition:
                    self._running[lease] = task
                return lease, task
        return None

    def _run(self, lease, task):
        if task["attempts"] > task["max_attempts"]:
            self._settle(task, "dead", 0.0, self.backend.bury(
                lease, f"delivered {task['attempts'] - 1} times without an answer "
                       f"(its lease expired: the request hangs or ends its "
                       f"instance)", now=self.clock()))
            return
        started = time.monotonic()
        status, error = self._request(lease, task)
        seconds = time.monotonic() - started
        if status is not None and status < 400:
            self._settle(task, "done", seconds, self.backend.ack(lease, now=self.clock()))
        elif status is not None and 400 <= status < 500 and status not in RETRIED_STATUSES:
            self._settle(task, "dead", seconds, self.backend.bury(lease, error, now=self.clock()))
        elif task["attempts"] >= task["max_attempts"]:
            self._settle(task, "dead", seconds, self.backend.bury(
                lease, f"{error} (attempt {task['attempts']} of {task['max_attempts']})",
                now=self.clock()))
        else:
            eta = self.clock() + retry_delay(task, self.max_backoff, self.rng)
            self._settle(task, "retried", seconds, self.backend.retry(lease, error, eta))

    def _settle(self, task, outcome, seconds, kept):
        if not kept:
            logger.warning("%s: task %s lost its lease while it ran (it was "
                           "delivered again); its outcome %s is not recorded",
                           self.name, task["id"], outcome)
            outcome = "lost"
        elif outcome != "done":
            logger.warning("%s: task %s %s %s: %s", self.name, task["id"],
                           task["method"], task["path"], outcome)
        if self.on_settled is not None:
            try:
                self.on_settled(task, outcome, seconds)
            except Exception:
                logger.exception("%s: on_settled failed", self.name)

    def _request(self, lease, task):
        """(status or None, error text or None) of the task's request."""
        task_id, lease_id = lease
        expires = self.clock() + self.request_timeout + self.lease_seconds
        request_headers = {name: value for name, value in task["headers"]}
        request_headers.update(signature.headers(self.secret, task, lease_id, expires))
        request_headers["Content-Length"] = str(len(task["payload"]))
        connection = http.client.HTTPConnection(self.host, self.port,
                                                timeout=self.request_timeout)
        try:
            connection.request(task["method"], task["path"], body=task["payload"],
                               headers=request_headers)
            response = connection.getresponse()
            body = response.read(2000)
        except Exception as exc:
            # OSError, HTTPException, or a task http.client cannot send
            # (a header that is not latin-1): a failure of this attempt,
            # settled as such, never a task left running until its lease
            # expires.
            return None, f"the request failed: {exc!r}"
        finally:
            connection.close()
        if response.status < 400:
            return response.status, None
        text = body.decode("utf-8", "replace").strip().replace("\n", " ")[:200]
        return response.status, f"HTTP {response.status} {response.reason}: {text}"

    # the heartbeat

    def _announce(self, running):
        """Tell the backend this consumer lives (if it keeps a list)."""
        heartbeat = getattr(self.backend, "heartbeat", None)
        if heartbeat is None:
            return
        try:
            heartbeat(self.name, {"queues": self.queues, "running": running,
                                  "concurrency": self.concurrency},
                      now=self.clock())
        except Exception:
            logger.warning("%s: could not announce itself to the task backend",
                           self.name, exc_info=True)

    def _heartbeat(self):
        # A third of the lease, and often enough for the backend's list of
        # live consumers (Redis: CONSUMER_TTL).
        interval = max(0.05, min(self.lease_seconds / 3, 30.0))
        self._announce(0)
        while True:
            with self._condition:
                if self._stopping and not self._running:
                    return
                # Why wait here: a third of the lease between extensions;
                # stop ends the wait (and the loop, once nothing runs).
                self._condition.wait(interval)
                if self._stopping and not self._running:
                    return
                running = list(self._running)
            self._announce(len(running))
            for lease in running:
                try:
                    if not self.backend.extend(lease, self.lease_seconds, now=self.clock()):
                        logger.warning("%s: the lease of task %s was lost", self.name, lease[0])
                except Exception:
                    logger.exception("%s: could not extend the lease of task %s",
                                     self.name, lease[0])
