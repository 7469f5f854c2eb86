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

import collections
import concurrent.futures
import itertools
import logging
import multiprocessing
import pickle
import signal
import threading
import traceback

from .exceptions import ExecutorFullError, WorkerProcessDiedError


logger = logging.getLogger("collective.futures")


def _child_main(conn):
    """A worker process: run pickled calls until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides
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
    """Pickle a call for a worker process; TypeError naming the problem."""
    try:
        return pickle.dumps((fn, args, kwargs))
    except Exception as exc:
        raise TypeError(
            f"the 'processes' executor needs fn and its arguments to be "
            f"picklable (fn importable by name: no lambda, no local "
            f"function, no bound method of a persistent object): {exc}"
        ) from exc


class _Slot:
    """One worker process and the thread that feeds it."""

    def __init__(self, pool, number):
        self.pool = pool
        self.number = number
        self.process = None
        self.conn = None
        self.current = None  # the future being run
        # Guards current and kill(): interrupt must not kill a process that
        # has moved on to the next promise.
        self.lock = threading.Lock()
        self.thread = threading.Thread(
            target=self._work, name=f"{pool.name}-{number}", daemon=True)

    def _start_process(self):
        parent, child = self.pool.context.Pipe()
        process = self.pool.context.Process(
            target=_child_main, args=(child,), daemon=True,
            name=f"{self.pool.name}-{self.number}")
        process.start()
        child.close()
        self.process, self.conn = process, parent

    def _stop_process(self):
        process, conn = self.process, self.conn
        self.process = self.conn = None
        if conn is not None:
            conn.close()
        if process is not None:
            if process.is_alive():
                process.kill()
            process.join(5)

    def kill(self):
        process = self.process
        if process is not None and process.is_alive():
            process.kill()

    def _work(self):
        try:
            while True:
                item = self.pool._take()
                if item is None:
                    return
                future, payload, key = item
                if not future.set_running_or_notify_cancel():
                    continue
                with self.lock:
                    self.current = future
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
                        self.current = None
        finally:
            self._stop_process()

    def _run(self, future, payload, key):
        if self.process is None or not self.process.is_alive():
            self._stop_process()
            self._start_process()
        process = self.process
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


class ProcessPool(concurrent.futures.Executor):
    """``submit_call(key, payload)`` runs a pickled ``(fn, args, kwargs)``
    (see :func:`dumps_call`) in one of ``max_workers`` processes."""

    def __init__(self, max_workers=2, max_queue=100, start_method="forkserver",
                 name="collective.futures-process", idle_seconds=300.0):
        if start_method == "fork":
            raise ValueError("fork is unsafe in a threaded server")
        self.max_workers = max_workers
        self.max_queue = max_queue
        self.name = name
        self.context = multiprocessing.get_context(start_method)
        self._idle_seconds = idle_seconds
        # Guards the queue and the slots; slot threads wait on it.
        self._cv = threading.Condition()
        self._queue = collections.deque()
        self._slots = []
        self._idle = 0
        self._numbers = itertools.count(1)
        self._shutdown = False

    def submit(self, fn, /, *args, **kwargs):
        return self.submit_call(getattr(fn, "__qualname__", repr(fn)),
                                dumps_call(fn, args, kwargs))

    def submit_call(self, key, payload):
        future = concurrent.futures.Future()
        with self._cv:
            if self._shutdown:
                raise RuntimeError("cannot submit to the process pool after shutdown")
            spare = self._idle + self.max_workers - len(self._slots)
            if len(self._queue) - spare >= self.max_queue:
                raise ExecutorFullError(
                    f"{self.name}: {self.max_queue} promises already wait for "
                    f"a worker process (process_max_queue)")
            self._queue.append((future, payload, key))
            if self._idle < len(self._queue) and len(self._slots) < self.max_workers:
                slot = _Slot(self, next(self._numbers))
                self._slots.append(slot)
                slot.thread.start()
            self._cv.notify()
        return future

    def _take(self):
        me = threading.current_thread()
        with self._cv:
            while not self._queue and not self._shutdown:
                # Why wait: no work; woken by submit/shutdown. An idle slot
                # retires (with its process) after idle_seconds.
                self._idle += 1
                woken = self._cv.wait(self._idle_seconds)
                self._idle -= 1
                if not woken and not self._queue:
                    break
            if self._queue and not self._shutdown:
                return self._queue.popleft()
            self._slots = [s for s in self._slots if s.thread is not me]
            return None

    def interrupt(self, future):
        """Stop the process running ``future`` (it is replaced); True if
        one was running it."""
        with self._cv:
            slots = list(self._slots)
        for slot in slots:
            with slot.lock:
                if slot.current is future:
                    slot.kill()
                    return True
        return False

    @property
    def queued(self):
        with self._cv:
            return len(self._queue)

    @property
    def running(self):
        with self._cv:
            return sum(1 for s in self._slots if s.current is not None)

    @property
    def processes(self):
        with self._cv:
            return [s.process.pid for s in self._slots if s.process is not None]

    def shutdown(self, wait=True, *, cancel_futures=False):
        with self._cv:
            self._shutdown = True
            if cancel_futures:
                while self._queue:
                    self._queue.popleft()[0].cancel()
            slots = list(self._slots)
            self._cv.notify_all()
        for slot in slots:
            slot.kill()
        if wait:
            for slot in slots:
                slot.thread.join(5)
