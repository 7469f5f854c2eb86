"""The ``processes`` executor: CPU-bound promises in worker processes.

Runs on: one ``collective.futures-process-N`` thread per worker process (in
this process), each feeding its process one promise at a time over a pipe;
the promises themselves run in the worker processes.

Unlike ``concurrent.futures.ProcessPoolExecutor``, a worker that dies
(``os._exit``, a segfault, the OOM killer) fails only the promise it held:
its thread starts a new process for the next one. A promise past its
deadline can be stopped (``interrupt``): its process is killed and
replaced. Processes start with ``forkserver`` or ``spawn``, never ``fork``
(a forked child of a threaded server inherits locks held by other threads).
"""

import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
import traceback

from ..core.promise import name_of
from ..exceptions import WorkerProcessDiedError
from .base import BoundedPool


logger = logging.getLogger("collective.futures")


def _watch_parent(zope_pid, parent_pid, interval=1.0):
    """In a worker process: end it when Zope is gone, even if its promise
    hangs and never reads the pipe again (with forkserver the worker is the
    forkserver's child, so Zope's death alone would leave it an orphan)."""
    while True:
        time.sleep(interval)
        if os.getppid() != parent_pid:
            os._exit(1)  # our parent (Zope, or its forkserver) is gone
        try:
            os.kill(zope_pid, 0)
        except OSError:  # gone, or the pid now is someone else's
            os._exit(1)


def _child_main(conn, zope_pid=None):
    """A worker process: run pickled calls until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides
    if zope_pid is not None:
        threading.Thread(target=_watch_parent, args=(zope_pid, os.getppid()),
                         name="collective.futures-parent-watch",
                         daemon=True).start()
    while True:
        try:
            payload = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            fn, args, kwargs = pickle.loads(payload)
            reply = (True, fn(*args, **kwargs))
        except BaseException as exc:  # reported to the parent, never lost
            reply = (False, (exc, traceback.format_exc()))
        try:
            data = pickle.dumps(reply)
        except Exception as exc:
            data = pickle.dumps((False, (
                TypeError(f"the promise's result cannot be pickled: {exc}"),
                traceback.format_exc())))
        conn.send_bytes(data)


def dumps_call(fn, args, kwargs):
    """Pickle a call for a worker process; TypeError naming the problem.
    Done once per promise: when it is submitted (so a call that cannot be
    pickled fails at ``submit``), and the bytes are what the worker
    process receives (see :class:`PickledCall`)."""
    try:
        return pickle.dumps((fn, args, kwargs))
    except Exception as exc:
        raise TypeError(
            f"the 'processes' executor needs fn and its arguments to be "
            f"picklable (fn importable by name: no lambda, no local "
            f"function, no bound method of a persistent object): {exc}"
        ) from exc


class PickledCall:
    """``fn(*args, **kwargs)`` pickled once. Submitting it to the
    ``processes`` executor sends these bytes as they are."""

    __slots__ = ("data", "name")

    def __init__(self, fn, args=(), kwargs=None, name=None):
        self.data = dumps_call(fn, args, kwargs or {})
        #: What the logs call it (the promise's key).
        self.name = name or name_of(fn)

    def __call__(self):
        fn, args, kwargs = pickle.loads(self.data)
        return fn(*args, **kwargs)


class _Slot:
    """One worker process and the thread that feeds it."""

    def __init__(self, pool, number):
        self.pool = pool
        self.number = number
        self.process = None
        self.conn = None
        self.current = None  # the future being run
        self.stopped = None  # the future whose call kill() stopped
        # Guards current and kill(): interrupt must not kill a process that
        # has moved on to the next promise.
        self.lock = threading.Lock()
        self.thread = threading.Thread(
            target=self._work, name=f"{pool.name}-{number}", daemon=True)
        self.thread.start()

    def _start_process(self):
        parent, child = self.pool.context.Pipe()
        process = self.pool.context.Process(
            target=_child_main, args=(child, os.getpid()), daemon=True,
            name=f"{self.pool.name}-{self.number}")
        process.start()
        child.close()
        self.process, self.conn = process, parent

    def _stop_process(self, grace=0.0):
        """Close the pipe and end the process: at once, or after ``grace``
        seconds in which an idle worker, seeing its pipe closed, exits by
        itself (its exit handlers run)."""
        process, conn = self.process, self.conn
        self.process = self.conn = None
        if conn is not None:
            conn.close()
        if process is not None:
            if grace:
                process.join(grace)
            if process.is_alive():
                process.kill()
            process.join(5)

    def kill(self):
        """Stop the current call (called with ``lock`` held): kill its
        process, or, if the process is not up yet, make sure the call is
        never sent."""
        self.stopped = self.current
        process = self.process
        if process is not None and process.is_alive():
            process.kill()

    def _work(self):
        try:
            while True:
                taken = self.pool._take()
                if taken is None:
                    return
                future, (payload, key) = taken
                if not future.set_running_or_notify_cancel():
                    continue
                with self.lock:
                    self.current = future
                if self.pool._stopped(future):  # see interrupt()
                    with self.lock:
                        self.stopped = future
                try:
                    self._run(future, payload, key)
                except Exception as exc:  # e.g. a process that cannot start
                    logger.exception("%s: running promise %r failed",
                                     self.thread.name, key)
                    self._stop_process()
                    if not future.done():
                        future.set_exception(exc)
                finally:
                    with self.lock:
                        self.current = self.stopped = None
                # While this thread waits for the next call, it must not
                # keep the last one's result alive.
                del future, payload, key, taken
        finally:
            # Retired (idle) or shut down (shutdown() killed it already).
            self._stop_process(grace=1.0)
            self.pool._gone()

    def _run(self, future, payload, key):
        if self.process is None or not self.process.is_alive():
            self._stop_process()
            self._start_process()
        process = self.process
        with self.lock:
            # Interrupted while its process was starting: never send it.
            if self.stopped is future:
                future.set_exception(WorkerProcessDiedError(
                    f"promise {key!r} was stopped before its worker process "
                    f"ran it"))
                return
        try:
            self.conn.send_bytes(payload)
            # Why poll: a worker that dies never answers; checking that it
            # is alive every 0.5 s bounds the wait for a dead one.
            while not self.conn.poll(0.5):
                if not process.is_alive():
                    raise EOFError
            ok, value = pickle.loads(self.conn.recv_bytes())
        except (EOFError, OSError):
            process.join(5)
            code = process.exitcode
            how = (f"killed by signal {signal.Signals(-code).name}"
                   if code is not None and code < 0 else f"exit code {code}")
            error = WorkerProcessDiedError(
                f"worker process {process.pid} died ({how}) while running "
                f"promise {key!r}")
            logger.error("%s; starting a new worker process", error)
            self._stop_process()
            future.set_exception(error)
            return
        if ok:
            future.set_result(value)
        else:
            exc, remote = value
            logger.error("promise %r raised in worker process %d; result() "
                         "will raise it in the next pass\n%s",
                         key, process.pid, remote.rstrip())
            future.set_exception(exc)


class ProcessExecutor(BoundedPool):
    """See IBoundedExecutor: runs pickled calls in ``max_workers`` worker
    processes, each fed by one thread of this process."""

    runs_in = "processes"

    def __init__(self, max_workers=2, max_queue=100, start_method="forkserver",
                 name="collective.futures-process", idle_seconds=300.0):
        if start_method == "fork":
            raise ValueError("fork is unsafe in a threaded server")
        super().__init__(max_workers, name, max_queue=max_queue,
                         idle_seconds=idle_seconds,
                         queue_setting="process_max_queue")
        self.context = multiprocessing.get_context(start_method)
        # Futures interrupted while running (guarded by _cv): see interrupt().
        self._stop = set()

    def _item(self, fn, args, kwargs):
        # A PickledCall (how the runtime submits promises) was pickled when
        # it was made: its bytes go as they are.
        if isinstance(fn, PickledCall) and not args and not kwargs:
            return fn.data, fn.name
        return (dumps_call(fn, args, kwargs),
                name_of(fn))

    def _start_worker(self, number):
        slot = _Slot(self, number)
        return slot.thread, slot

    def interrupt(self, future):
        """Stop the call of ``future`` if it runs (its process is killed
        and replaced); True if it was running.

        A worker thread takes the call (the future is running), then
        records it as its current one. An interrupt in between found no
        process to kill, and the call then ran in full. So the future is
        first put in ``_stop``, then looked for among the current calls;
        the worker thread records the call, then looks in ``_stop``:
        whichever comes second sees the other.
        """
        if not future.running():
            return False  # queued (cancel() drops it) or over
        with self._cv:
            self._stop.add(future)
        future.add_done_callback(self._forget)
        with self._cv:
            slots = list(self._workers.values())
        for slot in slots:
            with slot.lock:
                if slot.current is future:
                    slot.kill()
        return True

    def _forget(self, future):
        with self._cv:
            self._stop.discard(future)

    def _stopped(self, future):
        """Was ``future``'s call interrupted before its thread recorded it?"""
        with self._cv:
            return future in self._stop

    @property
    def processes(self):
        """The pids of the worker processes alive now."""
        with self._cv:
            return [s.process.pid for s in self._workers.values()
                    if s.process is not None]

    def shutdown(self, wait=True, *, cancel_futures=False):
        """See IBoundedExecutor. The worker processes are killed, so work
        still queued cannot run: it is always cancelled."""
        super().shutdown(wait, cancel_futures=True)

    def _stopping(self, slots):
        for slot in slots:
            slot.kill()
